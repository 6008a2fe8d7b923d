"""The budget period an instant falls in: the last `length` for a rolling window, the current calendar period for a
calendar window (this month, this week, in the window's time zone).

Calendar periods are computed on wall-clock time and then placed in the zone, so a day is midnight to midnight even
across a daylight-saving change (23 or 25 hours long). Periods of several units repeat from the window's `start`;
without one, weeks start on Mondays, months on the 1st, quarters in January, April, July and October, and periods of
several units count from 1970. Month-based periods (months, quarters, years) always start at midnight on the 1st:
`start` only picks the month they are counted from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ballast.slo.window import CalendarUnit, CalendarWindow, RollingWindow, SloWindow

_FIXED = {
    CalendarUnit.MINUTE: timedelta(minutes=1),
    CalendarUnit.HOUR: timedelta(hours=1),
    CalendarUnit.DAY: timedelta(days=1),
    CalendarUnit.WEEK: timedelta(weeks=1),
}
_MONTHS = {CalendarUnit.MONTH: 1, CalendarUnit.QUARTER: 3, CalendarUnit.YEAR: 12}
# A Monday at midnight: fixed-length periods without a start count from here, so weeks start on Mondays.
_EPOCH = datetime(1970, 1, 5)


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        # In UTC: between two times of one zone Python subtracts wall clocks, which misses a DST change.
        return self.end.astimezone(UTC) - self.start.astimezone(UTC)


def period_at(window: SloWindow, at: datetime) -> Period:
    """The period `at` (timezone-aware) falls in."""
    if at.tzinfo is None:
        raise ValueError(f"{at} has no time zone: periods are placed in the window's zone")
    if isinstance(window, RollingWindow):
        return Period(at - window.length, at)
    return _calendar_period(window, at)


def _calendar_period(window: CalendarWindow, at: datetime) -> Period:
    zone = ZoneInfo(window.time_zone)
    wall = at.astimezone(zone).replace(tzinfo=None)
    anchor = window.start.astimezone(zone).replace(tzinfo=None) if window.start is not None else None
    if window.unit in _FIXED:
        step = _FIXED[window.unit] * window.count
        origin = anchor if anchor is not None else _EPOCH
        start = origin + step * ((wall - origin) // step)
        end = start + step
    else:
        months = _MONTHS[window.unit] * window.count
        origin_month = anchor.year * 12 + anchor.month - 1 if anchor is not None else 1970 * 12
        index = wall.year * 12 + wall.month - 1
        first = origin_month + months * ((index - origin_month) // months)
        start = datetime(first // 12, first % 12 + 1, 1)
        end = datetime((first + months) // 12, (first + months) % 12 + 1, 1)
    return Period(start.replace(tzinfo=zone), end.replace(tzinfo=zone))


# A calendar period's length as alert-window tables and Prometheus rules name it: its units' usual length (a month is
# 30 days, as Sloth's default period). Rules need one fixed length, and an SLO read from Prometheus fires with their
# factors (Measurement.alert_period); its budget is over each period's own length.
_NOMINAL_DAYS = {CalendarUnit.MONTH: 30, CalendarUnit.QUARTER: 90, CalendarUnit.YEAR: 365}


def nominal_length(window: SloWindow) -> timedelta:
    """A rolling window's length; a calendar window's usual one (1 month: 30 days, 1 week: 7 days)."""
    if isinstance(window, RollingWindow):
        return window.length
    if window.unit in _FIXED:
        return _FIXED[window.unit] * window.count
    return timedelta(days=_NOMINAL_DAYS[window.unit] * window.count)
