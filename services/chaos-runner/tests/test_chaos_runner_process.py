"""The chaos-runner process starts (connected to NATS and the Kubernetes API, its run state read), serves its probes
and metrics, and stops cleanly on SIGTERM."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ballast.testing import NatsServer, ServiceProcess

pytestmark = pytest.mark.cluster


async def test_starts_ready_and_drains_on_sigterm(
    nats_server: NatsServer, services: Callable[..., ServiceProcess], kubeconfig_path: Path
) -> None:
    service = services("ballast.chaos_runner", nats_url=nats_server.url, KUBECONFIG=str(kubeconfig_path))
    await service.wait_status("/readyz", 200, timeout=30)
    assert (await service.get("/healthz"))[0] == 200
    await service.wait_metric("ballast_bus_connected 1.0")
    await service.stop(timeout=15)


async def test_without_a_kubernetes_api_it_exits_saying_so(
    nats_server: NatsServer, services: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    missing = tmp_path / "kubeconfig"
    service = services("ballast.chaos_runner", nats_url=nats_server.url, KUBECONFIG=str(missing))
    log = service.stderr(timeout=30)
    assert service.returncode != 0
    assert "kubeconfig" in log.lower() or "kube-config" in log.lower(), log[-2000:]
