"""Waiting on a condition with a deadline: the only way tests synchronise with the systems they drive."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T | None], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> T: ...


async def eventually(
    probe: Callable[[], object],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> object:
    """Calls `probe` until it returns something truthy and returns that; fails with `what` after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        last = result
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")
        await asyncio.sleep(interval)
