"""`ballast events tail`: events as they are stored, from one or more streams, filtered, until Ctrl-C.

Starts after the last message stored when it begins (or at --since / --from-seq); reads with the bus's ordered
reader, which follows the stream and survives a lost consumer without skipping or repeating anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from ballast.bus import Bus, StoredEvent
from ballast.replay.progress import Stop
from ballast.replay.reading import last_sequence, read_selection
from ballast.replay.selection import Selection


def summary(stream: str, stored: StoredEvent) -> str:
    """One line: stored time, stream and sequence, subject, type, id (or why the message is not an event)."""
    headers = {k.lower(): v for k, v in stored.headers.items()}
    what = f"{headers.get('ce-type', '?')} {headers.get('ce-id', '?')}"
    if "ce-type" not in headers:
        what = "(not a CloudEvent)"
    return f"{stored.time.isoformat().replace('+00:00', 'Z')} {stream}#{stored.sequence} {stored.subject} {what}"


async def tail(
    bus: Bus,
    streams: Sequence[str],
    selection: Selection,
    show: Callable[[str, StoredEvent], None],
    stop: Stop,
    *,
    limit: int | None = None,
) -> int:
    """Shows every selected event of `streams` as it arrives until `stop` (or `limit` events); returns the count."""
    shown = 0
    enough = asyncio.Event()

    async def follow(stream: str) -> None:
        nonlocal shown
        start = selection
        if selection.from_seq is None and selection.since is None:
            start = Selection(
                subjects=selection.subjects,
                types=selection.types,
                sources=selection.sources,
                until=selection.until,
                from_seq=await last_sequence(bus, stream) + 1,
                to_seq=selection.to_seq,
            )
        async with contextlib.aclosing(read_selection(bus, stream, start, follow=True)) as messages:
            async for stored in messages:
                show(stream, stored)
                shown += 1
                if limit is not None and shown >= limit:
                    enough.set()
                    return

    tasks = [asyncio.create_task(follow(stream)) for stream in streams]
    finished = asyncio.ensure_future(asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION))
    stopping = asyncio.ensure_future(stop.event.wait())
    enough_set = asyncio.ensure_future(enough.wait())
    try:
        await asyncio.wait((finished, stopping, enough_set), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*tasks, stopping, enough_set):
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        finished.cancel()
    for outcome in results:
        if isinstance(outcome, Exception):
            raise outcome
    return shown
