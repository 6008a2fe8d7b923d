"""The reconciler process starts, serves its probes and metrics, and stops cleanly on SIGTERM (releasing its lease)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ballast.testing import NatsServer, ServiceProcess


@pytest.mark.cluster
async def test_starts_ready_and_drains_on_sigterm(
    nats_server: NatsServer, services: Callable[..., ServiceProcess], kubeconfig_path: Path, namespace: str
) -> None:
    service = services(
        "ballast.reconciler",
        nats_url=nats_server.url,
        KUBECONFIG=str(kubeconfig_path),
        BALLAST_LEASE_NAMESPACE=namespace,
    )
    await service.wait_status("/readyz", 200)
    assert (await service.get("/healthz"))[0] == 200
    await service.wait_metric("ballast_bus_connected 1.0")
    await service.stop(timeout=15)
