"""Time as sets of half-open intervals [start, end): what budget attribution is computed on.

Down time, a chaos run, a rollout and an open incident are each a set of intervals; the budget a cause consumed is
the length of the down time that intersects it. Every function returns its result normalised: sorted, without empty
or overlapping intervals.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

Interval = tuple[datetime, datetime]


def normalise(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, empty ones dropped, overlapping and touching ones merged."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def total(intervals: Iterable[Interval]) -> timedelta:
    return sum((end - start for start, end in normalise(intervals)), timedelta(0))


def clip(intervals: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    return normalise((max(s, start), min(e, end)) for s, e in intervals)


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    left, right = normalise(a), normalise(b)
    found: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start, end = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if start < end:
            found.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return found


def subtract(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """What of `a` lies outside `b`."""
    remaining: list[Interval] = []
    cuts = normalise(b)
    for start, end in normalise(a):
        cursor = start
        for cut_start, cut_end in cuts:
            if cut_end <= cursor or cut_start >= end:
                continue
            if cut_start > cursor:
                remaining.append((cursor, cut_start))
            cursor = max(cursor, cut_end)
        if cursor < end:
            remaining.append((cursor, end))
    return remaining
