"""A bounded buffer between code that must never wait (watch callbacks, reconciles) and a slow sink (the bus, the API
server), emptied in batches by one task.

Made for observed facts that come in bursts: when the buffer is full, `offer` refuses the item at once and counts it
rather than holding the caller back or letting memory grow. What is refused can be observed again (the next relist,
the next reconcile); an operator stalled behind its own reporting cannot catch up on anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Outbox(Generic[T]):
    """Holds up to `capacity` items; `run` hands them to `flush` in order, at most `max_batch` at a time.

    `dropped` counts the items that never reached `flush` or whose flush failed.
    """

    def __init__(
        self, name: str, flush: Callable[[list[T]], Awaitable[object]], *, capacity: int, max_batch: int
    ) -> None:
        if capacity < 1 or max_batch < 1:
            raise ValueError(f"outbox {name!r}: capacity and max_batch must be at least 1")
        self.name = name
        self._flush = flush
        self._capacity = capacity
        self._max_batch = max_batch
        self._items: deque[T] = deque()
        self._arrived = asyncio.Event()
        self._closed = False
        self._refusing = False  # inside a run of refusals: logged once when it starts and once when it ends
        self._refused_in_run = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: T) -> bool:
        """Buffers `item` for the next flush; False (and counted) if the outbox is full or no longer running."""
        if self._closed or len(self._items) >= self._capacity:
            self.dropped += 1
            self._refused_in_run += 1
            if not self._refusing:
                self._refusing = True
                if self._closed:
                    log.warning("outbox %s has stopped: dropping what is offered", self.name)
                else:
                    log.warning("outbox %s full (%d waiting): dropping until there is room", self.name, self._capacity)
            return False
        if self._refusing:
            self._refusing = False
            log.warning("outbox %s has room again; %d dropped meanwhile", self.name, self._refused_in_run)
            self._refused_in_run = 0
        self._items.append(item)
        self._arrived.set()
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Flushes until `stop` is set, then flushes what is still buffered and returns; later offers are refused."""
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while self._items or not stop.is_set():
                if not self._items:
                    self._arrived.clear()
                    arrived = asyncio.ensure_future(self._arrived.wait())
                    await asyncio.wait({arrived, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    arrived.cancel()
                    continue
                batch = [self._items.popleft() for _ in range(min(self._max_batch, len(self._items)))]
                try:
                    await self._flush(batch)
                except Exception:
                    # The sink failed past its own retries; what was in the batch is lost like a refused offer.
                    self.dropped += len(batch)
                    log.exception("outbox %s could not flush %d items; dropped", self.name, len(batch))
        finally:
            stopped.cancel()
            self._closed = True
