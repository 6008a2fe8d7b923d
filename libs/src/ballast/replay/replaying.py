"""`ballast events replay`: recorded events published again, from a stream selection or an export file, into a
shadow stream (`SHADOW_<run>`, subjects `shadow.<run>.<original subject>`, the default) or into the live subjects
the services consume.

Each replayed message keeps its CloudEvents id and source, so a consumer that keys its work on them (as the
platform's handlers do) does nothing twice; it carries `ce-replayrun: <run>` so anyone can tell it is a replay; and
its `Nats-Msg-Id` is the original key plus `:replay:<run>`, so the stream stores it (the original key alone would be
dropped as a duplicate inside the duplicate window) and a replay run again under the same run id stores nothing twice.
Pacing comes from the stored times (see `pacing`).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ballast.bus import Bus, StoredEvent
from ballast.bus.publisher import MSG_ID_HEADER
from ballast.events.catalogue import Catalogue
from ballast.events.envelope import _decode_value
from ballast.replay.pacing import Pacer, Pacing
from ballast.replay.progress import Progress, Stop
from ballast.replay.publishing import RawPublisher, Tally, publish_in_order
from ballast.replay.records import ImportedEvent
from ballast.replay.selection import SelectionError, covers
from ballast.replay.shadow import ensure_stream, shadow_subject

REPLAY_RUN = "ce-replayrun"
# Headers JetStream sets on stored messages, or that would change how the target stream takes the message.
_NOT_CARRIED = {
    "nats-msg-id",
    "nats-stream-source",
    "nats-expected-stream",
    "nats-expected-last-sequence",
    "nats-expected-last-subject-sequence",
    "nats-expected-last-msg-id",
    "nats-ttl",
}


class Into(enum.StrEnum):
    SHADOW = "shadow"  # SHADOW_<run>, under shadow.<run>.
    LIVE = "live"  # the original subjects: the services see the events again


@dataclass(frozen=True)
class Recorded:
    """One message to replay: where it came from (a sequence or a line), its subject, headers, body, stored time."""

    position: int
    subject: str
    headers: Mapping[str, str]
    body: bytes
    stored: datetime


async def from_stream(messages: AsyncIterator[StoredEvent], skipped: list[int]) -> AsyncGenerator[Recorded, None]:
    """Stored messages as replay items; those that are not CloudEvents (no ce-id/ce-source) go to `skipped`."""
    async for stored in messages:
        headers = {k.lower(): v for k, v in stored.headers.items()}
        if "ce-id" not in headers or "ce-source" not in headers:
            skipped.append(stored.sequence)
            continue
        yield Recorded(stored.sequence, stored.subject, stored.headers, stored.data, stored.time)


async def from_file(events: Iterable[ImportedEvent]) -> AsyncGenerator[Recorded, None]:
    for event in events:
        if event.time is None:
            raise SelectionError(f"line {event.line}: no natstime, which replay paces by")
        yield Recorded(event.line, event.subject, event.headers, event.body, event.time)


def replay_headers(headers: Mapping[str, str], run: str) -> dict[str, str]:
    carried = {k: v for k, v in headers.items() if k.lower() not in _NOT_CARRIED}
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = f"{_decode_value(lower['ce-source'])}/{_decode_value(lower['ce-id'])}"
    carried[REPLAY_RUN] = run
    carried[MSG_ID_HEADER] = f"{msg_id}:replay:{run}"
    return carried


def target_subject(catalogue: Catalogue, into: Into, run: str, subject: str) -> str:
    if into is Into.SHADOW:
        return shadow_subject(run, subject)
    if not any(covers(p, subject) for spec in catalogue.streams for p in spec.subjects):
        raise SelectionError(f"no stream of the catalogue holds subject {subject}: it cannot be replayed live")
    return subject


@dataclass
class ReplayPlan:
    count: int = 0
    first: Recorded | None = None
    last: Recorded | None = None
    subjects: dict[str, int] = field(default_factory=dict)


async def plan(items: AsyncIterator[Recorded]) -> ReplayPlan:
    """What a replay would publish (the dry run): counts by subject, the first and last message."""
    found = ReplayPlan()
    async for item in items:
        found.count += 1
        found.first = found.first or item
        found.last = item
        found.subjects[item.subject] = found.subjects.get(item.subject, 0) + 1
    return found


@dataclass
class ReplayResult:
    run: str
    target: str
    tally: Tally = field(default_factory=Tally)
    replayed_through: int | None = None  # the last position (sequence or line) stored in the target
    stopped: bool = False
    error: str | None = None


async def replay(
    bus: Bus,
    items: AsyncIterator[Recorded],
    *,
    run: str,
    into: Into,
    pacing: Pacing,
    progress: Progress | None = None,
    stop: Stop | None = None,
) -> ReplayResult:
    target = await ensure_stream(bus.js, run) if into is Into.SHADOW else "the live subjects"
    result = ReplayResult(run, target)
    # Paced replays wait for each acknowledgement (a window of one) so that a message is stored when it is due.
    publisher = RawPublisher(bus.js, window=1 if pacing.speed is not None else 2000)
    pacer = Pacer(pacing)

    async def messages() -> AsyncIterator[tuple[int, str, dict[str, str], bytes]]:
        async for item in items:
            subject = target_subject(bus.catalogue, into, run, item.subject)
            await pacer.wait(item.stored)
            yield item.position, subject, replay_headers(item.headers, run), item.body

    published = await publish_in_order(publisher, messages(), progress=progress, stop=stop)
    result.tally, result.stopped, result.error = published.tally, published.stopped, published.error
    result.replayed_through = published.through
    return result
