"""The slo-engine's contract: burn-rate alerts per tier, error-budget transitions, and `svc.slo.status`.

Events go out once per transition on `evt.slo.<cluster>.<ns>.<event>`, the namespace being the SLO's.
Ratios are fractions (budget 0.25 = a quarter left); objectives are percentages as SLO specs write them (99.9).
"""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Annotated, Self

from pydantic import AwareDatetime, Field, model_validator

from ballast.events.contracts.common import Payload, platform_event, platform_event_type, platform_subject
from ballast.events.registry import EndpointSpec, EventSpec

AREA = "slo"

Duration = Annotated[timedelta, Field(gt=timedelta(0))]
Objective = Annotated[float, Field(gt=0, lt=100, description="the objective in percent, e.g. 99.9")]
Period = Annotated[Duration, Field(description="the SLO window the budget is counted over, e.g. 30 days")]
BudgetRemaining = Annotated[
    float,
    Field(le=1, description="fraction of the period's error budget left; negative once overspent"),
]
TimeToExhaustion = Annotated[
    timedelta | None,
    Field(
        default=None,
        ge=timedelta(0),
        description="how long the budget left lasts at the current burn; None when nothing burns or nothing is left",
    ),
]


class BurnTier(enum.StrEnum):
    PAGE = "page"  # fast burn: someone must act now
    TICKET = "ticket"  # slow burn: someone must act this week


class AlertState(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class SloEvent(enum.StrEnum):
    PAGE_BURN_FIRING = "page_burn_firing"
    PAGE_BURN_RESOLVED = "page_burn_resolved"
    TICKET_BURN_FIRING = "ticket_burn_firing"
    TICKET_BURN_RESOLVED = "ticket_burn_resolved"
    BUDGET_EXHAUSTED = "budget_exhausted"
    BUDGET_RECOVERED = "budget_recovered"


def burn_event(tier: BurnTier, state: AlertState) -> SloEvent:
    return SloEvent(f"{tier}_burn_{state}")


def slo_event_type(event: SloEvent) -> str:
    return platform_event_type(AREA, event)


def slo_subject(cluster: str, namespace: str, event: SloEvent) -> str:
    return platform_subject(AREA, cluster, namespace, event)


class BudgetCause(enum.StrEnum):
    """What was going on while budget was consumed (the consumption during several causes counts for each)."""

    CHAOS = "chaos"  # a chaos run against the SLO's WebApp or namespace was between started and completed/aborted
    ROLLOUT = "rollout"  # the WebApp was rolling out a new generation and not yet available again
    INCIDENT = "incident"  # an incident about the SLO's service was open (until mitigated or resolved)
    UNATTRIBUTED = "unattributed"  # none of the above


class CauseConsumption(Payload):
    """The error budget of the current period consumed while one cause was going on."""

    cause: BudgetCause = Field(description="what was going on")
    budget_consumed: float = Field(ge=0, description="fraction of the period's error budget consumed meanwhile")
    refs: tuple[str, ...] = Field(
        default=(),
        description="which ones: chaos run ids, rollouts as <webapp>@<generation>, incident ids",
    )
    excluded: bool = Field(
        default=False, description="kept out of the budget: the SLO excludes chaos-caused burn (budgetPolicy)"
    )


Consumption = Annotated[
    tuple[CauseConsumption, ...],
    Field(description="the period's budget consumption by cause; empty when the SLI cannot attribute"),
]


class SloRef(Payload):
    """A ServiceLevelObjective and the service it is about."""

    namespace: str = Field(min_length=1, description="the SLO's namespace")
    name: str = Field(min_length=1, description="the SLO's name")
    service: str = Field(min_length=1, description="the service the SLO is about")


class WindowBurn(Payload):
    """One condition of a tier: it fires when both windows burn faster than `factor` times the budget rate."""

    short_window: Duration = Field(description="e.g. 5 minutes; confirms the burn is still going on")
    long_window: Duration = Field(description="e.g. 1 hour; the window the factor is chosen for")
    factor: float = Field(gt=0, description="the burn-rate threshold, e.g. 14.4 (2% of a 30-day budget in 1 h)")
    short_burn_rate: float = Field(ge=0, description="error ratio over the short window / (1 - objective)")
    long_burn_rate: float = Field(ge=0, description="error ratio over the long window / (1 - objective)")


class BurnAlert(Payload):
    """A tier of an SLO's multi-window burn-rate alert started or stopped firing.

    Event id: `<namespace>/<name>:<tier>:<state>:<since>` (since in RFC 3339): the transition itself, so the same
    transition told again after a restart or failover is kept once.
    """

    cluster: str = Field(description="the cluster's name")
    slo: SloRef = Field(description="the SLO burning")
    tier: BurnTier = Field(description="which tier changed")
    state: AlertState = Field(description="what the tier does now")
    since: AwareDatetime = Field(description="when the tier started firing, or stopped")
    objective: Objective
    period: Period
    windows: tuple[WindowBurn, ...] = Field(min_length=1, description="the tier's conditions with their burn rates")
    budget_remaining: BudgetRemaining
    time_to_exhaustion: TimeToExhaustion
    consumption: Consumption = ()  # a default here, where mypy's pydantic plugin sees it


class BudgetTransition(Payload):
    """An SLO's error budget crossed the level at which its error-budget policy counts it exhausted."""

    cluster: str = Field(description="the cluster's name")
    slo: SloRef = Field(description="the SLO whose budget crossed")
    objective: Objective
    period: Period
    budget_remaining: BudgetRemaining
    threshold: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="budget left at or below which it counts as exhausted (the error-budget policy; 0 by default)",
    )
    freeze_deploys: bool = Field(description="whether the SLO's policy freezes non-hotfix deploys while exhausted")
    at: AwareDatetime = Field(description="when the budget crossed the threshold")
    consumption: Consumption = ()  # a default here, where mypy's pydantic plugin sees it


