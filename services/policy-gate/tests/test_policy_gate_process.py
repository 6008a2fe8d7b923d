"""The policy-gate process starts (with the OPA it runs), serves its probes and metrics, and stops cleanly on SIGTERM;
without an OPA to use it refuses to start, naming the settings, as it does when asked for Events without the cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from ballast.testing import NatsServer, ServiceProcess


async def test_starts_ready_and_drains_on_sigterm(
    nats_server: NatsServer, services: Callable[..., ServiceProcess], opa_binary: Path
) -> None:
    service = services(
        "ballast.policy_gate", nats_url=nats_server.url, BALLAST_HTTPS_PORT="0", BALLAST_OPA_BINARY=str(opa_binary)
    )
    await service.wait_status("/readyz", 200)
    assert (await service.get("/healthz"))[0] == 200
    await service.wait_metric("ballast_bus_connected 1.0")
    await service.stop(timeout=15)


async def test_refuses_to_start_without_an_opa(
    nats_server: NatsServer, services: Callable[..., ServiceProcess]
) -> None:
    service = services("ballast.policy_gate", nats_url=nats_server.url, BALLAST_HTTPS_PORT="0")
    log = await asyncio.to_thread(service.stderr)  # waits for the exit
    assert service.returncode == 2
    assert "set exactly one of BALLAST_OPA_BINARY (run OPA here) and BALLAST_OPA_URL (use that OPA)" in log


async def test_refuses_to_emit_events_without_the_cluster(
    nats_server: NatsServer, services: Callable[..., ServiceProcess], opa_binary: Path
) -> None:
    service = services(
        "ballast.policy_gate",
        nats_url=nats_server.url,
        BALLAST_HTTPS_PORT="0",
        BALLAST_OPA_BINARY=str(opa_binary),
        BALLAST_EMIT_AUDIT_EVENTS="true",
    )
    log = await asyncio.to_thread(service.stderr)  # waits for the exit
    assert service.returncode == 2
    assert "BALLAST_EMIT_ADMISSION_EVENTS and BALLAST_EMIT_AUDIT_EVENTS need BALLAST_WATCH_CLUSTER=true" in log
