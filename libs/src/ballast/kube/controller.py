"""The controller-runtime reconciler contract on top of the work queue.

`reconcile(key)` is level-triggered and idempotent; it returns `Result(requeue_after=...)` instead of sleeping, and
raises to be retried with per-key exponential backoff — except `TerminalError`, which no retry can fix (the object
itself must change first) and is counted apart. Workers are bounded, and one slow key never blocks another.

`watch(source, map, predicate)` wires an informer to the queue as controller-runtime's builder does; `run` starts the
workers only once every watched source has synced, since a reconcile from a half-filled cache would take the objects
not listed yet for deleted ones.

Metrics keep controller-runtime's names: controller_runtime_reconcile_total{controller,result},
controller_runtime_reconcile_errors_total, controller_runtime_terminal_reconcile_errors_total,
controller_runtime_reconcile_time_seconds, controller_runtime_active_workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ballast.kube.informer import Informer, WatchEvent
from ballast.kube.pacing import until_any
from ballast.kube.predicate import Predicate
from ballast.kube.workqueue import DURATION_BUCKETS, ShutDown, WorkQueue, WorkQueueMetrics

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Result:
    requeue_after: float | None = None  # seconds; None: done until something changes


class TerminalError(Exception):
    """A reconcile failure no retry can fix (the object as written cannot be reconciled): not retried; the next
    change to the object queues it again."""


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.workqueue = WorkQueueMetrics(registry)
        self.reconciles = Counter(
            "controller_runtime_reconcile_total",
            "Reconciliations per controller and result (success, error, requeue_after).",
            ["controller", "result"],
            registry=registry,
        )
        self.errors = Counter(
            "controller_runtime_reconcile_errors_total",
            "Reconciliations that raised.",
            ["controller"],
            registry=registry,
        )
        self.terminal_errors = Counter(
            "controller_runtime_terminal_reconcile_errors_total",
            "Reconciliations that raised a terminal error (not retried).",
            ["controller"],
            registry=registry,
        )
        self.duration = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Time per reconciliation.",
            ["controller"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.active_workers = Gauge(
            "controller_runtime_active_workers", "Workers reconciling right now.", ["controller"], registry=registry
        )


class Controller(Generic[K]):
    def __init__(
        self,
        name: str,
        reconcile: Callable[[K], Awaitable[Result]],
        metrics: ControllerMetrics,
        *,
        workers: int = 8,
        base_delay: float = 0.005,
        max_delay: float = 1000.0,
    ) -> None:
        self.name = name
        self.queue: WorkQueue[K] = WorkQueue(name, metrics.workqueue, base_delay=base_delay, max_delay=max_delay)
        self._reconcile = reconcile
        self._workers = workers
        self._results = {r: metrics.reconciles.labels(name, r) for r in ("success", "error", "requeue_after")}
        self._errors = metrics.errors.labels(name)
        self._terminal = metrics.terminal_errors.labels(name)
        self._sources: list[Informer] = []
        self._duration = metrics.duration.labels(name)
        self._active = metrics.active_workers.labels(name)

    def enqueue(self, key: K) -> None:
        self.queue.add(key)

    def watch(
        self,
        source: Informer,
        map_keys: Callable[[dict[str, Any]], Iterable[K]],
        predicate: Predicate | None = None,
    ) -> None:
        """Queue the keys `map_keys` gives for each change of `source` that passes `predicate`."""
        self._sources.append(source)

        def changed(event: WatchEvent, new: dict[str, Any], old: dict[str, Any] | None) -> None:
            if predicate is None or predicate(event, new, old):
                for key in map_keys(new):
                    self.queue.add(key)

        source.subscribe(changed)

    async def synced(self, stop: asyncio.Event) -> bool:
        """Waits until every watched source has synced (True) or `stop` is set first (False)."""
        for source in self._sources:
            await until_any(source.synced, stop)
        return not stop.is_set() and all(source.synced.is_set() for source in self._sources)

    async def run(self, stop: asyncio.Event) -> None:
        """Runs the workers, once every watched source has synced, until `stop` is set; reconciles under way then
        finish, queued keys are left. The sources themselves are run by their owner (several controllers may watch
        one)."""
        if not await self.synced(stop):
            return
        log.info("%s controller: caches synced, starting %d workers", self.name, self._workers)
        async with asyncio.TaskGroup() as workers:
            for _ in range(self._workers):
                workers.create_task(self._work())
            await stop.wait()
            self.queue.shut_down()

    async def _work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            self._active.inc()
            started = time.perf_counter()
            try:
                result = await self._reconcile(key)
            except TerminalError as exc:
                self._terminal.inc()
                self._results["error"].inc()
                self.queue.forget(key)
                log.error("reconcile %s %s failed for good (not retried): %s", self.name, key, exc)
            except Exception:
                self._errors.inc()
                self._results["error"].inc()
                delay = self.queue.add_rate_limited(key)
                log.exception("reconcile %s %s failed; retrying in %.3fs", self.name, key, delay)
            else:
                self.queue.forget(key)
                if result.requeue_after is not None:
                    self._results["requeue_after"].inc()
                    self.queue.add_after(key, result.requeue_after)
                else:
                    self._results["success"].inc()
            finally:
                self._duration.observe(time.perf_counter() - started)
                self._active.dec()
                self.queue.done(key)
