"""Work that runs until a stop is asked for: a watch or a follow loop that never ends by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Runs `work` until it ends or `stop` is set. Work that ended by itself ended with an error (a watch does not
    end otherwise): that error is raised; work cut short by the stop is cancelled."""
    following = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({following, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        following.cancel()
        stopping.cancel()
    if following.done() and not following.cancelled():
        following.result()
