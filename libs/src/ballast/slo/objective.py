"""A service level objective: what good means for a service, over which window, and what happens as it burns.

Every spec format (Sloth, OpenSLO, Ballast's own) loads into this one model; the rule generator and the math
read only this.
"""

from __future__ import annotations

import re
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ballast.slo.alerting import Alerting
from ballast.slo.budgeting import Budgeting, Occurrences
from ballast.slo.labels import Labels
from ballast.slo.policy import ErrorBudgetPolicy
from ballast.slo.sli import EventRatioSli, LatencySli, Sli
from ballast.slo.window import SloWindow

# Sloth's rule for SLO names: they end up in rule group names and the sloth_id label.
SLO_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


class ServiceLevelObjective(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str = Field(min_length=1, description="the service the SLO is about")
    name: str = Field(pattern=SLO_NAME.pattern)
    description: str = ""
    objective: float = Field(gt=0, le=100, description="percent of good, e.g. 99.9")
    window: SloWindow
    budgeting: Budgeting = Occurrences()
    sli: Sli
    alerting: Alerting = Alerting()
    min_request_rate: float | None = Field(
        default=None, gt=0, description="requests/s below which burn alerts stay silent (low-traffic false pages)"
    )
    policy: ErrorBudgetPolicy = ErrorBudgetPolicy()
    labels: Labels = Field(default_factory=dict, description="on every rule generated for the SLO")

    @model_validator(mode="after")
    def _min_rate_needs_a_total(self) -> Self:
        if self.min_request_rate is not None and not isinstance(self.sli, EventRatioSli | LatencySli):
            raise ValueError(f"min_request_rate needs a total request rate, which a {self.sli.kind} SLI does not have")
        return self

    @property
    def id(self) -> str:
        return f"{self.service}-{self.name}"

    @property
    def objective_ratio(self) -> float:
        return self.objective / 100

    @property
    def error_budget(self) -> float:
        """The allowed error ratio, computed from the percentage as Sloth does: 99.9 -> 0.0009999999999999432."""
        return (100 - self.objective) / 100
