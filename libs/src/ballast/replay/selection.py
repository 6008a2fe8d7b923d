"""Which stored events a command works on: the stream, subject filters, event types, sources, a time window and a
sequence range; and the checks that turn an unknown stream or subject into an error that names it.

Subjects filter on the server (the reader's consumer); types and sources are matched here on the `ce-type` and
`ce-source` headers (glob patterns, `io.k8s.deployment.*`), before anything is decoded. Times are absolute (RFC 3339,
UTC when no zone is given) or relative to now (`2h`, `30m`, `1d12h`: that long ago).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import translate
from typing import Final

from ballast.events.catalogue import Catalogue, StreamSpec
from ballast.slo.durations import parse_duration

SHADOW_PREFIX: Final = "SHADOW_"  # streams a shadow run makes; not in the catalogue, still readable


class SelectionError(ValueError):
    """A selection that cannot be read: an unknown stream or subject, a malformed time, an empty range."""


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """`2026-11-30T12:00:00Z` (a zone-less time is UTC) or `2h` (two hours before `now`)."""
    text = text.strip()
    if re.fullmatch(r"(\d+(y|w|d|h|m|s|ms))+", text):
        return (now or datetime.now(UTC)) - parse_duration(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise SelectionError(
            f"{text!r} is neither a time (2026-11-30T12:00:00Z) nor a duration before now (2h, 30m, 1d)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def covers(pattern: str, subject_filter: str) -> bool:
    """Whether every subject `subject_filter` matches is matched by `pattern` (both may hold `*` and `>`)."""
    wanted, have = subject_filter.split("."), pattern.split(".")
    for index, token in enumerate(have):
        if token == ">":
            return len(wanted) > index
        if index >= len(wanted):
            return False
        if wanted[index] == ">" or (token != "*" and (wanted[index] == "*" or token != wanted[index])):
            return False
    return len(have) == len(wanted)


def overlaps(pattern: str, subject_filter: str) -> bool:
    """Whether some subject matches both `pattern` and `subject_filter` (a stream holding `pattern` has messages the
    filter can select: `evt.*.prod.>` overlaps `evt.slo.>` without either covering the other)."""
    left, right = pattern.split("."), subject_filter.split(".")
    for index, (mine, theirs) in enumerate(zip(left, right, strict=False)):
        if mine == ">" or theirs == ">":
            return True  # each side still has this token to give: `>` takes one or more
        if mine != theirs and "*" not in (mine, theirs):
            return False
        if index == min(len(left), len(right)) - 1:
            break
    return len(left) == len(right)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, found in headers.items():  # NATS keeps the sender's case; CloudEvents names are case-insensitive
        if key.lower() == name:
            return found
    return None


def _globs(patterns: Sequence[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(translate(p) for p in patterns)) if patterns else None


@dataclass(frozen=True)
class Selection:
    subjects: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    from_seq: int | None = None
    to_seq: int | None = None
    _type_glob: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _source_glob: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.from_seq is not None and self.from_seq < 1:
            raise SelectionError(f"--from-seq must be 1 or more, not {self.from_seq}")
        if self.from_seq is not None and self.to_seq is not None and self.to_seq < self.from_seq:
            raise SelectionError(f"--to-seq {self.to_seq} is before --from-seq {self.from_seq}")
        if self.since is not None and self.until is not None and self.until < self.since:
            raise SelectionError(f"--until {self.until.isoformat()} is before --since {self.since.isoformat()}")
        object.__setattr__(self, "_type_glob", _globs(self.types))
        object.__setattr__(self, "_source_glob", _globs(self.sources))

    @property
    def filters_headers(self) -> bool:
        return self._type_glob is not None or self._source_glob is not None

    def wants(self, headers: Mapping[str, str]) -> bool:
        """Whether a message's type and source are selected (subjects and times are the reader's job)."""
        if self._type_glob is not None and not self._type_glob.fullmatch(_header(headers, "ce-type") or ""):
            return False
        return self._source_glob is None or self._source_glob.fullmatch(_header(headers, "ce-source") or "") is not None

    def after(self, sequence: int) -> Selection | None:
        """What is left of the selection once a reader has handed out everything up to `sequence` (a reader taking
        over from another); None when that was its last. Stored times only grow along a stream, so the start time
        is behind it."""
        if self.to_seq is not None and sequence >= self.to_seq:
            return None
        return replace(self, from_seq=sequence + 1, since=None)

    def describe(self) -> str:
        parts = []
        if self.subjects:
            parts.append("subjects " + ", ".join(self.subjects))
        if self.types:
            parts.append("types " + ", ".join(self.types))
        if self.sources:
            parts.append("sources " + ", ".join(self.sources))
        if self.since or self.until:
            since = self.since.isoformat() if self.since else "the start"
            parts.append(f"from {since} to {self.until.isoformat() if self.until else 'the end'}")
        if self.from_seq or self.to_seq:
            parts.append(f"sequences {self.from_seq or 1}..{self.to_seq or 'end'}")
        return "; ".join(parts) or "everything"


def stream_of(catalogue: Catalogue, stream: str | None, subjects: Sequence[str]) -> str:
    """The stream to read: `stream` (checked against the catalogue and the subjects: each must select something it
    can hold), or the one stream of the catalogue that holds what the filters select — one whose subjects cover every
    filter, else the only one they overlap (`evt.*.prod.>` reads PLATFORM_EVENTS' share only with --stream: K8S_EVENTS
    holds some too). Raises `SelectionError` naming what is unknown."""
    known = {spec.name: spec for spec in catalogue.streams}
    if stream is not None:
        spec = known.get(stream)
        if spec is None and not stream.startswith(SHADOW_PREFIX):
            raise SelectionError(
                f"unknown stream {stream!r}: the catalogue has {', '.join(known)} (and shadow runs make SHADOW_<run>)"
            )
        if spec is not None:
            outside = [s for s in subjects if not any(overlaps(p, s) for p in spec.subjects)]
            if outside:
                raise SelectionError(
                    f"stream {stream} does not hold subject(s) {', '.join(outside)} "
                    f"(it holds {', '.join(spec.subjects)})"
                )
        return stream
    if not subjects:
        raise SelectionError(f"name a --stream ({', '.join(known)}) or a --subject to find it by")
    found = {s: _stream_covering(catalogue.streams, s) for s in subjects}
    for subject_filter, spec in found.items():
        if spec is None:
            overlapping = [o.name for o in catalogue.streams if any(overlaps(p, subject_filter) for p in o.subjects)]
            if len(overlapping) > 1:
                raise SelectionError(
                    f"subject {subject_filter} selects from streams {', '.join(overlapping)}: name one with --stream"
                )
            if overlapping:
                found[subject_filter] = known[overlapping[0]]
    unknown = [s for s, spec in found.items() if spec is None]
    if unknown:
        raise SelectionError(f"no stream of the catalogue holds subject(s) {', '.join(unknown)}")
    names = sorted({spec.name for spec in found.values() if spec is not None})
    if len(names) > 1:
        raise SelectionError(f"the subjects span streams {', '.join(names)}: select from one stream per run")
    return names[0]


def _stream_covering(streams: Sequence[StreamSpec], subject: str) -> StreamSpec | None:
    for spec in streams:
        if any(covers(p, subject) for p in spec.subjects):
            return spec
    return None
