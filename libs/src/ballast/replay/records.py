"""The export format: one structured-mode CloudEvent (JSON event format) per line, with where it was stored.

Each line is a CloudEvent any CloudEvents tool reads: the `ce-*` headers as attributes (percent-decoding undone),
`traceparent`/`tracestate` as the distributed-tracing extension, `data` as the JSON body itself, or `data_base64` for
a body whose bytes would not survive a JSON round trip unchanged (not JSON, or not in compact form). Four extension
attributes say where the message was stored: `natsstream`, `natssubject`, `natssequence` and `natstime` (the
stream's own time, RFC 3339). Importing a line gives back the same subject, attributes and body bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from ballast.events.envelope import REQUIRED_HEADERS, SPEC_VERSION, _decode_value, _encode_value
from ballast.replay.lean_reader import parse_headers, stored_time, stored_time_text

STORED_AT: Final = ("natsstream", "natssubject", "natssequence", "natstime")
_TRACE_HEADERS: Final = ("traceparent", "tracestate")
_REQUIRED: Final = tuple(h[3:] for h in REQUIRED_HEADERS)
_CE_HEADERS: Final = {
    f"ce-{a}": a for a in ("specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema")
}


class NotAnEvent(ValueError):
    """A stored message without the CloudEvents headers an export line needs."""


class MalformedLine(ValueError):
    """A line that is not an exported event; `line` is its 1-based number in the file."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def export_line(
    stream: str, sequence: int, time: datetime, subject: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    """The JSONL line (newline included) of one stored message; raises `NotAnEvent` if it is not a CloudEvent."""
    event: dict[str, Any] = {}
    trace: dict[str, str] = {}
    for name, raw in headers.items():
        attribute = _CE_HEADERS.get(name)  # the bus writes these names in lower case: one lookup (hot path)
        if attribute is None:
            lower = name.lower()
            if lower[:3] != "ce-":
                if lower in _TRACE_HEADERS:
                    trace[lower] = raw
                continue
            attribute = lower[3:]
        if "%" in raw or raw[:1] == '"':
            try:
                raw = _decode_value(raw)
            except UnicodeDecodeError as exc:
                raise NotAnEvent(f"header {name} is not valid UTF-8: {exc}") from None
        event[attribute] = raw
    if not ("id" in event and "source" in event and "type" in event and "specversion" in event):
        missing = [a for a in _REQUIRED if a not in event]
        raise NotAnEvent("no " + ", ".join(f"ce-{a}" for a in missing) + " header")
    return _line(event, trace, stream, sequence, time.isoformat().replace("+00:00", "Z"), subject, body)


# What a header name means on an export line: (kind, attribute), kind 0 a CloudEvents attribute, 1 a trace header,
# 2 neither. Names repeat on every message: each is worked out once.
_RAW_NAMES: dict[bytes, tuple[int, str]] = {}


def _raw_name(raw: bytes) -> tuple[int, str]:
    try:
        name = raw.strip().decode("ascii")
    except UnicodeDecodeError:
        name = ""
    meaning: tuple[int, str]
    if not name or any(c.isspace() for c in name):
        meaning = (2, "")  # not a header nats-py would give either
    elif name in _CE_HEADERS:
        meaning = (0, _CE_HEADERS[name])
    elif name.lower()[:3] == "ce-":
        meaning = (0, name.lower()[3:])
    elif name.lower() in _TRACE_HEADERS:
        meaning = (1, name.lower())
    else:
        meaning = (2, "")
    if len(_RAW_NAMES) < 4096:
        _RAW_NAMES[raw] = meaning
    return meaning


# Whole header lines that repeat from message to message (spec version, source, type, content type, schema), with
# what they mean once decoded; attributes unique to each event are not kept.
_RAW_LINES: dict[bytes, tuple[int, str, str]] = {}
_UNIQUE: Final = frozenset(("id", "time", "subject", "traceparent", "tracestate"))


