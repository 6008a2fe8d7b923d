"""Prometheus, Alertmanager and the synthetic traffic exporter for `ballast up` and `ballast demo`.

Prometheus (built by `make tools`) scrapes every service's /metrics and the traffic exporter each second, and loads
the rule files in `<state-dir>/prometheus/rules`, where the slo-engine writes SLO rules (BALLAST_SLO_RULES_DIR);
services find it at BALLAST_PROMETHEUS_URL. When the incident-bot runs, Alertmanager (also built by `make tools`)
runs too, state in `<state-dir>/alertmanager`: Prometheus sends it the alerts its rules fire, and it sends them on
to the bot's webhook. The traffic exporter (`ballast.local.traffic`) needs the cluster: it runs only with one, and
`ballast traffic` finds it through `<state-dir>/traffic-url`. All prefer their usual ports (9090, 9093, 9464) and
take a free one when those are busy.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ballast.cli.traffic import URL_FILE
from ballast.local.alertmanager import ManagedAlertmanager, Route, Webhook
from ballast.local.nats_server import free_port
from ballast.local.prometheus import Prometheus, ScrapeTarget
from ballast.local.tools import tool
from ballast.local.traffic import DEFAULT_PORT as TRAFFIC_PORT

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
# Alerts about one SLO tier (or one service's alert) make a group: the bot opens an incident per group and joins
# the groups about one service into it. Waits of a second: the local platform shows an alert in seconds.
LOCAL_ROUTE = Route(group_by=("alertname", "namespace", "service", "sloth_service", "sloth_slo"))
PROMETHEUS_URL_ENV = "BALLAST_PROMETHEUS_URL"
RULES_DIR_ENV = "BALLAST_SLO_RULES_DIR"


def port_or_free(preferred: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


@dataclass
class Monitoring:
    root: Path
    prometheus: Prometheus
    traffic: subprocess.Popen[bytes] | None = None
    traffic_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    alertmanager: ManagedAlertmanager | None = None

    def stop(self) -> None:
        if self.traffic is not None and self.traffic.poll() is None:
            self.traffic.terminate()
            try:
                self.traffic.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.traffic.kill()
                self.traffic.wait()
        (self.root / URL_FILE).unlink(missing_ok=True)
        self.prometheus.stop()
        if self.alertmanager is not None:  # after Prometheus: its last alerts still find it
            self.alertmanager.stop()


def _wait_listening(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""
            raise RuntimeError(f"the traffic exporter did not start; its log {log} ends:\n{tail}")
        time.sleep(0.2)


def start_monitoring(
    root: Path,
    service_ports: Sequence[tuple[str, int]],
    kubeconfig: Path | None,
    alert_webhook: Webhook | None = None,
) -> Monitoring:
    """Starts the traffic exporter (with a cluster), Alertmanager sending to `alert_webhook` (when given) and
    Prometheus scraping `service_ports` (name, port) and the exporter, its alerts going to that Alertmanager."""
    targets = [ScrapeTarget(name, f"127.0.0.1:{port}") for name, port in service_ports]
    binary = tool("prometheus")  # before anything starts: without it (ToolsMissing) nothing is left running
    alertmanager = None
    if alert_webhook is not None:
        alertmanager = ManagedAlertmanager(
            tool("alertmanager"),
            alert_webhook,
            LOCAL_ROUTE,
            data_dir=root / "alertmanager",
            port=port_or_free(ALERTMANAGER_PORT),
        )
    traffic = traffic_url = None
    if kubeconfig is not None:
        port = port_or_free(TRAFFIC_PORT)
        traffic_url = f"http://127.0.0.1:{port}"
        log = root / "logs" / "traffic.log"
        with log.open("ab") as out:
            traffic = subprocess.Popen(
                [sys.executable, "-m", "ballast.local.traffic", "--kubeconfig", str(kubeconfig), "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_listening(traffic_url, traffic, log)
        (root / URL_FILE).write_text(traffic_url + "\n")
        targets.append(ScrapeTarget("synthetic-traffic", f"127.0.0.1:{port}"))
    prometheus = Prometheus(
        targets,
        binary=binary,
        data_dir=root / "prometheus",
        rules_dir=root / "prometheus" / "rules",
        port=port_or_free(PROMETHEUS_PORT),
        alertmanagers=[alertmanager.address] if alertmanager is not None else [],
    )
    monitoring = Monitoring(root, prometheus, traffic, traffic_url, alertmanager=alertmanager)
    try:
        if alertmanager is not None:
            alertmanager.run()
        prometheus.start()
    except Exception:
        monitoring.stop()
        raise
    monitoring.env = {PROMETHEUS_URL_ENV: prometheus.url, RULES_DIR_ENV: str(prometheus.rules_dir)}
    return monitoring
