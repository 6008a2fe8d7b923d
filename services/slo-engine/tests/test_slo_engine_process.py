"""The slo-engine process starts, serves its probes and metrics, leads, and stops cleanly on SIGTERM."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from slo_fixtures import slo_api, start_engine  # noqa: F401  (fixture)

from ballast.testing import NatsServer, ServiceProcess


@pytest.mark.cluster
async def test_starts_ready_and_drains_on_sigterm(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    kubeconfig_path: Path,
    namespace: str,
    slo_api: None,
) -> None:
    service = start_engine(services, nats_server.url, kubeconfig_path, namespace, "engine")
    await service.wait_status("/readyz", 200, timeout=60)  # the machine is shared: start-up under load
    assert (await service.get("/healthz"))[0] == 200
    await service.wait_metric("ballast_bus_connected 1.0")
    await service.wait_metric(
        'controller_runtime_active_workers{controller="slo"} 0.0'
    )  # leading: the SLO controller runs
    await service.stop(timeout=15)
