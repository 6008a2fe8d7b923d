"""Child writes that may outlive the reconcile that started them.

The API server writes some children in single file: a Service's cluster IP is allocated under one lock, one
IPAddress object at a time. A reconcile that waited for every child would hold its worker in that line, so in a
burst every worker stands behind the Service lock and the Deployments reach Kubernetes at the Services' pace, one by
one. Kubernetes' own controllers then do far more work per Deployment than for Deployments that arrive together
(each event a sync of its own instead of one sync for several; measured: the same Deployments and Services created
at 10 per second cost the control plane 1.6 times the CPU of the same objects created at once).

So a reconcile waits a short `patience` for its writes and leaves the slow ones under way: its worker moves on, and
the WebApp's key is queued again when each write ends, for a reconcile that takes up the result. Each child kind
has its own lane of bounded concurrency, so writes of one kind waiting in the API server's line hold back neither
the other kinds nor the API server (the line waits here, not as open requests). A write under way is never started
twice: a reconcile that finds one for the same child leaves it be, and its end queues the WebApp again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
ChildKind = tuple[str, str]  # (apiVersion, kind)
Write = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Outcome = dict[str, Any] | BaseException | None  # the applied object, what the write raised, or still under way


@dataclass(frozen=True)
class _Write:
    manifest: dict[str, Any]
    task: asyncio.Task[dict[str, Any] | BaseException]


class ChildWrites(Generic[K]):
    def __init__(self, write: Write, written: Callable[[K], None], *, lane_size: int, patience: float = 0.25) -> None:
        self._write = write
        self._written = written  # called with the key when a write its reconcile left under way has ended
        self._lane_size = lane_size
        self.patience = patience
        self._lanes: dict[ChildKind, asyncio.Semaphore] = {}
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
                for write in self._under_way.values():
                    write.task.cancel()
        self._under_way.clear()
        self._left.clear()

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

    def will_queue(self, key: K) -> bool:
        """Whether a write left under way for the key is still to end (and queue it again)."""
        return key in self._left

    def forget(self, key: K) -> None:
        """The WebApp is gone: its writes under way are cancelled (what they would create, the garbage collector
        would delete with the owner)."""
        for child in [child for child in self._under_way if child[0] == key]:
            self._under_way.pop(child).task.cancel()
            self._take(child)

    async def apply(self, key: K, manifests: list[dict[str, Any]]) -> list[Outcome]:
        """Each manifest's outcome, in order; None for a write still under way after `patience` (the key is queued
        again when it ends), or for one an earlier reconcile started with a manifest since superseded. Only the
        writes this call starts are waited for: one an earlier reconcile left is as likely to end now as later, and
        its end queues the key anyway."""
        earlier = [self._under_way.get((key, _kind(manifest))) for manifest in manifests]
        writes = [self._start(key, manifest) for manifest in manifests]
        started = [write.task for write, was in zip(writes, earlier, strict=True) if write is not was]
        if started:
            await asyncio.wait(started, timeout=self.patience)
        outcomes: list[Outcome] = []
        for manifest, write in zip(manifests, writes, strict=True):
            child = (key, _kind(manifest))
            if not write.task.done() or write.task.cancelled() or write.manifest != manifest:
                self._leave(child)
                outcomes.append(None)
                continue
            if self._under_way.get(child) is write:  # else forgotten meanwhile: the WebApp is gone
                del self._under_way[child]
            self._take(child)
            outcomes.append(write.task.result())
        return outcomes

    def _start(self, key: K, manifest: dict[str, Any]) -> _Write:
        child = (key, _kind(manifest))
        write = self._under_way.get(child)
        if write is not None and (write.manifest == manifest or not write.task.done()):
            # One write per child at a time: an earlier reconcile's, with a manifest since changed, runs to its end
            # first; the reconcile its end brings then writes the new one.
            return write
        if self._group is None:
            raise RuntimeError("child writes are not running (ChildWrites.run)")
        task = self._group.create_task(self._write_in_lane(child[1], manifest))
        write = _Write(manifest, task)
        self._under_way[child] = write
        task.add_done_callback(lambda _: self._ended(child, write))
        return write

    def _ended(self, child: tuple[K, ChildKind], write: _Write) -> None:
        if write.task.cancelled() or self._under_way.get(child) is not write:
            return
        if self._take(child):  # no reconcile is waiting for it: queue one to take up the outcome
            self._written(child[0])

    async def _write_in_lane(self, kind: ChildKind, manifest: dict[str, Any]) -> dict[str, Any] | BaseException:
        lane = self._lanes.setdefault(kind, asyncio.Semaphore(self._lane_size))
        try:
            async with lane:
                return await self._write(manifest)
        except Exception as exc:  # the reconcile that takes the outcome decides: refused, or retried with backoff
            return exc


def _kind(manifest: dict[str, Any]) -> ChildKind:
    return manifest["apiVersion"], manifest["kind"]
