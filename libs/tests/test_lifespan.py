"""A service's resources and its leader-only work, run by the runtime against a real NATS server.

The election here is a protocol, not a third-party service: `Ballot` is one decided by the test, so that a term can
begin and end exactly when the test says (the Lease-based one has its own tests in test_leader.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from ballast.bus import Bus
from ballast.kube.pacing import until_any
from ballast.runtime import ServiceApp, ServiceSettings
from ballast.testing import NatsServer, eventually


class Ballot:
    """An election the test decides: `grant()` begins a term, `revoke()` ends it."""

    def __init__(self) -> None:
        self.campaigning = asyncio.Event()
        self._granted = asyncio.Event()
        self._revoked = asyncio.Event()

    def grant(self) -> None:
        self._revoked.clear()
        self._granted.set()

    def revoke(self) -> None:
        self._granted.clear()
        self._revoked.set()

    async def run(self, lead: Callable[[asyncio.Event], Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
        self.campaigning.set()
        while True:
            await until_any(self._granted, stop)
            if stop.is_set():
                return
            lost = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(lead(lost))
                await until_any(self._revoked, stop)
                lost.set()


@asynccontextmanager
async def running(app: ServiceApp) -> AsyncIterator[str]:
    """Runs `app` until the block ends (then drains it); yields its health server's URL."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await eventually(lambda: app.health is not None and app.health.port != 0, what="health server up")
        assert app.health is not None
        yield f"http://127.0.0.1:{app.health.port}"
    finally:
        stop.set()
        await task


async def readiness(url: str, good: Callable[[int, str], bool], what: str) -> tuple[int, str]:
    async def probe() -> tuple[int, str] | None:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
            got = response.status, await response.text()
        return got if good(*got) else None

    return await eventually(probe, what=what)


def ready(status: int, _: str) -> bool:
    return status == 200


def settings(nats: NatsServer) -> ServiceSettings:
    return ServiceSettings(nats_url=nats.url, http_port=0, shutdown_grace=5)


async def test_resources_open_before_and_close_after_the_work_in_reverse_order(nats_server: NatsServer) -> None:
    app = ServiceApp("lifespan-test", settings(nats_server))
    history: list[str] = []
    let_open = asyncio.Event()

    def resource(name: str, hold: asyncio.Event | None = None) -> Any:
        async def open(bus: Bus) -> str:
            assert bus.is_connected
            if hold is not None:
                await hold.wait()
            history.append(f"open {name}")
            return f"{name} handle"

        async def close(value: str) -> None:
            history.append(f"close {value}")

        return app.lifespan(name, open, close)

    client, store = resource("client"), resource("store", hold=let_open)

    async def work(_: Bus, stop: asyncio.Event) -> None:
        history.append(f"work with {client.value} and {store.value}")
        await stop.wait()
        history.append("work ended")

    app.background(work)
    async with running(app) as url:
        # Opened in order: the first is open while the second is still opening.
        status, _ = await readiness(
            url, lambda _, body: "store not open yet" in body and "client" not in body, "client open, store opening"
        )
        assert status == 503
        with pytest.raises(RuntimeError, match="store not open yet"):
            _ = store.value
        let_open.set()
        await readiness(url, ready, "ready once store is open")
        assert client.value == "client handle"
    assert history == [
        "open client",
        "open store",
        "work with client handle and store handle",
        "work ended",
        "close store handle",
        "close client handle",
    ]
    with pytest.raises(RuntimeError, match="client not open yet"):
        _ = client.value


async def test_a_resource_that_fails_to_close_does_not_keep_the_others_open(nats_server: NatsServer) -> None:
    app = ServiceApp("lifespan-test", settings(nats_server))
    closed: list[str] = []

    async def open(_: Bus) -> str:
        return "handle"

    async def close_first(_: str) -> None:
        closed.append("first")

    async def close_second(_: str) -> None:
        raise OSError("connection already gone")

    app.lifespan("first", open, close_first)
    app.lifespan("second", open, close_second)
    async with running(app) as url:
        await readiness(url, ready, "ready")
    assert closed == ["first"]


async def test_leader_work_runs_only_while_this_replica_leads(nats_server: NatsServer) -> None:
    app = ServiceApp("lead-test", settings(nats_server))
    ballot = Ballot()
    terms: list[str] = []
    made_with: list[str] = []

    async def open(_: Bus) -> str:
        return "api"

    api = app.lifespan("api", open)

    def election() -> Ballot:
        made_with.append(api.value)  # made once resources are open
        return ballot

    async def operate(bus: Bus, lost: asyncio.Event) -> None:
        assert bus.is_connected
        terms.append("began")
        await lost.wait()
        terms.append("ended")

    app.lead(election, operate)
    async with running(app) as url:
        await readiness(url, ready, "ready")
        await eventually(ballot.campaigning.is_set, what="the campaign started")
        assert made_with == ["api"]
        assert terms == [], "a standby ran leader work"
        ballot.grant()
        await eventually(lambda: terms == ["began"], what="the first term's work started")
        ballot.revoke()
        await eventually(lambda: terms == ["began", "ended"], what="the work stopped when leadership was lost")
        ballot.grant()
        await eventually(lambda: terms[2:] == ["began"], what="the second term's work started")
    assert terms == ["began", "ended", "began", "ended"], "shutdown ends the term's work"
