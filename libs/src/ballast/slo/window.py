"""The period an SLO's error budget is counted over: a rolling window or a calendar period.

A rolling window always looks back the same length (the last 30 days); a calendar window restarts its budget at
each period's start (every month, every week), which is how contracts and reviews count. Sloth and Pyrra only have
rolling windows.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RollingWindow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["rolling"] = "rolling"
    length: timedelta = Field(gt=timedelta(0), description="how far back the budget looks, e.g. 30 days")


class CalendarUnit(enum.StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


class CalendarWindow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["calendar"] = "calendar"
    count: int = Field(default=1, ge=1, description="periods per window: 1 month, 2 weeks")
    unit: CalendarUnit
    start: datetime | None = Field(default=None, description="a period boundary; periods repeat from it")
    time_zone: str = Field(default="UTC", description="IANA zone the periods start in")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"{zone!r} is not an IANA time zone") from error
        return zone


SloWindow = Annotated[RollingWindow | CalendarWindow, Field(discriminator="kind")]