def export_line_raw(stream: str, sequence: int, nanos: int, subject: str, block: bytes, body: bytes) -> bytes:
    """`export_line` of a message whose headers are still the raw block (`Name: value\\r\\n` lines) and whose stored
    time is in ns: the same line as `export_line` gives for the headers nats-py would parse from it and the time its
    metadata would give, without making either first."""
    event: dict[str, Any] = {}
    trace: dict[str, str] = {}
    names, seen = _RAW_NAMES, _RAW_LINES
    for header in block.split(b"\r\n"):
        known = seen.get(header)
        if known is not None:
            if known[0] == 0:
                event[known[1]] = known[2]
            else:
                trace[known[1]] = known[2]
            continue
        raw_name, colon, raw = header.partition(b":")
        if not colon:
            continue
        kind, attribute = names[raw_name] if raw_name in names else _raw_name(raw_name)
        if kind == 2:
            continue
        value = raw.strip().decode("utf-8", "replace")
        if kind == 1:
            trace[attribute] = value
            continue
        if "%" in value or value[:1] == '"':
            try:
                value = _decode_value(value)
            except UnicodeDecodeError:
                # a header repeated later may replace this one: the mapping's rules decide
                return export_line(stream, sequence, stored_time(nanos), subject, parse_headers(block), body)
        event[attribute] = value
        if attribute not in _UNIQUE and len(seen) < 1024:
            seen[header] = (kind, attribute, value)
    if not ("id" in event and "source" in event and "type" in event and "specversion" in event):
        missing = [a for a in _REQUIRED if a not in event]
        raise NotAnEvent("no " + ", ".join(f"ce-{a}" for a in missing) + " header")
    return _line(event, trace, stream, sequence, stored_time_text(nanos), subject, body)


def _line(
    event: dict[str, Any],
    trace: dict[str, str],
    stream: str,
    sequence: int,
    stored_at: str,
    subject: str,
    body: bytes,
) -> bytes:
    for name, value in trace.items():
        event.setdefault(name, value)
    event["natsstream"] = stream
    event["natssubject"] = subject
    event["natssequence"] = sequence
    event["natstime"] = stored_at
    head = orjson.dumps(event)
    # The body goes in as it is when a JSON round trip gives back the same bytes (what the bus publishes: compact
    # JSON); anything else is carried as bytes, so an import stores exactly what was exported.
    try:
        same = orjson.dumps(orjson.loads(body)) == body
    except orjson.JSONDecodeError:
        same = False
    if same:
        return b"".join((head[:-1], b',"data":', body, b"}\n"))
    return b"".join((head[:-1], b',"data_base64":"', base64.b64encode(body), b'"}\n'))


@dataclass(frozen=True)
class ImportedEvent:
    """One line of an export, ready to publish: where it was stored, its headers and its body."""

    line: int
    stream: str | None
    subject: str
    sequence: int | None
    time: datetime | None  # the stream's time when exported (for pacing)
    headers: dict[str, str]
    body: bytes

    @property
    def msg_id(self) -> str:
        """The de-duplication key the bus's publisher gives the event: `<ce-source>/<ce-id>`."""
        return f"{_decode_value(self.headers['ce-source'])}/{_decode_value(self.headers['ce-id'])}"


def parse_line(number: int, text: bytes) -> ImportedEvent:
    """An export line back into subject, headers and body; raises `MalformedLine` saying what is wrong."""
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MalformedLine(number, f"not JSON ({exc})") from None
    if not isinstance(event, dict):
        raise MalformedLine(number, f"a JSON {type(event).__name__}, not an object (a CloudEvent)")
    missing = [a for a in _REQUIRED if not isinstance(event.get(a), str) or not event.get(a)]
    if missing:
        raise MalformedLine(number, "no " + ", ".join(missing) + " attribute (a CloudEvent needs each, non-empty)")
    if event["specversion"] != SPEC_VERSION:
        raise MalformedLine(number, f"specversion {event['specversion']!r} is not {SPEC_VERSION}")
    subject = event.get("natssubject")
    if not isinstance(subject, str) or not subject:
        raise MalformedLine(number, "no natssubject: the subject the event was stored on")
    sequence = event.get("natssequence")
    if sequence is not None and (not isinstance(sequence, int) or isinstance(sequence, bool)):
        raise MalformedLine(number, f"natssequence {sequence!r} is not an integer")
    stored_at: datetime | None = None
    if event.get("natstime") is not None:
        try:
            stored_at = datetime.fromisoformat(str(event["natstime"]).replace("Z", "+00:00"))
        except ValueError:
            raise MalformedLine(number, f"natstime {event['natstime']!r} is not RFC 3339") from None
    if "data" in event and "data_base64" in event:
        raise MalformedLine(number, "both data and data_base64")
    if "data_base64" in event:
        try:
            body = base64.b64decode(str(event["data_base64"]), validate=True)
        except ValueError:
            raise MalformedLine(number, "data_base64 is not base64") from None
    elif "data" in event:
        body = orjson.dumps(event["data"])
    else:
        body = b""
    headers: dict[str, str] = {}
    for name, value in event.items():
        if name in STORED_AT or name in ("data", "data_base64"):
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int):
            value = str(value)
        elif not isinstance(value, str):
            raise MalformedLine(number, f"attribute {name} is a JSON {type(value).__name__}, not a string")
        headers[name if name in _TRACE_HEADERS else f"ce-{name}"] = _encode_value(value)
    stream = event.get("natsstream")
    return ImportedEvent(
        number, stream if isinstance(stream, str) else None, subject, sequence, stored_at, headers, body
    )
