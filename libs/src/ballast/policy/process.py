"""The real OPA as a local process the gate owns: started on 127.0.0.1, health-checked, restarted when it dies.

OPA keeps policies and data in memory only, so a restarted OPA knows nothing: `prepare(client)` runs after every start
and before the process counts as ready, and must push everything again (see `PolicyEngine.restore`).

OPA runs in v0-compatible mode, Gatekeeper's default for templates; a v1 template is loaded with `import rego.v1`,
which makes OPA parse and check that module as Rego v1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from ballast.policy.opa import OpaClient, OpaUnavailable

log = logging.getLogger(__name__)

Prepare = Callable[[OpaClient], Awaitable[None]]
HEALTH_INTERVAL = 1.0  # seconds between health checks, and how long one may take
# Go's collector by default starts a cycle whenever the heap doubles. OPA's live heap with the whole general library
# is about 8 MB and a decision allocates about 0.2 MB, so it collected every ~35 decisions, each cycle taking a core
# for 5-20 ms on 2 cores: the slow tail of decisions. GOGC=400 lets the heap grow to 5x the live one (a cycle every
# ~200 decisions, about 40 MB more memory); an environment that sets GOGC or GOMEMLIMIT itself keeps its own.
GOGC = "400"
UNHEALTHY_AFTER = 3  # failed checks in a row that make a running OPA hung: it is killed and started again


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _opa_environment() -> dict[str, str]:
    if "GOGC" in os.environ or "GOMEMLIMIT" in os.environ:
        return dict(os.environ)
    return os.environ | {"GOGC": GOGC}


def _die_with_parent() -> None:
    # An OPA outliving a SIGKILLed gate would hold its port and memory forever; Linux kills it with its parent.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ManagedOpa:
    """`async with ManagedOpa(binary, prepare) as opa:` OPA started and prepared; `opa.supervise(stop)` restarts it."""

    def __init__(
        self,
        binary: Path,
        prepare: Prepare,
        *,
        start_timeout: float = 15.0,
    ) -> None:
        self.binary = binary
        self._prepare = prepare
        self._start_timeout = start_timeout
        # OPA's own log (errors only) goes to a file: a pipe nobody reads would block OPA once full.
        self._output = tempfile.TemporaryFile(prefix="ballast-opa-")  # noqa: SIM115  (open as long as OPA runs)
        self._port = _free_port()
        self.client = OpaClient(self.url)
        self._proc: asyncio.subprocess.Process | None = None
        self.ready = False
        self.restarts = 0
        self._closing = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def __aenter__(self) -> ManagedOpa:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _output_tail(self, limit: int = 2000) -> str:
        self._output.seek(0)
        return self._output.read().decode(errors="replace").strip()[-limit:]

    async def _spawn(self) -> asyncio.subprocess.Process:
        self._output.seek(0)
        self._output.truncate()
        return await asyncio.create_subprocess_exec(
            str(self.binary), "run", "--server", "--addr", f"127.0.0.1:{self._port}",
            "--v0-compatible", "--log-level", "error", "--skip-version-check",
            stdin=asyncio.subprocess.DEVNULL, stdout=self._output, stderr=self._output,
            preexec_fn=_die_with_parent, env=_opa_environment(),
        )  # fmt: skip

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        while not await self.client.healthy():
            if proc.returncode is not None:
                raise OpaUnavailable(f"opa exited with {proc.returncode} at start: {self._output_tail()}")
            if loop.time() >= deadline:
                proc.kill()
                raise OpaUnavailable(f"opa not healthy within {self._start_timeout}s at {self.url}")
            await asyncio.sleep(0.02)

    async def start(self) -> None:
        """Starts OPA and prepares it; a port taken meanwhile by someone else means another port."""
        for attempt in range(3):
            proc = await self._spawn()
            try:
                await self._wait_healthy(proc)
            except OpaUnavailable:
                if attempt == 2:
                    raise
                log.warning("opa did not start on port %d; trying another", self._port)
                self._port = _free_port()
                self.client.url = self.url
                continue
            self._proc = proc
            break
        await self._prepare(self.client)
        self.ready = True
        log.info("opa ready", extra={"url": self.url, "pid": self.pid})

    async def supervise(self, stop: asyncio.Event) -> None:
        """Until `stop`: when OPA exits, or stops answering its health check UNHEALTHY_AFTER times in a row (a hung
        OPA is killed), start it again (same port if free) and prepare it before it counts as ready."""
        while not stop.is_set() and not self._closing:
            proc = self._proc
            assert proc is not None, "start() first"
            await self._until_gone(proc, stop)
            if stop.is_set() or self._closing:  # closing stops OPA on purpose
                return
            self.ready = False
            self.restarts += 1
            log.warning("opa exited with %s; restarting: %s", proc.returncode, self._output_tail())
            while not stop.is_set() and not self._closing:
                try:
                    await self.start()
                    break
                except Exception:  # OPA's own trouble or a failing prepare: keep trying, readiness says why
                    log.exception("opa restart failed; retrying")
                    await asyncio.sleep(1.0)

    async def _until_gone(self, proc: asyncio.subprocess.Process, stop: asyncio.Event) -> None:
        exited = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(stop.wait())
        failures = 0
        try:
            while True:
                done, _ = await asyncio.wait({exited, stopping}, timeout=HEALTH_INTERVAL, return_when="FIRST_COMPLETED")
                if done or self._closing:
                    return
                if await self.client.healthy(timeout=HEALTH_INTERVAL):
                    failures = 0
                    continue
                failures += 1
                if failures >= UNHEALTHY_AFTER:
                    log.warning("opa failed %d health checks in a row; killing it", failures)
                    proc.kill()
        finally:
            stopping.cancel()
            if not exited.done():
                exited.cancel()

    async def close(self) -> None:
        self._closing = True
        self.ready = False
        await self.client.close()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self._output.close()