class BudgetExhausted(BudgetTransition):
    """The error budget fell to the threshold: changes to the service may be frozen, chaos against it stops.

    Event id: `<namespace>/<name>:budget_exhausted:<at>`.
    """

    @model_validator(mode="after")
    def _is_exhausted(self) -> Self:
        if self.budget_remaining > self.threshold:
            raise ValueError(f"budget_remaining {self.budget_remaining} is above the threshold {self.threshold}")
        return self


class BudgetRecovered(BudgetTransition):
    """The error budget rose back above the threshold: a freeze it caused is lifted.

    Event id: `<namespace>/<name>:budget_recovered:<at>`.
    """

    @model_validator(mode="after")
    def _is_recovered(self) -> Self:
        if self.budget_remaining <= self.threshold:
            raise ValueError(f"budget_remaining {self.budget_remaining} is not above the threshold {self.threshold}")
        return self


SLO_EVENT_TYPES: tuple[EventSpec, ...] = (
    *(
        platform_event(
            AREA,
            burn_event(tier, state),
            BurnAlert,
            f"The {tier} tier of an SLO's burn-rate alert {'started' if state is AlertState.FIRING else 'stopped'} "
            "firing.",
        )
        for tier in BurnTier
        for state in AlertState
    ),
    platform_event(AREA, SloEvent.BUDGET_EXHAUSTED, BudgetExhausted, "An SLO's error budget is exhausted."),
    platform_event(AREA, SloEvent.BUDGET_RECOVERED, BudgetRecovered, "An SLO's exhausted error budget recovered."),
)


# --- svc.slo.status ------------------------------------------------------------------------------------------------


class SloStatusRequest(Payload):
    """Which SLOs to report; every filter left out matches all."""

    namespace: str | None = Field(default=None, description="only SLOs in this namespace")
    service: str | None = Field(default=None, description="only SLOs about this service")
    name: str | None = Field(default=None, description="only the SLO of this name (needs the namespace)")
    burning_only: bool = Field(default=False, description="only SLOs with a tier firing or the budget exhausted")

    @model_validator(mode="after")
    def _name_needs_namespace(self) -> Self:
        if self.name is not None and self.namespace is None:
            raise ValueError("name needs a namespace: SLO names are unique only within one")
        return self


class WindowRate(Payload):
    """How fast the budget burns over one window."""

    window: Duration = Field(description="e.g. 1 hour")
    burn_rate: float = Field(ge=0, description="error ratio over the window / (1 - objective)")


class SloState(Payload):
    """Where an SLO stands at its last evaluation."""

    slo: SloRef = Field(description="the SLO")
    objective: Objective
    period: Period
    budget_remaining: BudgetRemaining
    burn_rates: tuple[WindowRate, ...] = Field(description="the burn rate over each alert window")
    firing: tuple[BurnTier, ...] = Field(default=(), description="the tiers firing now")
    budget_exhausted: bool = Field(description="whether the budget is at or below the policy's threshold")
    time_to_exhaustion: TimeToExhaustion
    evaluated_at: AwareDatetime = Field(description="when these figures were computed")
    consumption: Consumption = ()  # a default here, where mypy's pydantic plugin sees it


class SloStatusResponse(Payload):
    """The state of every SLO the request names."""

    slos: tuple[SloState, ...] = Field(description="the SLOs that match the request, by namespace and name")


SLO_STATUS = EndpointSpec(
    service="slo",
    name="status",
    request=SloStatusRequest,
    response=SloStatusResponse,
    description="The current budget, burn rates and firing tiers of the SLOs a request names.",
)
