"""Timeslices and RatioTimeslices (pure): a period's down time counted in epoch-aligned slices, checked on cases
worked by hand and, over random histories, against slicing every slice one by one; the cost of a bad slice shared
among the causes of its down time adds up to the period's error ratio."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from ballast.slo import Occurrences, RatioTimeslices, Timeslices
from ballast.slo.intervals import Interval, intersect, normalise, subtract, total
from ballast.slo.slices import CostWeights, period_error_ratio, sliced

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # a whole minute since the epoch
S = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
TIMESLICES = Timeslices(slice_window=MINUTE, slice_target=0.95)
RATIO = RatioTimeslices(slice_window=MINUTE)


def test_a_slice_is_bad_when_its_good_ratio_misses_the_target() -> None:
    observed = [(T0, T0 + 10 * MINUTE)]
    down = [(T0 + 30 * S, T0 + 2 * MINUTE)]  # half of the first minute, all of the second
    assert period_error_ratio(TIMESLICES, observed, down) == pytest.approx(2 / 10)
    assert period_error_ratio(Occurrences(), observed, down) == pytest.approx(90 / 600)
    assert period_error_ratio(RATIO, observed, down) == pytest.approx((0.5 + 1) / 10)


def test_a_slice_meeting_the_target_is_good_however_much_it_was_down() -> None:
    observed = [(T0, T0 + 10 * MINUTE)]
    down = [(T0 + 10 * S, T0 + 13 * S)]  # 3 s of 60: 95 % good, the target exactly
    assert period_error_ratio(TIMESLICES, observed, down) == 0.0
    assert period_error_ratio(RATIO, observed, down) == pytest.approx(3 / 60 / 10)
    four = [(T0 + 10 * S, T0 + 14 * S)]
    assert period_error_ratio(TIMESLICES, observed, four) == pytest.approx(1 / 10)


def test_slices_are_cut_at_the_epoch_whatever_the_period_starts_at() -> None:
    # The period starts 30 s into a minute: its first slice counts for its observed half only.
    observed = [(T0 + 30 * S, T0 + 3 * MINUTE)]
    down = [(T0 + 30 * S, T0 + 45 * S)]  # half of what was observed of the first slice
    period = sliced(observed, down, MINUTE)
    assert period.observed_slices == 3
    first_minute = (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // MINUTE
    assert period.partial == {first_minute: (30 * S, 15 * S)}  # observed 30 s of it, down 15
    assert period_error_ratio(RATIO, observed, down) == pytest.approx(0.5 / 3)


def test_unobserved_slices_count_for_nothing() -> None:
    # Observed for two minutes, then not at all for an hour, then two minutes again.
    observed = [(T0, T0 + 2 * MINUTE), (T0 + 62 * MINUTE, T0 + 64 * MINUTE)]
    down = [(T0 + 62 * MINUTE, T0 + 63 * MINUTE)]
    assert sliced(observed, down, MINUTE).observed_slices == 4
    assert period_error_ratio(TIMESLICES, observed, down) == pytest.approx(1 / 4)


def test_a_long_outage_is_counted_without_walking_its_slices() -> None:
    week = timedelta(days=7)
    observed = [(T0, T0 + 30 * timedelta(days=1))]
    down = [(T0 + 20 * S, T0 + 20 * S + week)]
    period = sliced(observed, down, MINUTE)
    assert period.wholly_down == week // MINUTE - 1
    assert len(period.partial) == 2  # the first and the last minute
    assert period_error_ratio(TIMESLICES, observed, down) == pytest.approx((week // MINUTE + 1) / (30 * 24 * 60))


def test_nothing_observed_is_no_error() -> None:
    assert period_error_ratio(TIMESLICES, [], []) == 0.0
    assert CostWeights(RATIO, [], []).error_ratio([]) == 0.0


def test_a_slice_has_a_length() -> None:
    with pytest.raises(ValueError, match="must last"):
        sliced([], [], timedelta(0))


def brute_force(budgeting: Timeslices | RatioTimeslices, observed: list[Interval], down: list[Interval]) -> float:
    """Every slice from the first observed to the last, one by one."""
    width = budgeting.slice_window
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start = epoch + ((observed[0][0] - epoch) // width) * width
    counted, summed = 0, 0.0
    while start < observed[-1][1]:
        seen = total(intersect(observed, [(start, start + width)]))
        if seen > timedelta(0):
            counted += 1
            lost = total(intersect(down, [(start, start + width)]))
            if isinstance(budgeting, Timeslices):
                summed += 1.0 if (seen - lost) / seen < budgeting.slice_target else 0.0
            else:
                summed += lost / seen
        start += width
    return summed / counted if counted else 0.0


def random_history(rng: random.Random) -> tuple[list[Interval], list[Interval], list[Interval]]:
    """Observed spans, down spans within them, and a cause's spans (anywhere), at one-second resolution."""

    def spans(count: int, within: int) -> list[Interval]:
        found = []
        for _ in range(count):
            start = rng.randrange(within)
            found.append((T0 + start * S, T0 + (start + rng.randrange(1, 900)) * S))
        return normalise(found)

    observed = spans(rng.randrange(1, 5), 3 * 3600)
    down = intersect(observed, spans(rng.randrange(0, 8), 3 * 3600))
    return observed, down, spans(rng.randrange(0, 3), 3 * 3600)


@pytest.mark.parametrize("seed", range(60))
def test_slicing_agrees_with_cutting_every_slice_and_the_causes_add_up(seed: int) -> None:
    rng = random.Random(seed)
    observed, down, cause = random_history(rng)
    width = rng.choice([MINUTE, 5 * MINUTE, 7 * S])
    for budgeting in (
        Timeslices(slice_window=width, slice_target=rng.choice([0.5, 0.9, 0.99])),
        RatioTimeslices(slice_window=width),
    ):
        expected = brute_force(budgeting, observed, down)
        assert period_error_ratio(budgeting, observed, down) == pytest.approx(expected, abs=1e-12)
        weights = CostWeights(budgeting, observed, down)
        during, outside = intersect(down, cause), subtract(down, cause)
        assert weights.error_ratio(during) + weights.error_ratio(outside) == pytest.approx(expected, abs=1e-9)
        assert weights.error_ratio(down) == pytest.approx(expected, abs=1e-9)
    occurrences = CostWeights(Occurrences(), observed, down)
    assert occurrences.error_ratio(intersect(down, cause)) == pytest.approx(
        total(intersect(down, cause)) / total(observed)
    )
