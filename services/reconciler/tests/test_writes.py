"""ChildWrites on its own: which writes a reconcile waits for, which it leaves, and what their end brings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ballast.reconciler.writes import ChildWrites
from ballast.testing.waiting import eventually


def manifest(kind: str, name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


class Server:
    """Answers each write when the test lets that kind through; counts the writes open at once per kind."""

    def __init__(self) -> None:
        self.open: dict[str, asyncio.Event] = {}
        self.writes: list[dict[str, Any]] = []
        self.at_once: dict[str, int] = {}
        self.most_at_once: dict[str, int] = {}
        self.refuse: set[str] = set()
        self.cancelled = 0

    def gate(self, kind: str) -> asyncio.Event:
        return self.open.setdefault(kind, asyncio.Event())

    async def write(self, body: dict[str, Any]) -> dict[str, Any]:
        kind = body["kind"]
        self.writes.append(body)
        self.at_once[kind] = self.at_once.get(kind, 0) + 1
        self.most_at_once[kind] = max(self.most_at_once.get(kind, 0), self.at_once[kind])
        try:
            await self.gate(kind).wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.at_once[kind] -= 1
        if kind in self.refuse:
            raise PermissionError(f"{kind} refused")
        return {**body, "metadata": {**body["metadata"], "resourceVersion": str(len(self.writes))}}


@pytest.fixture
async def setup() -> AsyncIterator[tuple[ChildWrites[str], Server, list[str]]]:
    server, queued = Server(), list[str]()
    writes: ChildWrites[str] = ChildWrites(server.write, queued.append, lane_size=2, patience=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(writes.run(stop))
    await asyncio.sleep(0)  # let run() open its task group
    yield writes, server, queued
    stop.set()
    await asyncio.wait_for(running, 5)


async def test_writes_done_within_patience_are_returned_and_queue_nothing(setup: Any) -> None:
    writes, server, queued = setup
    server.gate("Service").set()
    server.gate("Deployment").set()
    outcomes = await writes.apply("a", [manifest("Deployment"), manifest("Service")])
    assert [o["kind"] for o in outcomes] == ["Deployment", "Service"]
    assert queued == []  # a write's end is seen before the reconcile waiting for it resumes
    assert writes.under_way() == 0


async def test_a_slow_write_is_left_under_way_and_its_end_queues_the_key(setup: Any) -> None:
    writes, server, queued = setup
    server.gate("Deployment").set()
    outcomes = await writes.apply("a", [manifest("Deployment"), manifest("Service")])
    assert outcomes[0] is not None
    assert outcomes[1] is None
    assert writes.under_way() == 1
    server.gate("Service").set()
    await eventually(lambda: queued == ["a"], timeout=5, what="the key queued again")
    # The reconcile that follows takes up the outcome without writing again.
    again = await writes.apply("a", [manifest("Service")])
    assert again[0] is not None
    assert again[0]["kind"] == "Service"
    assert [w["kind"] for w in server.writes] == ["Deployment", "Service"]
    assert writes.under_way() == 0


async def test_a_reconcile_does_not_wait_for_a_write_an_earlier_one_left(setup: Any) -> None:
    writes, server, _ = setup
    assert await writes.apply("a", [manifest("Service")]) == [None]
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await writes.apply("a", [manifest("Service")]) == [None]
    assert loop.time() - started < writes.patience
    assert len(server.writes) == 1  # one write per child at a time


async def test_a_changed_manifest_is_written_after_the_write_under_way(setup: Any) -> None:
    writes, server, queued = setup
    assert await writes.apply("a", [manifest("Service", port=80)]) == [None]
    assert await writes.apply("a", [manifest("Service", port=8080)]) == [None]  # superseded: not its outcome
    server.gate("Service").set()
    await eventually(lambda: queued == ["a"], timeout=5, what="the key queued when the old write ends")
    outcome = (await writes.apply("a", [manifest("Service", port=8080)]))[0]
    assert outcome is not None
    assert outcome["spec"] == {"port": 8080}
    assert [w["spec"] for w in server.writes] == [{"port": 80}, {"port": 8080}]


async def test_a_failed_write_is_returned_as_its_exception(setup: Any) -> None:
    writes, server, _ = setup
    server.refuse.add("Service")
    server.gate("Service").set()
    (outcome,) = await writes.apply("a", [manifest("Service")])
    assert isinstance(outcome, PermissionError)


async def test_each_kind_has_its_own_bounded_lane(setup: Any) -> None:
    writes, server, queued = setup
    for key in "abcde":
        assert await writes.apply(key, [manifest("Service", name=key)]) == [None]
    server.gate("Deployment").set()
    # Five Services wait, two of them open at a time; a Deployment goes through beside them.
    (deployment,) = await writes.apply("f", [manifest("Deployment", name="f")])
    assert deployment is not None
    assert server.most_at_once["Service"] == 2
    server.gate("Service").set()
    await eventually(lambda: sorted(queued) == list("abcde"), timeout=5, what="every Service's key queued again")
    assert server.most_at_once["Service"] == 2


async def test_forgetting_a_key_cancels_its_writes_and_queues_nothing(setup: Any) -> None:
    writes, server, queued = setup
    assert await writes.apply("a", [manifest("Service")]) == [None]
    writes.forget("a")
    assert writes.under_way() == 0
    await eventually(lambda: server.cancelled == 1, timeout=5, what="the write cancelled")
    await asyncio.sleep(0)  # one turn of the loop: the ended task's callbacks run
    assert queued == []


async def test_writes_need_the_runner() -> None:
    writes: ChildWrites[str] = ChildWrites(Server().write, lambda _: None, lane_size=1)
    with pytest.raises(RuntimeError, match="not running"):
        await writes.apply("a", [manifest("Service")])
