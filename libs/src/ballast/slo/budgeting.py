"""How an SLO counts good and bad, as OpenSLO defines the budgeting methods.

Occurrences counts events (bad/total over the window). Timeslices counts slices of time: a slice is good when its
ratio meets `slice_target`, and the budget is the share of bad slices. RatioTimeslices averages the slices' ratios,
which is what Sloth's period rule does with its 5m ratios.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Occurrences(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["occurrences"] = "occurrences"


class Timeslices(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["timeslices"] = "timeslices"
    slice_window: timedelta = Field(gt=timedelta(0), description="the length of one slice, e.g. 1 minute")
    slice_target: float = Field(gt=0, le=1, description="the ratio a slice must reach to count as good")


class RatioTimeslices(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["ratio_timeslices"] = "ratio_timeslices"
    slice_window: timedelta = Field(gt=timedelta(0), description="the length of one slice, e.g. 5 minutes")


Budgeting = Annotated[Occurrences | Timeslices | RatioTimeslices, Field(discriminator="kind")]
