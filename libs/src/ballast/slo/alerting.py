"""Burn-rate alerting per tier: page (fast burn, act now) and ticket (slow burn, act this week).

Sloth gives both tiers one alert name; a tier may carry its own name here, so one service can have SLOs whose
alerts route apart. A tier's labels and annotations are laid over the shared ones.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ballast.events.contracts.slo import BurnTier
from ballast.slo.labels import Labels


class AlertTier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    name: str | None = Field(default=None, min_length=1, description="overrides the shared alert name")
    labels: Labels = Field(default_factory=dict)
    annotations: Labels = Field(default_factory=dict)


class Alerting(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, min_length=1, description="the alert name both tiers share")
    labels: Labels = Field(default_factory=dict)
    annotations: Labels = Field(default_factory=dict)
    page: AlertTier = AlertTier(enabled=False)
    ticket: AlertTier = AlertTier(enabled=False)

    @model_validator(mode="after")
    def _enabled_tiers_are_named(self) -> Self:
        for tier in BurnTier:
            if self.tier(tier).enabled and self.tier(tier).name is None and self.name is None:
                raise ValueError(f"the {tier} tier is enabled but has no alert name")
        return self

    def tier(self, tier: BurnTier) -> AlertTier:
        return self.page if tier is BurnTier.PAGE else self.ticket

    def alert_name(self, tier: BurnTier) -> str:
        name = self.tier(tier).name or self.name
        assert name is not None  # checked by the validator for enabled tiers
        return name

    def alert_labels(self, tier: BurnTier) -> dict[str, str]:
        return self.labels | self.tier(tier).labels

    def alert_annotations(self, tier: BurnTier) -> dict[str, str]:
        return self.annotations | self.tier(tier).annotations
