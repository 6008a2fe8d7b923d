"""Cron schedules: parsing with errors naming the field, and the next firing times."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from ballast.chaos_runner.schedule import CronError, due_between, next_after, parse


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("* * * * *", "2026-03-01T10:00:30", "2026-03-01T10:01:00"),
        ("*/15 * * * *", "2026-03-01T10:01:00", "2026-03-01T10:15:00"),
        ("0 9-17 * * 1-5", "2026-03-06T17:00:00", "2026-03-09T09:00:00"),  # Friday evening -> Monday
        ("30 2 1 * *", "2026-01-15T00:00:00", "2026-02-01T02:30:00"),
        ("0 0 * * 0", "2026-03-02T00:00:00", "2026-03-08T00:00:00"),  # Sunday as 0
        ("0 0 * * 7", "2026-03-02T00:00:00", "2026-03-08T00:00:00"),  # and as 7
        ("0 0 13 * 5", "2026-03-01T00:00:00", "2026-03-06T00:00:00"),  # the 13th or a Friday, whichever first
        ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("5,10 0 * * *", "2026-03-01T00:05:00", "2026-03-01T00:10:00"),
    ],
)
def test_the_next_firing(cron: str, after: str, expected: str) -> None:
    assert next_after(parse(cron), at(after)) == at(expected)


def test_due_between_lists_every_firing_in_the_window() -> None:
    assert due_between(parse("*/20 * * * *"), at("2026-03-01T10:00:00"), at("2026-03-01T11:00:00")) == [
        at("2026-03-01T10:20:00"),
        at("2026-03-01T10:40:00"),
        at("2026-03-01T11:00:00"),
    ]


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("* * * *", "five fields wanted"),
        ("60 * * * *", "minute: '60' is outside 0-59"),
        ("* 24 * * *", "hour: '24' is outside 0-23"),
        ("* * 0 * *", "day of month: '0' is outside 1-31"),
        ("* * * JAN *", "month: 'JAN' is not a number"),
        ("*/0 * * * *", "minute: '*/0' is outside"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_a_bad_schedule_names_the_field(cron: str, message: str) -> None:
    with pytest.raises(CronError, match=re.escape(message)):
        next_after(parse(cron), at("2026-01-01T00:00:00"))
