"""Service processes for real: readiness that follows NATS, config errors, SIGTERM drain.

Each service's own suite checks that it starts, serves its probes and stops cleanly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import observed

from ballast.bus import Bus
from ballast.events.contracts.k8s import k8s_subject
from ballast.testing import NatsServer, ServiceProcess, eventually

SLOW_SERVICE = str(Path(__file__).with_name("slow_service.py"))
Services = Callable[..., ServiceProcess]


async def test_readiness_fails_while_nats_is_down_and_recovers(
    fresh_nats_server: NatsServer, services: Services
) -> None:
    service = services("ballast.incident_bot", nats_url=fresh_nats_server.url)
    await service.wait_status("/readyz", 200)
    fresh_nats_server.kill()
    body = await service.wait_status("/readyz", 503)
    assert "nats" in body
    assert (await service.get("/healthz"))[0] == 200  # alive, only not ready: nothing to restart
    fresh_nats_server.start()
    await service.wait_status("/readyz", 200)
    await service.stop()


def test_bad_configuration_stops_start_up_naming_the_variable(services: Services) -> None:
    bad_port = services("ballast.reconciler", nats_url="nats://127.0.0.1:1", BALLAST_HTTP_PORT="eighty")
    assert "BALLAST_HTTP_PORT" in bad_port.stderr()
    assert bad_port.returncode == 2
    bad_url = services("ballast.reconciler", nats_url="http://wrong-scheme")
    assert "BALLAST_NATS_URL" in bad_url.stderr()
    assert bad_url.returncode == 2


async def test_sigterm_while_waiting_for_nats_at_start_up_exits_promptly(services: Services) -> None:
    from ballast.local.nats_server import free_port

    # Nothing listens there: start-up waits for NATS (BALLAST_CONNECT_WAIT) until told to stop.
    service = services("ballast.incident_bot", nats_url=f"nats://127.0.0.1:{free_port()}", BALLAST_CONNECT_WAIT="300")
    assert (await service.wait_status("/readyz", 503)).find("nats") >= 0
    # Prompt: an exit takes well under a second; one that waited out the connect wait would take 300 s. 30 s sits
    # far from both, so a loaded machine cannot fail a correct service nor pass a broken one.
    assert await service.terminate(timeout=30) == 0
    assert "stopped before start-up finished" in service.stderr()


async def test_sigterm_drains_in_flight_work_and_exits_zero(
    bus: Bus, services: Services, unique: Callable[[str], str]
) -> None:
    durable, bucket = unique("d"), unique("kv")
    await bus.ensure_streams()
    kv = await bus.js.create_key_value(bucket=bucket)
    events = [observed(f"drain-{i}") for i in range(12)]
    await bus.publisher.publish_all([(k8s_subject(durable, "shop", "Deployment", "updated"), e) for e in events])
    env = {
        "BALLAST_SHUTDOWN_GRACE": "5",
        "SLOW_SERVICE_DURABLE": durable,
        "SLOW_SERVICE_BUCKET": bucket,
        "SLOW_SERVICE_WORK_SECONDS": "1.0",
    }
    url = bus.url
    first = services(SLOW_SERVICE, nats_url=url, **env)
    await first.wait_metric('ballast_bus_in_flight{consumer="' + durable + '"} 4.0')
    signalled = time.monotonic()
    assert await first.terminate(timeout=30) == 0
    # The handlers in flight need 1 s and the grace is 5 s: an exit past grace + 5 s (far above the ~1 s expected,
    # even on a loaded 2-core machine) means the runtime did not stop at its grace.
    assert time.monotonic() - signalled < 5 + 5, "exceeded the grace period"
    finished = await _done(kv)
    assert len(finished) >= 4, "in-flight handlers were cut off instead of finishing"
    assert len(finished) < len(events), "the first instance handled everything: nothing was left to hand over"
    services(SLOW_SERVICE, nats_url=url, **env)
    expected = {e.id.replace(":", "_") for e in events}

    async def all_done() -> bool:
        return await _done(kv) >= expected

    await eventually(all_done, timeout=30, what="remaining events handled by the next instance")


async def _done(kv: Any) -> set[str]:
    try:
        return set(await kv.keys())
    except Exception:  # NoKeysError while empty
        return set()
