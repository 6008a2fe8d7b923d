"""Prometheus durations (`5m`, `1h30m`, `4w`): parsed from specs and printed the way Prometheus prints them.

Prometheus prints the largest units that divide the duration, weeks and years only when they divide it exactly:
30 days print as `30d`, 28 days as `4w`, 7 days as `1w`. Sloth names its period recording rule with that text
(`slo:sli_error:ratio_rate4w`), so the generator must print durations the same way.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS_MS = {
    "y": 365 * 24 * 3600 * 1000,
    "w": 7 * 24 * 3600 * 1000,
    "d": 24 * 3600 * 1000,
    "h": 3600 * 1000,
    "m": 60 * 1000,
    "s": 1000,
    "ms": 1,
}
_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")


def parse_duration(text: str) -> timedelta:
    """`1h30m` -> 90 minutes; raises ValueError naming the accepted form for anything else."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a Prometheus duration (e.g. 5m, 1h30m, 28d, 4w)")
    amounts = match.groups()[1::2]
    ms = sum(int(amount) * unit for amount, unit in zip(amounts, _UNITS_MS.values(), strict=True) if amount)
    if ms == 0:
        raise ValueError(f"{text!r} is zero; a window must have a length")
    return timedelta(milliseconds=ms)


def format_duration(duration: timedelta) -> str:
    ms = round(duration.total_seconds() * 1000)
    if ms <= 0:
        raise ValueError(f"{duration} is not a positive duration")
    text = ""
    for unit, size in _UNITS_MS.items():
        if unit in ("y", "w") and ms % size:
            continue  # `90d` reads better than `12w6d`
        count, ms = divmod(ms, size)
        if count:
            text += f"{count}{unit}"
    return text
