"""`ballast events export`: a selection of a stream as JSONL (see `records`), in stream order.

Messages that are not CloudEvents are not written (a line must be a CloudEvent) but counted and named by sequence,
so that nothing goes missing unsaid. A stopped export says the sequence to resume from.

The stream is read by the lean reader (`lean_reader`: its own connection and consumer, a socket read's messages at a
time), which is several times faster than nats-py; where it cannot go (TLS, credentials, several servers) the bus's
ordered reader is used, from where the lean one stopped. Both give the same lines.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import BinaryIO

from ballast.bus import Bus
from ballast.replay.lean_reader import Unsupported, parse_headers, stored_time
from ballast.replay.progress import Progress, Stop
from ballast.replay.reading import lean_reader, read_selection
from ballast.replay.records import NotAnEvent, export_line, export_line_raw
from ballast.replay.selection import Selection

log = logging.getLogger(__name__)


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
    lean: bool = True,
) -> ExportResult:
    result = ExportResult(stream)
    if lean:
        try:
            await _export_lean(bus.url, stream, selection, out, result, progress, stop)
            out.flush()
            return result
        except Unsupported as exc:
            log.info("export of %s continues with the bus reader: %s", stream, exc)
        if result.stopped:
            return result
        if result.last_seq is not None:
            rest = selection.after(result.last_seq)
            if rest is None:
                return result
            selection = rest
    pending: list[bytes] = []
    write = out.write
    async with contextlib.aclosing(read_selection(bus, stream, selection, lean=False)) as messages:
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


async def _export_lean(
    url: str,
    stream: str,
    selection: Selection,
    out: BinaryIO,
    result: ExportResult,
    progress: Progress | None,
    stop: Stop | None,
) -> None:
    """The export through the lean reader: a socket read's messages become lines and are written in one go."""
    since, until = selection.since, selection.until
    reader = lean_reader(url, stream, selection)
    write = out.write
    not_events = result.not_events
    filtered = selection.filters_headers
    windowed = since is not None or until is not None
    async with reader:
        async for batch in reader:
            lines: list[bytes] = []
            append = lines.append
            handled = 0
            for sequence, subject, nanos, block, payload in batch:
                if windowed:
                    time = stored_time(nanos)
                    if until is not None and time > until:
                        break  # stored times only grow along the stream
                    if since is not None and time < since:
                        handled += 1
                        continue  # a sequence start before the time window
                handled += 1
                try:
                    if filtered:
                        headers = parse_headers(block)
                        if not selection.wants(headers):
                            continue
                        append(export_line(stream, sequence, stored_time(nanos), subject, headers, payload))
                    else:
                        append(export_line_raw(stream, sequence, nanos, subject, block, payload))
                except NotAnEvent as exc:
                    not_events.append((sequence, str(exc)))
            if lines:
                write(b"".join(lines))
                result.written += len(lines)
            if handled:
                if result.first_seq is None:
                    result.first_seq = batch[0][0]
                result.last_seq = batch[handled - 1][0]
                if progress is not None:
                    progress.advance(handled)
            if handled < len(batch):
                return
            if stop is not None and stop.requested:
                result.stopped = True
                return
