"""The outbox: batches in order, a hard bound with counted drops, a drain on stop, a failed flush that is survived."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ballast.runtime.outbox import Outbox
from ballast.testing import eventually


class Sink:
    """Records each batch; `hold` keeps a flush waiting until released, as a slow bus or API server would."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.flushing = asyncio.Event()
        self.fail_next = False

    async def flush(self, batch: list[int]) -> None:
        self.flushing.set()
        await self.hold.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("sink refused")
        self.batches.append(batch)

    @property
    def items(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


async def test_buffered_items_are_flushed_in_order_in_batches_of_at_most_max_batch() -> None:
    sink = Sink()
    outbox = Outbox("test", sink.flush, capacity=100, max_batch=4)
    for item in range(10):
        assert outbox.offer(item)
    stop = asyncio.Event()

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(outbox.run(stop))
        await eventually(lambda: len(sink.items) == 10, what="the buffered items flushed")
        assert outbox.offer(10)
        await eventually(lambda: len(sink.items) == 11, what="an item offered while running")
        stop.set()

    assert [len(batch) for batch in sink.batches[:3]] == [4, 4, 2]
    assert sink.items == list(range(11))
    assert outbox.dropped == 0


async def test_a_full_outbox_refuses_at_once_and_counts_the_drops(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    outbox = Outbox("facts", sink.flush, capacity=3, max_batch=10)

    with caplog.at_level(logging.WARNING):
        accepted = [outbox.offer(item) for item in range(5)]

    assert accepted == [True, True, True, False, False]
    assert (outbox.dropped, len(outbox)) == (2, 3)
    assert [r.getMessage() for r in caplog.records] == ["outbox facts full (3 waiting): dropping until there is room"]

    stop = asyncio.Event()
    stop.set()
    await outbox.run(stop)
    assert sink.items == [0, 1, 2]
    with caplog.at_level(logging.WARNING):
        assert not outbox.offer(5)  # nothing flushes after the run ended
    assert outbox.dropped == 3


async def test_stop_drains_everything_buffered_before_run_returns() -> None:
    sink = Sink()
    sink.hold.clear()
    outbox = Outbox("test", sink.flush, capacity=100, max_batch=2)
    stop = asyncio.Event()
    outbox.offer(0)
    running = asyncio.create_task(outbox.run(stop))
    await asyncio.wait_for(sink.flushing.wait(), timeout=5)  # the first batch is in the (held) sink
    for item in range(1, 6):
        outbox.offer(item)

    stop.set()
    sink.hold.set()
    await asyncio.wait_for(running, timeout=5)

    assert sink.items == list(range(6))
    assert len(outbox) == 0


async def test_a_failed_flush_is_counted_and_the_outbox_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    sink.fail_next = True
    outbox = Outbox("test", sink.flush, capacity=100, max_batch=3)
    for item in range(5):
        outbox.offer(item)
    stop = asyncio.Event()
    stop.set()

    with caplog.at_level(logging.ERROR):
        await outbox.run(stop)

    assert sink.items == [3, 4]
    assert outbox.dropped == 3
    assert "could not flush 3 items" in caplog.text


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Outbox("test", Sink().flush, capacity=0, max_batch=1)
