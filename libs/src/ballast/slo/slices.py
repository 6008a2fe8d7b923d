"""A budget period's down time counted in time slices, for the Timeslices and RatioTimeslices budgeting methods.

OpenSLO's Timeslices counts slices of time: a slice is good when its good ratio (the up share of its observed time)
meets the slice target, and the period's error ratio is the share of bad slices. RatioTimeslices averages the
slices' error ratios instead. Occurrences, the default, is the down share of the observed time itself.

Slices are `width` long and start at whole multiples of it since the Unix epoch (UTC), as Prometheus aligns its
steps: a rolling period moving on at every evaluation keeps cutting the same slices, so a bad minute stays one bad
minute. A slice counts when some of it was observed; the period's first and last slices may be partly outside it and
count for what was observed of them within. Unobserved time is neither good nor bad, as in Occurrences.

Attribution: a bad slice's cost (1 in Timeslices, its error ratio in RatioTimeslices) is shared among its down time,
so a cause gets the part of the cost its share of that slice's down time carries; summed over slices, a cause's
consumption reduces to Occurrences' when every slice is one whole period.

Only slices holding down time are looked at one by one, and of those only the ones a down span starts or ends in: a
slice wholly within a down span is wholly observed (down time is observed time) and wholly bad. A WebApp down for a
week at one-minute slices costs a handful of steps, not ten thousand.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ballast.slo.budgeting import Budgeting, Occurrences, RatioTimeslices, Timeslices
from ballast.slo.intervals import Interval, normalise, total

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK = timedelta(microseconds=1)  # the resolution of datetime: an interval's end is exclusive


def _index(at: datetime, width: timedelta) -> int:
    return (at - _EPOCH) // width


def _start(index: int, width: timedelta) -> datetime:
    return _EPOCH + index * width


@dataclass(frozen=True)
class SlicedPeriod:
    """A period's observed and down time cut into slices (see the module docstring)."""

    width: timedelta
    observed_slices: int  # slices with some observed time
    wholly_down: int  # slices down throughout (so observed throughout): each costs 1 under either slice method
    # index -> (observed, down) of each slice with some down time that is not wholly down, by index
    partial: dict[int, tuple[timedelta, timedelta]]

    def costs(self, budgeting: Timeslices | RatioTimeslices) -> dict[int, float]:
        """Each partial slice's cost: 1 if its good ratio misses the target (Timeslices), its error ratio
        (RatioTimeslices)."""
        if isinstance(budgeting, Timeslices):
            target = budgeting.slice_target
            return {i: 1.0 if (seen - down) / seen < target else 0.0 for i, (seen, down) in self.partial.items()}
        return {i: down / seen for i, (seen, down) in self.partial.items()}


def sliced(observed: Iterable[Interval], down: Iterable[Interval], width: timedelta) -> SlicedPeriod:
    """`observed` and `down` (within it) cut into slices of `width`."""
    if width <= timedelta(0):
        raise ValueError(f"a slice must last some time, not {width}")
    observed_spans, down_spans = normalise(observed), normalise(down)
    counted = 0
    last_counted = None
    for start, end in observed_spans:
        first, last = _index(start, width), _index(end - _TICK, width)
        if last_counted is not None and first <= last_counted:
            first = last_counted + 1  # the slice was counted for the span before
        if last >= first:
            counted += last - first + 1
            last_counted = last
    down_in: dict[int, timedelta] = {}
    wholly = 0
    for start, end in down_spans:
        first, last = _index(start, width), _index(end - _TICK, width)
        if first == last:
            down_in[first] = down_in.get(first, timedelta(0)) + (end - start)
            continue
        down_in[first] = down_in.get(first, timedelta(0)) + (_start(first + 1, width) - start)
        down_in[last] = down_in.get(last, timedelta(0)) + (end - _start(last, width))
        wholly += last - first - 1
    starts = [s for s, _ in observed_spans]
    partial: dict[int, tuple[timedelta, timedelta]] = {}
    for index in sorted(down_in):
        down_time = down_in[index]
        if down_time >= width:
            wholly += 1
            continue
        partial[index] = (_observed_within(observed_spans, starts, index, width), down_time)
    return SlicedPeriod(width, counted, wholly, partial)


def _observed_within(spans: list[Interval], starts: list[datetime], index: int, width: timedelta) -> timedelta:
    begin, end = _start(index, width), _start(index + 1, width)
    found = timedelta(0)
    position = max(0, bisect.bisect_right(starts, begin) - 1)
    while position < len(spans) and spans[position][0] < end:
        span_start, span_end = spans[position]
        found += max(timedelta(0), min(span_end, end) - max(span_start, begin))
        position += 1
    return found


class CostWeights:
    """How much of the period's error ratio each moment of its down time carries, as `budgeting` counts it: a second
    of down time in a partial slice carries that slice's cost over its down seconds, one in a wholly down slice
    1/width, and under Occurrences every second the same, 1 over the observed time."""

    def __init__(self, budgeting: Budgeting, observed: list[Interval], down: list[Interval]) -> None:
        self._seen = total(observed)
        self._period: SlicedPeriod | None = None
        self._weights: dict[int, float] = {}  # partial slice -> cost per second of its down time
        if not isinstance(budgeting, Occurrences):
            self._period = sliced(observed, down, budgeting.slice_window)
            for index, cost in self._period.costs(budgeting).items():
                self._weights[index] = cost / self._period.partial[index][1].total_seconds()
        self._indices = sorted(self._weights)

    def error_ratio(self, spans: Iterable[Interval]) -> float:
        """The part of the period's error ratio carried by `spans` (within its down time): all of it for the whole
        down time."""
        spans = normalise(spans)
        if self._period is None:
            return total(spans) / self._seen if self._seen > timedelta(0) else 0.0
        if not self._period.observed_slices:
            return 0.0
        width = self._period.width
        carried = 0.0
        for start, end in spans:
            first, last = _index(start, width), _index(end - _TICK, width)
            in_partial = timedelta(0)
            lo = bisect.bisect_left(self._indices, first)
            hi = bisect.bisect_right(self._indices, last)
            for index in self._indices[lo:hi]:
                piece = min(end, _start(index + 1, width)) - max(start, _start(index, width))
                if piece > timedelta(0):
                    carried += piece.total_seconds() * self._weights[index]
                    in_partial += piece
            carried += (end - start - in_partial) / width  # the rest lies in wholly down slices: 1 a slice
        return carried / self._period.observed_slices


def period_error_ratio(budgeting: Budgeting, observed: list[Interval], down: list[Interval]) -> float:
    """The period's error ratio as `budgeting` counts it (all that its down time carries); 0 when nothing was
    observed."""
    return CostWeights(budgeting, observed, down).error_ratio(down)


__all__ = ["CostWeights", "SlicedPeriod", "period_error_ratio", "sliced"]
