"""Cron schedules (five fields: minute hour day-of-month month day-of-week, in UTC), as pure functions.

The usual cron rules: `*`, `a`, `a-b`, `*/n`, `a-b/n` and comma lists; day-of-week 0-7 with 0 and 7 Sunday; when both
day fields are restricted, a day matching either runs (Vixie cron). Names (JAN, MON) and macros (@daily) are not
supported; the CRD's pattern lets any five fields through, and `parse` names the field it cannot read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_HORIZON_DAYS = 366 * 5  # a schedule that never fires within five years (Feb 30) is refused, not searched forever


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month was *
    any_weekday: bool  # day of week was *

    def day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                first, last = body.split("-", 1)
                start, end = int(first), int(last)
            else:
                start = end = int(body)
                if step_text:
                    end = high
        except ValueError:
            raise CronError(f"{name}: {item!r} is not a number, range or step") from None
        if step < 1 or not low <= start <= end <= high:
            raise CronError(f"{name}: {item!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse(expression: str) -> Cron:
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(f"{expression!r}: five fields wanted (minute hour day-of-month month day-of-week)")
    minutes, hours, days, months, weekdays = (
        _field(part, name, low, high) for part, (name, low, high) in zip(parts, _FIELDS, strict=True)
    )
    return Cron(
        minutes,
        hours,
        days,
        months,
        frozenset(d % 7 for d in weekdays),
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )


def next_after(cron: Cron, after: datetime) -> datetime:
    """The first time the schedule fires strictly after `after` (UTC, whole minutes)."""
    start = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    for offset in range(_HORIZON_DAYS):
        current = day + timedelta(days=offset)
        if not cron.day_matches(current):
            continue
        for hour in sorted(cron.hours):
            for minute in sorted(cron.minutes):
                moment = current.replace(hour=hour, minute=minute)
                if moment >= start:
                    return moment
    raise CronError("the schedule never fires")


def due_between(cron: Cron, since: datetime, until: datetime) -> list[datetime]:
    """The times the schedule fires in (since, until]."""
    found = []
    moment = next_after(cron, since)
    while moment <= until:
        found.append(moment)
        moment = next_after(cron, moment)
    return found
