"""A Ballast service started as its own OS process, as it runs in production, with its HTTP probes at hand."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

from ballast.local.nats_server import free_port
from ballast.testing.waiting import eventually


class ServiceProcess:
    def __init__(self, args: list[str], *, nats_url: str, **env: str) -> None:
        """`args` follow the interpreter: ["-m", "ballast.reconciler"] or [path/to/script.py]."""
        self.args = args
        self.port = free_port()
        self.env = os.environ | {"BALLAST_NATS_URL": nats_url, "BALLAST_HTTP_PORT": str(self.port)} | env
        self.proc: subprocess.Popen[bytes] | None = None
        # The log goes to a file, not a pipe: nobody reads a pipe while the test runs, and a service that logs more
        # than the pipe holds (64 KiB) would block on its next log line.
        self.log_path = Path(tempfile.mkdtemp(prefix="ballast-service-")) / "stderr.log"

    @classmethod
    def module(cls, module: str, *, nats_url: str, **env: str) -> ServiceProcess:
        return cls(["-m", module], nats_url=nats_url, **env)

    def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.args], env=self.env, stdout=subprocess.DEVNULL, stderr=log
            )
        return self

    async def get(self, path: str) -> tuple[int, str]:
        """(status, body); status 0 while nothing listens."""
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{self.port}{path}") as response,
            ):
                return response.status, await response.text()
        except aiohttp.ClientConnectionError:
            return 0, ""

    async def wait_status(self, path: str, code: int, timeout: float = 20.0) -> str:
        async def probe() -> str | None:
            got, body = await self.get(path)
            return body if got == code else None

        return await eventually(probe, timeout=timeout, what=f"{' '.join(self.args)} {path} -> {code}")

    async def wait_metric(self, line: str, timeout: float = 20.0) -> None:
        async def probe() -> bool:
            return line in (await self.get("/metrics"))[1]

        await eventually(probe, timeout=timeout, what=f"metric {line}")

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and the exit code; fails if the process outlives `timeout`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, timeout)

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, and fail with the service's own log unless it exits 0 within `timeout`."""
        code = await self.terminate(timeout)
        assert code == 0, f"{' '.join(self.args)} exited {code}:\n{self.stderr()[-4000:]}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    def log(self) -> str:
        """What the process has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stderr(self, timeout: float = 30.0) -> str:
        """Everything the process logged, once it has exited (waits up to `timeout` for that)."""
        assert self.proc is not None
        self.proc.wait(timeout)
        return self.log()
