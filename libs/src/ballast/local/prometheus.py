"""A real Prometheus server (the one `make tools` builds) on 127.0.0.1, for the local platform and the tests.

It scrapes the given targets and loads every rule file in a directory. Prometheus itself notices a changed rule
file (`--config.auto-reload` checksums the config and every rule file it names, globs included, each second), so a
writer only has to write files; `reload()` (`--web.enable-lifecycle`) reloads at once and reports a rule file that
does not load, which the automatic reload only logs. Alerts its rules fire go to the given Alertmanagers. Start waits
on `/-/ready`; stop is SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from ballast.local.nats_server import free_port
from ballast.local.tools import tool

RULE_FILE_PATTERNS = ("*.yaml", "*.yml")


@dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint to scrape: `job` becomes the series' job label, `address` is host:port."""

    job: str
    address: str
    path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)


def _seconds(duration: timedelta) -> str:
    return f"{max(1, round(duration.total_seconds()))}s"


def prometheus_config(
    targets: Sequence[ScrapeTarget],
    rules_dir: Path,
    scrape_interval: timedelta,
    evaluation_interval: timedelta,
    alertmanagers: Sequence[str] = (),
) -> dict[str, Any]:
    """The configuration file's content: one scrape job per job name (and path), the rule directory's files, and
    the Alertmanagers (host:port) its alerts go to."""
    jobs: dict[tuple[str, str], list[ScrapeTarget]] = {}
    for target in targets:
        jobs.setdefault((target.job, target.path), []).append(target)
    interval = _seconds(scrape_interval)
    alerting = {"alerting": {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}}
    return {
        # The scrape timeout defaults to 10s and may not exceed the interval, which is shorter here.
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": _seconds(evaluation_interval),
        },
        **(alerting if alertmanagers else {}),
        "rule_files": [str(rules_dir / pattern) for pattern in RULE_FILE_PATTERNS],
        "scrape_configs": [
            {
                "job_name": job if path == "/metrics" else f"{job}{path.replace('/', '_')}",
                "metrics_path": path,
                "static_configs": [
                    {"targets": [target.address], **({"labels": dict(target.labels)} if target.labels else {})}
                    for target in members
                ],
            }
            for (job, path), members in jobs.items()
        ],
    }


class PrometheusError(RuntimeError):
    """Prometheus did not start, or refused a reload (the message has its answer and its log's end)."""


class Prometheus:
    def __init__(
        self,
        targets: Sequence[ScrapeTarget] = (),
        *,
        rules_dir: Path | None = None,
        data_dir: Path | None = None,
        port: int | None = None,
        scrape_interval: timedelta = timedelta(seconds=1),
        evaluation_interval: timedelta = timedelta(seconds=1),
        binary: Path | None = None,
        alertmanagers: Sequence[str] = (),
    ) -> None:
        self.binary = binary or tool("prometheus")
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="ballast-prometheus-"))
        self.rules_dir = rules_dir or self.data_dir / "rules"
        self.port = port or free_port()
        self.targets = tuple(targets)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.alertmanagers = tuple(alertmanagers)
        self.config_path = self.data_dir / "prometheus.yml"
        self.log_path = self.data_dir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _write_config(self) -> None:
        config = prometheus_config(
            self.targets, self.rules_dir, self.scrape_interval, self.evaluation_interval, self.alertmanagers
        )
        staged = self.config_path.with_suffix(".yml.tmp")
        staged.write_text(yaml.safe_dump(config, sort_keys=False))
        staged.replace(self.config_path)  # Prometheus never reads half a file

    def start(self, timeout: float = 60.0) -> Prometheus:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    str(self.binary),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.data_dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                    "--config.auto-reload",
                    "--config.auto-reload-interval=1s",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches `ballast up`, which stops it in order
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self._proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PrometheusError(f"prometheus not ready within {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def reload(self) -> None:
        """Reloads the configuration and every rule file now; raises PrometheusError when one does not load."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30):
                return
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace").strip()
            raise PrometheusError(f"prometheus refused the reload ({error.code}): {body}") from None

    def set_targets(self, targets: Sequence[ScrapeTarget]) -> None:
        self.targets = tuple(targets)
        self._write_config()
        self.reload()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)  # it closes the TSDB head cleanly
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
