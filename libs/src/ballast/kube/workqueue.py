"""A per-key work queue with client-go's semantics, for level-triggered controllers.

- A key waiting in the queue is there once, however often it is added (events collapse).
- A key is handed to one worker at a time; added again while being processed, it is queued again once `done`.
- `add_rate_limited` delays a failing key exponentially (per key, `base * 2**failures` capped at `cap`);
  `forget` resets that after a success. `add_after` schedules a requeue (the controller's `requeue_after`).

Metrics use client-go's names so existing dashboards work: workqueue_depth, workqueue_adds_total,
workqueue_queue_duration_seconds, workqueue_work_duration_seconds, workqueue_retries_total.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

K = TypeVar("K", bound=Hashable)

DURATION_BUCKETS = (0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class ShutDown(Exception):
    """The queue was shut down: workers stop taking keys."""


class WorkQueueMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.depth = Gauge("workqueue_depth", "Current depth of the work queue.", ["name"], registry=registry)
        self.adds = Counter("workqueue_adds_total", "Adds handled by the work queue.", ["name"], registry=registry)
        self.queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long a key stays in the queue before a worker takes it.",
            ["name"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long processing a key takes.",
            ["name"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "workqueue_retries_total", "Rate-limited requeues handled by the work queue.", ["name"], registry=registry
        )


class WorkQueue(Generic[K]):
    def __init__(
        self,
        name: str,
        metrics: WorkQueueMetrics,
        *,
        base_delay: float = 0.005,
        max_delay: float = 1000.0,
    ) -> None:
        self.name = name
        self._base = base_delay
        self._cap = max_delay
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # keys waiting in the queue or to be requeued after processing
        self._processing: set[K] = set()
        self._added_at: dict[K, float] = {}
        self._started_at: dict[K, float] = {}
        self._failures: dict[K, int] = {}
        self._delayed: list[tuple[float, int, K]] = []  # heap of (due, tiebreak, key)
        self._delayed_due: dict[K, float] = {}  # earliest pending due time per key
        self._tiebreak = itertools.count()
        self._waiters: deque[asyncio.Future[None]] = deque()  # workers blocked in get()
        # The handle and its due time kept apart: uvloop's call_at for a time already past gives a plain Handle,
        # which has no when().
        self._timer: asyncio.Handle | None = None
        self._timer_due = float("inf")
        self._shutting_down = False
        self._depth = metrics.depth.labels(name)
        self._adds = metrics.adds.labels(name)
        self._queue_duration = metrics.queue_duration.labels(name)
        self._work_duration = metrics.work_duration.labels(name)
        self._retries = metrics.retries.labels(name)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._adds.inc()
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._enqueue(key)

    def _enqueue(self, key: K) -> None:
        self._queue.append(key)
        self._added_at[key] = asyncio.get_running_loop().time()
        self._depth.set(len(self._queue))
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def add_after(self, key: K, delay: float) -> None:
        """Adds `key` once `delay` seconds have passed; an earlier pending add for the same key wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if self._delayed_due.get(key, float("inf")) <= due:
            return
        self._delayed_due[key] = due
        heapq.heappush(self._delayed, (due, next(self._tiebreak), key))
        self._arm_timer()

    def _arm_timer(self) -> None:
        if not self._delayed:
            return
        due = self._delayed[0][0]
        if self._timer is not None and self._timer_due <= due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(due, self._fire_delayed)
        self._timer_due = due

    def _fire_delayed(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._delayed_due.get(key) == due:
                del self._delayed_due[key]
                self.add(key)
        self._arm_timer()

    def next_delay(self, key: K) -> float:
        """The delay `add_rate_limited` would use now: base * 2**failures, capped."""
        return float(min(self._cap, self._base * (2 ** self._failures.get(key, 0))))

    def add_rate_limited(self, key: K) -> float:
        delay = self.next_delay(key)
        self._failures[key] = self._failures.get(key, 0) + 1
        self._retries.inc()
        self.add_after(key, delay)
        return delay

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    async def get(self) -> K:
        """The next key to process; raises `ShutDown` once the queue is shut down and empty."""
        loop = asyncio.get_running_loop()
        while not self._queue or self._shutting_down:
            if self._shutting_down:
                raise ShutDown  # queued keys are left: whoever runs next relists everything anyway
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass on a wake-up this worker can no longer use
                raise
        key = self._queue.popleft()
        loop_time = loop.time()
        self._depth.set(len(self._queue))
        self._queue_duration.observe(loop_time - self._added_at.pop(key, loop_time))
        self._processing.add(key)
        self._dirty.discard(key)
        self._started_at[key] = loop_time
        return key

    def done(self, key: K) -> None:
        """Marks `key` processed; if it was added meanwhile, it goes back in the queue."""
        self._processing.discard(key)
        started = self._started_at.pop(key, None)
        if started is not None:
            self._work_duration.observe(asyncio.get_running_loop().time() - started)
        if key in self._dirty:
            self._enqueue(key)

    def shut_down(self) -> None:
        """No more adds, no more keys handed out; blocked workers wake up to `ShutDown`."""
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
