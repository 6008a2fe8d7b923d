"""The incident-bot process starts, serves its probes and metrics, and stops cleanly on SIGTERM."""

from __future__ import annotations

from collections.abc import Callable

from ballast.testing import NatsServer, ServiceProcess


async def test_starts_ready_and_drains_on_sigterm(
    nats_server: NatsServer, services: Callable[..., ServiceProcess]
) -> None:
    service = services("ballast.incident_bot", nats_url=nats_server.url, BALLAST_HTTPS_PORT="0")
    await service.wait_status("/readyz", 200)
    assert (await service.get("/healthz"))[0] == 200
    await service.wait_metric("ballast_bus_connected 1.0")
    await service.stop(timeout=15)
