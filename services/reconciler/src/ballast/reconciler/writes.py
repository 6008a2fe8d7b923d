"""Child writes that may outlive the reconcile that started them.

The API server writes some children in single file: a Service's cluster IP is allocated under one lock, one
IPAddress object at a time. A reconcile that waited for every child would hold its worker in that line, so in a
burst every worker stands behind the Service lock and the Deployments reach Kubernetes at the Services' pace, one by
one: the whole burst converges at that line's pace. (Kubernetes' own controllers also write a Deployment's status
more often when Deployments arrive one by one, at about the same CPU: `make bench-arrival`.)

So a reconcile waits a short `patience` for its writes and leaves the slow ones under way: its worker moves on, and
the WebApp's key is queued again when each write ends, for a reconcile that takes up the result. Each child kind
has its own lane of bounded concurrency, so writes of one kind waiting in the API server's line hold back neither
the other kinds nor the API server (the line waits here, not as open requests). A write under way is never started
twice: a reconcile that finds one for the same child leaves it be, and its end queues the WebApp again.

A lane holds a bounded number of writes, running or waiting for a slot. A write that finds its lane full is not
started: the WebApp waits for room by its key alone (a rendered manifest and a task per waiting write cost the
reconciler megabytes per thousand WebApps in a burst), and when room comes its key is queued again, for a
reconcile that renders and writes afresh. Room is held for each key queued that way until its reconcile ends, so
a burst of thousands keeps the lane full without overfilling it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
ChildKind = tuple[str, str]  # (apiVersion, kind)
Write = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
WriteResult = dict[str, Any] | BaseException | None  # the applied object, what the write raised, or still under way


@dataclass(frozen=True)
class _Write:
    manifest: dict[str, Any]
    task: asyncio.Task[dict[str, Any] | BaseException]


@dataclass
class _Lane(Generic[K]):
    slots: asyncio.Semaphore  # writes open against the API server at once
    capacity: int  # writes the lane holds, open or waiting for a slot
    writes: int = 0
    waiting: dict[K, None] = field(default_factory=dict)  # keys whose write found the lane full, oldest first
    woken: set[K] = field(default_factory=set)  # waiting keys queued again, holding room until their reconcile ends

    def has_room(self) -> bool:
        return self.writes + len(self.woken) < self.capacity


class ChildWrites(Generic[K]):
    def __init__(
        self,
        write: Write,
        written: Callable[[K], None],
        *,
        lane_size: int,
        lane_capacity: int,
        patience: float = 0.25,
    ) -> None:
        if lane_capacity < lane_size:
            raise ValueError(f"a lane's capacity ({lane_capacity}) is below its open writes ({lane_size})")
        self._write = write
        self._written = written  # called with the key when a write its reconcile left under way, or room, came
        self._lane_size = lane_size
        self._lane_capacity = lane_capacity
        self.patience = patience
        self._lanes: dict[ChildKind, _Lane[K]] = {}
        self._under_way: dict[tuple[K, ChildKind], _Write] = {}
        self._left: dict[K, set[ChildKind]] = {}  # under way when their reconcile stopped waiting
        self._group: asyncio.TaskGroup | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Holds the writes' tasks until `stop`; writes still under way then are cancelled (the next reconcile, here
        or in the next leader, applies again from the cluster's state)."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                await stop.wait()
            finally:
                self._group = None
                for lane in self._lanes.values():
                    lane.waiting.clear()  # before the cancelled writes' ends could wake them
                    lane.woken.clear()
                for write in self._under_way.values():
                    write.task.cancel()
        self._under_way.clear()
        self._left.clear()
        self._lanes.clear()

    @property
    def running(self) -> bool:
        """Whether writes can be started (`run` holds their task group)."""
        return self._group is not None

    def _leave(self, child: tuple[K, ChildKind]) -> None:
        self._left.setdefault(child[0], set()).add(child[1])

    def _take(self, child: tuple[K, ChildKind]) -> bool:
        """Whether the child had been left; it no longer is."""
        kinds = self._left.get(child[0])
        if kinds is None or child[1] not in kinds:
            return False
        kinds.discard(child[1])
        if not kinds:
            del self._left[child[0]]
        return True

    def under_way(self) -> int:
        return len(self._under_way)

    def waiting(self) -> int:
        """Writes waiting for room in a full lane (by key, not yet started)."""
        return sum(len(lane.waiting) for lane in self._lanes.values())

    def will_queue(self, key: K) -> bool:
        """Whether the end of a write left under way for the key, or room in a full lane, is still to come (and
        queue it again). Not once room has come: the reconcile now due is the one to write."""
        lanes = self._lanes.values()
        return (key in self._left or any(key in lane.waiting for lane in lanes)) and not any(
            key in lane.woken for lane in lanes
        )

    def forget(self, key: K) -> None:
        """The WebApp is gone: its writes under way are cancelled (what they would create, the garbage collector
        would delete with the owner)."""
        for child in [child for child in self._under_way if child[0] == key]:
            self._under_way.pop(child).task.cancel()
            self._take(child)
        for lane in self._lanes.values():
            lane.waiting.pop(key, None)
            lane.woken.discard(key)
            self._wake(lane)

    def settle(self, key: K) -> None:
        """The key's reconcile has ended: room held for it in a lane (see `_wake`) is free again, whether or not it
        wrote there (it may have found the WebApp deleted, denied, or still waiting for another write)."""
        for lane in self._lanes.values():
            if key in lane.woken:
                lane.woken.discard(key)
                self._wake(lane)

    async def apply(self, key: K, manifests: list[dict[str, Any]]) -> list[WriteResult]:
        """Each manifest's outcome, in order; None for a write still under way after `patience` (the key is queued
        again when it ends), for one an earlier reconcile started with a manifest since superseded, and for one whose
        lane is full (the key is queued again when the lane has room). Only the writes this call starts are waited
        for: one an earlier reconcile left is as likely to end now as later, and its end queues the key anyway."""
        earlier = [self._under_way.get((key, _kind(manifest))) for manifest in manifests]
        writes = [self._start(key, manifest) for manifest in manifests]
        started = [w.task for w, was in zip(writes, earlier, strict=True) if w is not None and w is not was]
        if started:
            await asyncio.wait(started, timeout=self.patience)
        outcomes: list[WriteResult] = []
        for manifest, write in zip(manifests, writes, strict=True):
            child = (key, _kind(manifest))
            if write is None:  # its lane was full: the key waits for room (not a write whose end will queue it)
                outcomes.append(None)
                continue
            if not write.task.done() or write.task.cancelled() or write.manifest != manifest:
                self._leave(child)
                outcomes.append(None)
                continue
            if self._under_way.get(child) is write:  # else forgotten meanwhile: the WebApp is gone
                del self._under_way[child]
            self._take(child)
            outcomes.append(write.task.result())
        return outcomes

    def _start(self, key: K, manifest: dict[str, Any]) -> _Write | None:
        """The write for the child under way, or None when its lane is full (the key then waits for room)."""
        child = (key, _kind(manifest))
        write = self._under_way.get(child)
        if write is not None and (write.manifest == manifest or not write.task.done()):
            # One write per child at a time: an earlier reconcile's, with a manifest since changed, runs to its end
            # first; the reconcile its end brings then writes the new one.
            return write
        if self._group is None:
            raise RuntimeError("child writes are not running (ChildWrites.run)")
        lane = self._lane(child[1])
        lane.woken.discard(key)  # the room held for it is taken now
        if not lane.has_room():
            lane.waiting[key] = None  # kept in its place if already waiting
            return None
        lane.waiting.pop(key, None)
        lane.writes += 1
        task = self._group.create_task(self._write_in_lane(lane, manifest))
        write = _Write(manifest, task)
        self._under_way[child] = write
        task.add_done_callback(lambda _: self._ended(child, write, lane))
        return write

    def _lane(self, kind: ChildKind) -> _Lane[K]:
        lane = self._lanes.get(kind)
        if lane is None:
            lane = self._lanes[kind] = _Lane(asyncio.Semaphore(self._lane_size), self._lane_capacity)
        return lane

    def _ended(self, child: tuple[K, ChildKind], write: _Write, lane: _Lane[K]) -> None:
        lane.writes -= 1
        self._wake(lane)
        if write.task.cancelled() or self._under_way.get(child) is not write:
            return
        if self._take(child):  # no reconcile is waiting for it: queue one to take up the outcome
            self._written(child[0])

    def _wake(self, lane: _Lane[K]) -> None:
        """Queues waiting keys again while the lane has room, holding room for each until its reconcile ends.

        A waiting key is never also `_left` for that lane's kind: a reconcile in progress may see its write refused
        room and be woken before it returns, and the wake must not depend on what that reconcile does next."""
        while lane.waiting and lane.has_room():
            key = next(iter(lane.waiting))
            del lane.waiting[key]
            lane.woken.add(key)
            self._written(key)

    async def _write_in_lane(self, lane: _Lane[K], manifest: dict[str, Any]) -> dict[str, Any] | BaseException:
        try:
            async with lane.slots:
                return await self._write(manifest)
        except Exception as exc:  # the reconcile that takes the outcome decides: refused, or retried with backoff
            return exc


def _kind(manifest: dict[str, Any]) -> ChildKind:
    return manifest["apiVersion"], manifest["kind"]
