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
    """Answers each write when the test lets its kind, or that one child ("Kind/name"), through; counts the writes
    open at once per kind."""

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
        through = [asyncio.ensure_future(self.gate(gate).wait()) for gate in (kind, f"{kind}/{name(body)}")]
        try:
            await asyncio.wait(through, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.at_once[kind] -= 1
            for waiter in through:
                waiter.cancel()
        if kind in self.refuse:
            raise PermissionError(f"{kind} refused")
        return {**body, "metadata": {**body["metadata"], "resourceVersion": str(len(self.writes))}}


def name(body: dict[str, Any]) -> str:
    return str(body["metadata"]["name"])


@pytest.fixture
async def setup() -> AsyncIterator[tuple[ChildWrites[str], Server, list[str]]]:
    server, queued = Server(), list[str]()
    writes: ChildWrites[str] = ChildWrites(server.write, queued.append, lane_size=2, lane_capacity=4, patience=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(writes.run(stop))
    await eventually(lambda: writes.running, timeout=5, what="the writes' task group open")
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
    # Waiting for the write under way would now take 60 s (its gate never opens); not waiting takes microseconds.
    # 10 s is far from both, whatever the machine's load.
    writes.patience = 60
    assert await asyncio.wait_for(writes.apply("a", [manifest("Service")]), 10) == [None]
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
    for key in "abcd":
        assert await writes.apply(key, [manifest("Service", name=key)]) == [None]
    server.gate("Deployment").set()
    # Four Services wait, two of them open at a time; a Deployment goes through beside them.
    (deployment,) = await writes.apply("f", [manifest("Deployment", name="f")])
    assert deployment is not None
    assert server.most_at_once["Service"] == 2
    server.gate("Service").set()
    await eventually(lambda: sorted(queued) == list("abcd"), timeout=5, what="every Service's key queued again")
    assert server.most_at_once["Service"] == 2


async def fill_the_service_lane(writes: ChildWrites[str], server: Server, waiting: str) -> None:
    """Four Services in the lane (capacity 4), two open; one more write for each key in `waiting`, not started."""
    for key in "abcd" + waiting:
        assert await writes.apply(key, [manifest("Service", name=key)]) == [None]
    assert [name(w) for w in server.writes] == ["a", "b"]
    assert writes.under_way() == 4
    assert writes.waiting() == len(waiting)


async def test_a_full_lane_keeps_the_key_waiting_and_queues_it_when_room_comes(setup: Any) -> None:
    writes, server, queued = setup
    await fill_the_service_lane(writes, server, "e")
    assert writes.will_queue("e")  # its reconciles return at once meanwhile: nothing to write before room comes
    server.gate("Service").set()
    await eventually(lambda: sorted(queued) == list("abcde"), timeout=5, what="every key queued again")
    assert writes.waiting() == 0
    assert not writes.will_queue("e")  # room came: the reconcile now due is the one to write
    (outcome,) = await writes.apply("e", [manifest("Service", name="e")])
    assert outcome is not None
    assert outcome["metadata"]["name"] == "e"
    writes.settle("e")
    assert [name(w) for w in server.writes] == list("abcde")


async def test_room_is_held_for_a_key_queued_again_until_its_reconcile_ends(setup: Any) -> None:
    writes, server, queued = setup
    await fill_the_service_lane(writes, server, "efg")
    server.gate("Service/a").set()
    await eventually(lambda: set(queued) == {"a", "e"}, timeout=5, what="a's outcome and e's room")
    assert writes.waiting() == 2  # one write ended: room for one key
    writes.settle("e")  # e's reconcile ended without writing (say, the WebApp is being deleted): the room is free
    assert queued[-1] == "f"
    assert await writes.apply("f", [manifest("Service", name="f")]) == [None]  # f's reconcile takes the room
    writes.settle("f")
    assert writes.waiting() == 1
    assert "g" not in queued
    server.gate("Service/b").set()
    await eventually(lambda: "g" in queued, timeout=5, what="g's room when b's write ends")
    assert writes.waiting() == 0


async def test_room_that_comes_while_the_refused_reconcile_still_waits_is_not_lost(setup: Any) -> None:
    writes, server, queued = setup
    await fill_the_service_lane(writes, server, "")
    writes.patience = 30.0  # e's reconcile waits for its Deployment until the test lets it through
    children = [manifest("Deployment", name="e"), manifest("Service", name="e")]
    reconcile = asyncio.create_task(writes.apply("e", children))
    await eventually(lambda: writes.waiting() == 1, timeout=5, what="e's Service refused room")
    server.gate("Service/a").set()
    await eventually(lambda: "e" in queued, timeout=5, what="e queued when room came")
    server.gate("Deployment/e").set()
    deployment, service = await asyncio.wait_for(reconcile, 5)
    assert deployment is not None
    assert service is None
    writes.settle("e")
    # The reconcile the room brought is due and must write the Service, not return as if a write were under way.
    assert not writes.will_queue("e")
    assert writes.waiting() == 0
    writes.patience = 0.05
    assert await writes.apply("e", [manifest("Service", name="e")]) == [None]  # started; the test holds Services
    server.gate("Service").set()
    written = lambda: [name(w) for w in server.writes if w["kind"] == "Service"] == list("abcde")  # noqa: E731
    await eventually(written, timeout=5, what="e's Service written")


async def test_forgetting_a_key_drops_its_wait_for_room(setup: Any) -> None:
    writes, server, queued = setup
    await fill_the_service_lane(writes, server, "e")
    writes.forget("e")
    assert writes.waiting() == 0
    assert not writes.will_queue("e")
    server.gate("Service").set()
    await eventually(lambda: sorted(queued) == list("abcd"), timeout=5, what="every write's key queued again")
    assert len(server.writes) == 4


async def test_forgetting_a_key_cancels_its_writes_and_queues_nothing(setup: Any) -> None:
    writes, server, queued = setup
    await fill_the_service_lane(writes, server, "e")
    writes.forget("a")
    assert writes.under_way() == 3
    # The end of a's cancelled write makes room, which goes to e (b, c and d are held): once e is queued, that end
    # has been handled, and it queued nothing for a.
    await eventually(lambda: queued == ["e"], timeout=5, what="the room a's cancelled write left, given to e")
    assert server.cancelled == 1


async def test_writes_need_the_runner() -> None:
    writes: ChildWrites[str] = ChildWrites(Server().write, lambda _: None, lane_size=1, lane_capacity=1)
    with pytest.raises(RuntimeError, match="not running"):
        await writes.apply("a", [manifest("Service")])


def test_a_lane_holds_at_least_its_open_writes() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ChildWrites(Server().write, lambda _: None, lane_size=4, lane_capacity=2)
