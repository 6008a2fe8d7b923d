"""A real Alertmanager (built by `make tools`) on 127.0.0.1, routing every alert to one webhook: the incident-bot's.

    async with ManagedAlertmanager(tool("alertmanager"), webhook) as am:
        await am.post_alerts([{"labels": {...}, "annotations": {...}}])

    with ManagedAlertmanager(tool("alertmanager"), webhook, data_dir=state / "alertmanager", port=9093) as am:
        ...  # `ballast up`: started and stopped without an event loop; Prometheus sends it alerts at am.address

The configuration is written for the run: one route grouping by `group_by` with short waits (tests and the local
platform want notifications in seconds, not Alertmanager's 30 s / 5 min defaults), one receiver with a webhook to the
bot over HTTPS (trusting the bot's CA) with a bearer token read from a file only we can read, resolved alerts sent
too. Clustering is off: one instance, no gossip port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ballast.local.nats_server import free_port

RECEIVER = "incident-bot"


@dataclass(frozen=True)
class Webhook:
    """Where Alertmanager sends notifications, and how it proves who it is."""

    url: str  # e.g. https://127.0.0.1:8444/alertmanager
    bearer_token: str
    ca_pem: bytes | None = None  # the CA the receiver's certificate is signed by; None: the system's


@dataclass(frozen=True)
class Route:
    group_by: tuple[str, ...] = ("alertname", "service")
    group_wait: timedelta = timedelta(seconds=1)
    group_interval: timedelta = timedelta(seconds=1)
    repeat_interval: timedelta = timedelta(hours=1)


def _duration(value: timedelta) -> str:
    return f"{int(value.total_seconds() * 1000)}ms"


def configuration(webhook: Webhook, route: Route, token_file: Path, ca_file: Path | None) -> dict[str, Any]:
    http_config: dict[str, Any] = {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}
    if ca_file is not None:
        http_config["tls_config"] = {"ca_file": str(ca_file)}
    return {
        "route": {
            "receiver": RECEIVER,
            "group_by": list(route.group_by),
            "group_wait": _duration(route.group_wait),
            "group_interval": _duration(route.group_interval),
            "repeat_interval": _duration(route.repeat_interval),
        },
        "receivers": [
            {
                "name": RECEIVER,
                "webhook_configs": [{"url": webhook.url, "send_resolved": True, "http_config": http_config}],
            }
        ],
    }


def _die_with_parent() -> None:
    # An Alertmanager outliving a SIGKILLed parent would hold its port forever; Linux kills it with its parent.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class AlertmanagerError(RuntimeError):
    """Alertmanager did not start, or refused a request; the message has its answer or its log's tail."""


class ManagedAlertmanager:
    def __init__(
        self,
        binary: Path,
        webhook: Webhook,
        route: Route = Route(),
        *,
        start_timeout: float = 20.0,
        data_dir: Path | None = None,
        port: int | None = None,
    ) -> None:
        """`data_dir`: kept after it stops (the platform's state directory); unset, a temporary one, removed."""
        self.binary = binary
        self.webhook = webhook
        self.route = route
        self._start_timeout = start_timeout
        self._own_dir = data_dir is None
        self._dir = data_dir or Path(tempfile.mkdtemp(prefix="ballast-alertmanager-"))
        self._port = port or free_port()
        self._proc: asyncio.subprocess.Process | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._log = self._dir / "alertmanager.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def address(self) -> str:
        """host:port, as Prometheus's `alerting.alertmanagers` names it."""
        return f"127.0.0.1:{self._port}"

    async def __aenter__(self) -> ManagedAlertmanager:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def log_tail(self, limit: int = 3000) -> str:
        return self._log.read_text(errors="replace")[-limit:] if self._log.exists() else ""

    def _write_configuration(self) -> Path:
        self._dir.mkdir(parents=True, exist_ok=True)
        token_file = self._dir / "webhook-token"
        token_file.touch(mode=0o600)
        token_file.write_text(self.webhook.bearer_token)
        ca_file = None
        if self.webhook.ca_pem is not None:
            ca_file = self._dir / "receiver-ca.pem"
            ca_file.write_bytes(self.webhook.ca_pem)
        config = self._dir / "alertmanager.yml"
        config.write_text(yaml.safe_dump(configuration(self.webhook, self.route, token_file, ca_file)))
        return config

    def _arguments(self, config: Path) -> list[str]:
        return [
            str(self.binary),
            f"--config.file={config}",
            f"--storage.path={self._dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self._port}",
            "--cluster.listen-address=",  # one instance: no gossip
            "--log.level=warn",
        ]

    def __enter__(self) -> ManagedAlertmanager:
        return self.run()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def run(self) -> ManagedAlertmanager:
        """Starts it without an event loop (`ballast up`) and waits until it is ready; `stop()` stops it."""
        config = self._write_configuration()
        with self._log.open("ab") as log:
            self._popen = subprocess.Popen(
                self._arguments(config),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches `ballast up`, which stops it in order
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + self._start_timeout
        while not self._ready():
            if self._popen.poll() is not None:
                raise AlertmanagerError(f"alertmanager exited with {self._popen.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AlertmanagerError(f"alertmanager not ready within {self._start_timeout}s: {self.log_tail()}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stops what `run()` started."""
        proc = self._popen
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def start(self) -> None:
        config = self._write_configuration()
        with self._log.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self._arguments(config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self._proc.returncode is not None:
                    raise AlertmanagerError(f"alertmanager exited with {self._proc.returncode}: {self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.url}/-/ready") as response:
                        if response.status == 200:
                            return
                if loop.time() >= deadline:
                    raise AlertmanagerError(f"alertmanager not ready within {self._start_timeout}s: {self.log_tail()}")
                await asyncio.sleep(0.05)

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """POST /api/v2/alerts, as Prometheus sends them (labels, annotations, startsAt, endsAt, generatorURL)."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/api/v2/alerts", json=alerts) as response,
        ):
            if response.status != 200:
                raise AlertmanagerError(f"alertmanager refused the alerts: {response.status} {await response.text()}")

    async def alerts(self) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: what Alertmanager holds now."""
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/api/v2/alerts") as response:
            found: list[dict[str, Any]] = await response.json()
            return found

    async def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
