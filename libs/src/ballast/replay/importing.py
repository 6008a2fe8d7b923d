"""`ballast events import`: an export file published back, never half of it silently.

Two passes. The first reads the whole file and checks every line: a CloudEvent of this export format, a type the
registry knows with a payload its schema accepts, a subject some stream of the catalogue holds. Malformed lines are
reported with their numbers; with `on_error=stop` (the default) nothing is published when there is one. The second
pass publishes, each event with the bus's de-duplication key `<ce-source>/<ce-id>`: an import run again, or resumed
from a line, does not store an event twice within the streams' duplicate window. A stopped or failed import says
the line to resume from (`--from-line`): every line before it is stored.

Into a new environment: the streams the file's events go to (and DEAD_LETTERS, for skipped lines) are created as the
catalogue declares them when the server lacks them; streams that exist are left as they are.

Skipped lines are not lost: `dead_letter` puts each in `DEAD_LETTERS` on `dlq.events-import`, the line as it was
with `Ballast-Dlq-Reason: <file>:<line>: <why>`, where `ballast events dlq list` shows them (once per file, line and
content: an import run again stores no second copy).
"""

from __future__ import annotations

import enum
import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nats.js.errors import NotFoundError

from ballast.bus import Bus
from ballast.bus.consumer import DLQ_CONSUMER, DLQ_REASON
from ballast.bus.publisher import MSG_ID_HEADER
from ballast.events.catalogue import DEAD_LETTERS, Catalogue, dead_letter_subject
from ballast.events.envelope import EventDecodeError, decode
from ballast.replay.files import open_for_reading
from ballast.replay.progress import Progress, Stop
from ballast.replay.publishing import RawPublisher, Tally, publish_in_order
from ballast.replay.records import ImportedEvent, MalformedLine, parse_line
from ballast.replay.selection import covers

IMPORT_DEAD_LETTERS = "events-import"  # the `consumer` their dead letters name: dlq.events-import


class OnError(enum.StrEnum):
    STOP = "stop"  # publish nothing when any line is malformed
    SKIP = "skip"  # publish the good lines, report the others


@dataclass
class ImportPlan:
    path: Path
    lines: int = 0  # lines read (blank ones included)
    events: int = 0  # good lines from `from_line` on
    first_line: int | None = None
    last_line: int | None = None
    malformed: list[MalformedLine] = field(default_factory=list)
    streams: Counter[str] = field(default_factory=Counter)

    @property
    def publishable(self) -> bool:
        return self.events > 0


@dataclass
class ImportResult:
    plan: ImportPlan
    tally: Tally = field(default_factory=Tally)
    published_through: int | None = None  # the last line whose event is stored
    stopped: bool = False
    error: str | None = None

    @property
    def resume_from(self) -> int | None:
        if self.published_through is None:
            return self.plan.first_line
        return self.published_through + 1


def _lines(path: Path, from_line: int) -> Iterator[tuple[int, bytes]]:
    with open_for_reading(path) as file:
        for number, text in enumerate(file, start=1):
            if number >= from_line and text.strip():
                yield number, text


def _stream_for(catalogue: Catalogue, subject: str) -> str | None:
    for spec in catalogue.streams:
        if any(covers(pattern, subject) for pattern in spec.subjects):
            return spec.name
    return None


def check(path: Path, catalogue: Catalogue, *, from_line: int = 1) -> ImportPlan:
    """The first pass: every line checked, nothing published."""
    plan = ImportPlan(path)
    with open_for_reading(path) as file:
        plan.lines = sum(1 for _ in file)
    for number, text in _lines(path, from_line):
        try:
            event = parse_line(number, text)
            stream = _stream_for(catalogue, event.subject)
            if stream is None:
                raise MalformedLine(number, f"no stream of the catalogue holds subject {event.subject}")
            try:
                decode(event.headers, event.body, catalogue.registry)
            except EventDecodeError as exc:
                raise MalformedLine(number, f"not a valid event: {exc}") from None
        except MalformedLine as exc:
            plan.malformed.append(exc)
            continue
        plan.events += 1
        plan.streams[stream] += 1
        if plan.first_line is None:
            plan.first_line = number
        plan.last_line = number
    return plan


def good_lines(plan: ImportPlan, from_line: int) -> Iterator[ImportedEvent]:
    bad = {m.line for m in plan.malformed}
    for number, text in _lines(plan.path, from_line):
        if number not in bad:
            yield parse_line(number, text)


async def create_missing_streams(bus: Bus, plan: ImportPlan, catalogue: Catalogue) -> list[str]:
    """The streams this import writes to that the server lacks, created from the catalogue; their names."""
    wanted = set(plan.streams) | ({DEAD_LETTERS.name} if plan.malformed else set())
    created = []
    for spec in catalogue.streams:
        if spec.name not in wanted:
            continue
        try:
            await bus.js.stream_info(spec.name)
        except NotFoundError:
            await bus.ensure_streams([spec])
            created.append(spec.name)
    return created


async def publish(
    bus: Bus,
    plan: ImportPlan,
    *,
    from_line: int = 1,
    progress: Progress | None = None,
    stop: Stop | None = None,
) -> ImportResult:
    """The second pass: the good lines published in order (call only after `check` and the on-error decision)."""
    result = ImportResult(plan)

    async def messages() -> AsyncIterator[tuple[int, str, dict[str, str], bytes]]:
        for event in good_lines(plan, from_line):
            yield event.line, event.subject, {**event.headers, MSG_ID_HEADER: event.msg_id}, event.body

    published = await publish_in_order(RawPublisher(bus.js), messages(), progress=progress, stop=stop)
    result.tally, result.stopped, result.error = published.tally, published.stopped, published.error
    result.published_through = published.through
    return result


async def dead_letter(bus: Bus, plan: ImportPlan) -> int:
    """Puts each malformed line of the plan in DEAD_LETTERS with its reason; returns how many were stored (lines
    dead-lettered before, by an earlier run, are not stored again)."""
    bad = {m.line: m for m in plan.malformed}
    stored = 0
    if not bad:
        return 0
    with open_for_reading(plan.path) as file:
        for number, text in enumerate(file, start=1):
            problem = bad.get(number)
            if problem is None:
                continue
            digest = hashlib.sha256(text).hexdigest()[:16]
            headers = {
                DLQ_REASON: f"{plan.path}:{problem}".replace("\r", " ").replace("\n", " "),
                DLQ_CONSUMER: IMPORT_DEAD_LETTERS,
                MSG_ID_HEADER: f"import:{plan.path.name}:{number}:{digest}",
            }
            ack = await bus.js.publish(
                dead_letter_subject(IMPORT_DEAD_LETTERS), text, headers=headers, stream=DEAD_LETTERS.name
            )
            stored += 0 if ack.duplicate else 1
    return stored
