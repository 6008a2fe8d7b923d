"""Reading a selection of one stream, in stream order.

The start goes to the server (a sequence or a time), so does the subject filter; the end is the selection's last
sequence, else its end time, else (unless following) the message that was last when reading began. Times are the
stream's own (when each message was stored).

A read to an end goes through the lean reader (`lean_reader`: several times faster than nats-py) where it can, and
through the bus's ordered reader where it cannot (TLS, credentials, several servers: from where the lean one
stopped) or when following the stream. Both give the same messages: sequences, times, subjects, headers and bodies.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import AsyncGenerator
from typing import Literal

import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from ballast.bus import LAST, Bus, StoredEvent
from ballast.replay.lean_reader import LeanReader, Unsupported, parse_headers, stored_time
from ballast.replay.selection import Selection, SelectionError

log = logging.getLogger(__name__)


async def read_selection(
    bus: Bus, stream: str, selection: Selection, *, follow: bool = False, lean: bool = True
) -> AsyncGenerator[StoredEvent, None]:
    """The selected messages; use with `contextlib.aclosing` when the loop may end early. `lean=False` reads with
    the bus's ordered reader only."""
    if lean and not follow:
        last: int | None = None
        try:
            async for stored in _read_lean(bus, stream, selection):
                last = stored.sequence
                yield stored
            return
        except Unsupported as exc:
            log.info("reading %s continues with the bus reader: %s", stream, exc)
        if last is not None:
            rest = selection.after(last)
            if rest is None:
                return
            selection = rest
    until: int | Literal["last"] | None = selection.to_seq if selection.to_seq is not None else None
    if until is None and not follow:
        until = LAST
    from_time = selection.since if selection.from_seq is None else None
    try:
        reader = bus.read(
            stream,
            subjects=selection.subjects,
            from_sequence=selection.from_seq,
            from_time=from_time,
            until=until,
        )
        async with reader as messages:
            async for stored in messages:
                if selection.since is not None and stored.time < selection.since:
                    continue  # a sequence start before the time window
                if selection.until is not None and stored.time > selection.until:
                    return  # stored times only grow along the stream
                if selection.filters_headers and not selection.wants(stored.headers):
                    continue
                yield stored
    except LookupError as exc:
        raise SelectionError(str(exc)) from None


def lean_reader(url: str, stream: str, selection: Selection) -> LeanReader:
    """The lean reader of the selection's start, subjects and last sequence (its time window and header filters are
    the caller's to apply: the server has no end time)."""
    return LeanReader(
        url,
        stream,
        subjects=selection.subjects,
        from_seq=selection.from_seq,
        from_time=selection.since if selection.from_seq is None else None,
        until=selection.to_seq,
    )


async def _read_lean(bus: Bus, stream: str, selection: Selection) -> AsyncGenerator[StoredEvent, None]:
    reader = lean_reader(bus.url, stream, selection)
    registry = bus.catalogue.registry
    since, until = selection.since, selection.until
    async with reader:
        async for batch in reader:
            for sequence, subject, nanos, block, payload in batch:
                time = stored_time(nanos)
                if since is not None and time < since:
                    continue  # a sequence start before the time window
                if until is not None and time > until:
                    return
                headers = parse_headers(block)
                if selection.filters_headers and not selection.wants(headers):
                    continue
                yield StoredEvent(sequence, time, subject, headers, payload, registry)


async def last_sequence(bus: Bus, stream: str) -> int:
    """The stream's last sequence now (0 when empty); `SelectionError` if there is no such stream."""
    try:
        info = await bus.js.stream_info(stream)
    except NotFoundError:
        raise SelectionError(f"stream {stream!r} does not exist on the server") from None
    return int(info.state.last_seq)


async def count_selected(bus: Bus, stream: str, selection: Selection) -> int | None:
    """How many messages the selection's subjects and start hold up to its last sequence (before the type, source
    and end-time checks): the total a progress line counts towards. None when the server cannot tell."""
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        num_replicas=1,
        inactive_threshold=10.0,
        filter_subject=selection.subjects[0] if len(selection.subjects) == 1 else None,
        filter_subjects=list(selection.subjects) if len(selection.subjects) > 1 else None,
    )

    async def pending(start: ConsumerConfig) -> int:
        info = await bus.js.add_consumer(stream, start)
        with contextlib.suppress(nats.errors.Error):
            await bus.js.delete_consumer(stream, info.name)
        return int(info.num_pending or 0)

    try:
        if selection.from_seq is not None:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, selection.from_seq
        elif selection.since is not None:
            config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_TIME, selection.since
        total = await pending(config)
        if selection.to_seq is not None:
            after = copy.copy(config)
            after.deliver_policy, after.opt_start_seq, after.opt_start_time = (
                DeliverPolicy.BY_START_SEQUENCE,
                selection.to_seq + 1,
                None,
            )
            total -= await pending(after)
    except nats.errors.Error:
        return None
    return max(0, total)
