"""`ballast events export`: a selection of a stream as JSONL (see `records`), in stream order.

Messages that are not CloudEvents are not written (a line must be a CloudEvent) but counted and named by sequence,
so that nothing goes missing unsaid. A stopped export says the sequence to resume from.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import BinaryIO

from ballast.bus import Bus
from ballast.replay.progress import Progress, Stop
from ballast.replay.reading import read_selection
from ballast.replay.records import NotAnEvent, export_line
from ballast.replay.selection import Selection


@dataclass
class ExportResult:
    stream: str
    written: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    not_events: list[tuple[int, str]] = field(default_factory=list)  # (sequence, why)
    stopped: bool = False

    @property
    def resume_from(self) -> int | None:
        return None if self.last_seq is None else self.last_seq + 1


async def export(
    bus: Bus,
    stream: str,
    selection: Selection,
    out: BinaryIO,
    *,
    progress: Progress | None = None,
    stop: Stop | None = None,
    buffer_lines: int = 512,
) -> ExportResult:
    result = ExportResult(stream)
    pending: list[bytes] = []
    write = out.write
    async with contextlib.aclosing(read_selection(bus, stream, selection)) as messages:
        async for stored in messages:
            try:
                line = export_line(stream, stored.sequence, stored.time, stored.subject, stored.headers, stored.data)
            except NotAnEvent as exc:
                result.not_events.append((stored.sequence, str(exc)))
            else:
                pending.append(line)
                if len(pending) >= buffer_lines:
                    write(b"".join(pending))
                    pending.clear()
                result.written += 1
            if result.first_seq is None:
                result.first_seq = stored.sequence
            result.last_seq = stored.sequence
            if progress is not None:
                progress.advance()
            if stop is not None and stop.requested:
                result.stopped = True
                break
    if pending:
        write(b"".join(pending))
    out.flush()
    return result
