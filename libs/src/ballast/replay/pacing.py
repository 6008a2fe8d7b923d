"""How fast a replay goes: at once (`instant`), as the events were stored (`original`), or a factor of that (`10x`
ten times faster, `0.5x` half as fast). JetStream itself offers only instant and original, and only to a consumer:
the pace here is kept by the publisher, from the stored times.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime


class PacingError(ValueError):
    pass


@dataclass(frozen=True)
class Pacing:
    speed: float | None  # None: instant; 1.0: original timing

    @classmethod
    def parse(cls, text: str) -> Pacing:
        text = text.strip().lower()
        if text == "instant":
            return cls(None)
        if text == "original":
            return cls(1.0)
        try:
            speed = float(text.removesuffix("x"))
        except ValueError:
            raise PacingError(f"pace {text!r} is not instant, original or a factor such as 10x or 0.5x") from None
        if not speed > 0:
            raise PacingError(f"pace {text!r} must be faster than 0x")
        return cls(speed)

    def describe(self) -> str:
        if self.speed is None:
            return "instant"
        return "original timing" if self.speed == 1.0 else f"{self.speed:g}x the original timing"

    def duration(self, first: datetime, last: datetime) -> float:
        """Seconds a replay of events stored from `first` to `last` takes at this pace (0 for instant)."""
        return 0.0 if self.speed is None else (last - first).total_seconds() / self.speed


class Pacer:
    """`await pacer.wait(stored_time)` before each publish: the first event goes at once, each later one when its
    distance from the first, divided by the speed, has passed."""

    def __init__(self, pacing: Pacing) -> None:
        self._speed = pacing.speed
        self._first: datetime | None = None
        self._start = 0.0

    async def wait(self, stored: datetime) -> None:
        if self._speed is None:
            return
        loop = asyncio.get_running_loop()
        if self._first is None:
            self._first, self._start = stored, loop.time()
            return
        due = self._start + (stored - self._first).total_seconds() / self._speed
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
