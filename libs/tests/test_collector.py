"""The collector paused for a burst of work, and back as it was after."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from ballast.runtime import collector


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_paused_turns_the_collector_off_and_back_on() -> None:
    with collector.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_back_on_even_when_the_work_fails() -> None:
    with pytest.raises(RuntimeError), collector.paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_off_before_stays_off() -> None:
    gc.disable()
    with collector.paused():
        pass
    assert not gc.isenabled()


async def test_overlapping_pauses_end_with_the_last() -> None:
    first_in, second_out = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        with collector.paused():
            first_in.set()
            await second_out.wait()
            assert not gc.isenabled()  # the second ended, this one still runs
        assert gc.isenabled()

    async def second() -> None:
        await first_in.wait()
        with collector.paused():
            assert not gc.isenabled()
        second_out.set()

    async with asyncio.timeout(5):
        await asyncio.gather(first(), second())
    assert gc.isenabled()
