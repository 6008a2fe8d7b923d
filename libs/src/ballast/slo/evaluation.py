"""The live evaluator's core: from an SLO's error ratios per window to its budget, burning tiers and the transitions
since its previous state.

Pure: the caller measures (from Prometheus, or from cluster facts), keeps the state and publishes the transitions.
A tier fires while either of its conditions holds, a condition holding when both its short and its long window
burn faster than its factor (Sloth's comparison, `ratio > factor x budget`, so the engine and the generated rules
agree at the boundary). Factors scale with the period's actual length (a calendar month has 28 to 31 days), unless
the measurement follows alert rules whose factors are fixed (`Measurement.alert_period`: a calendar SLO read from
Prometheus, whose rules have its usual length's table), so that the engine's tiers fire when those alerts do.

A transition is dated by the measurement it was seen in, and its event id is made of the SLO, what changed and that
date: evaluating the same measurement again (a redelivery, a restart that replays it) finds no transition, and a
transition told twice carries one id, which the bus keeps once. A measurement older than the state is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from ballast.events.contracts.slo import (
    AlertState,
    BudgetCause,
    BudgetExhausted,
    BudgetRecovered,
    BurnAlert,
    BurnTier,
    CauseConsumption,
    SloEvent,
    SloRef,
    SloState,
    WindowBurn,
    WindowRate,
    burn_event,
)
from ballast.events.trusted import trusted
from ballast.slo.alert_windows import AlertWindows, Threshold
from ballast.slo.budget import require_budget, time_to_exhaustion
from ballast.slo.durations import format_duration
from ballast.slo.objective import ServiceLevelObjective
from ballast.slo.periods import period_at
from ballast.slo.window import RollingWindow

ErrorRatio = float
Window = Annotated[timedelta, Field(gt=timedelta(0))]
BurnRate = Annotated[float, Field(ge=0)]
BURN_TIERS = tuple(BurnTier)  # iterating the enum each time costs more than the loop it drives


class Counts(BaseModel):
    """Events over a window: bad of total."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bad: float = Field(ge=0)
    total: float = Field(ge=0)

    @model_validator(mode="after")
    def _bad_within_total(self) -> Self:
        if self.bad > self.total:
            raise ValueError(f"bad {self.bad} exceeds total {self.total}")
        return self

    @property
    def error_ratio(self) -> ErrorRatio:
        """bad / total; a window without events has no errors."""
        return self.bad / self.total if self.total > 0 else 0.0


class CauseSpan(BaseModel):
    """A cause (a chaos run, a rollout, an incident) that bears on an SLO, and the time it covers so far."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cause: BudgetCause
    ref: str = Field(min_length=1, description="which one: a chaos run id, <webapp>@<generation>, an incident id")
    start: AwareDatetime
    end: AwareDatetime = Field(description="when it stopped bearing on the SLI's figures (or now, while it goes on)")

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end


@dataclass(frozen=True, slots=True)
class Measurement:
    """An SLO's figures at one instant: the error ratio over every alert window and over its budget period so far.

    A measurer makes one per SLO every cycle and `evaluate` reads it in the same process: plain data checked here,
    not a pydantic model (its validation was about 5 % of a 10,000-SLO cycle); every ratio is checked all the same.
    """

    at: datetime  # the instant the figures describe (with a zone); transitions are dated by it
    windows: Mapping[timedelta, float]  # the error ratio over each alert window, 0 to 1
    period: float  # the error ratio since the budget period's start, 0 to 1
    # requests/s over the shortest window, for the SLO's minimum request rate
    request_rate: float | None = None
    # requests/s over alert windows, for the SLO's minimum request rate: a burn condition holds only while its long
    # window's rate reaches it (the generated alerts' rule); a window left out counts as no requests
    request_rates: Mapping[timedelta, float] | None = None
    consumption: tuple[CauseConsumption, ...] = ()  # the period's budget consumption by cause, where the SLI can tell
    # where the SLI cannot tell consumption by cause (PromQL SLIs): the causes bearing on the SLO, to which `evaluate`
    # attributes the budget consumed since the previous evaluation (see `accrued`)
    causes: tuple[CauseSpan, ...] | None = None
    # The period length the tiers' factors are for, when the SLI's alerts are rules with fixed factors (a calendar
    # SLO read from Prometheus: its rules' table period, 30 days for a month); None: the budget period's own length.
    alert_period: timedelta | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError(f"a measurement's time needs a zone: {self.at.isoformat()}")
        for window, ratio in self.windows.items():
            if not 0 <= ratio <= 1:
                raise ValueError(f"the {format_duration(window)} error ratio {ratio} is not within 0 and 1")
        if not 0 <= self.period <= 1:
            raise ValueError(f"the period's error ratio {self.period} is not within 0 and 1")
        if self.request_rate is not None and not self.request_rate >= 0:
            raise ValueError(f"the request rate {self.request_rate} is negative")

    @classmethod
    def from_counts(
        cls, at: datetime, windows: Mapping[timedelta, Counts], period: Counts, request_rate: float | None = None
    ) -> Self:
        ratios = {window: counts.error_ratio for window, counts in windows.items()}
        return cls(at=at, windows=ratios, period=period.error_ratio, request_rate=request_rate)


class BudgetState(BaseModel):
    """Where an SLO stood at its last evaluation: what the next evaluation compares with, and what status reports."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slo: SloRef
    objective: float
    period_start: AwareDatetime = Field(description="the start of the budget period evaluated")
    period: timedelta = Field(description="the budget period's length")
    evaluated_at: AwareDatetime
    budget_remaining: float = Field(le=1)
    burn_rates: dict[Window, BurnRate] = Field(description="window -> burn rate, shortest window first")
    firing: dict[BurnTier, AwareDatetime] = Field(default_factory=dict, description="tier -> firing since")
    exhausted_since: AwareDatetime | None = None
    time_to_exhaustion: timedelta | None = None
    consumption: tuple[CauseConsumption, ...] = ()

    # Held, and stored, as a window -> rate mapping (`{"PT5M": 14.4, ...}`): a model per window made a state (an engine
    # validates and keeps thousands each cycle) twice as dear to validate, and a list built per state by a Python
    # serializer made it dearer to store. States stored before kept a list of WindowRate (`{"window", "burn_rate"}`),
    # which is still read.
    @field_validator("burn_rates", mode="before")
    @classmethod
    def _from_window_rates(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        rates: dict[Any, Any] = {}
        for rate in value:
            if isinstance(rate, WindowRate):
                rates[rate.window] = rate.burn_rate
            elif isinstance(rate, Mapping) and set(rate) == {"window", "burn_rate"}:
                rates[rate["window"]] = rate["burn_rate"]
            else:
                raise ValueError(f"a burn rate is {{window, burn_rate}}, not {rate!r}")
        return rates

    @property
    def exhausted(self) -> bool:
        return self.exhausted_since is not None

    def status(self) -> SloState:
        return SloState(
            slo=self.slo,
            objective=self.objective,
            period=self.period,
            budget_remaining=self.budget_remaining,
            burn_rates=tuple(WindowRate(window=window, burn_rate=rate) for window, rate in self.burn_rates.items()),
            firing=tuple(tier for tier in BurnTier if tier in self.firing),
            budget_exhausted=self.exhausted,
            time_to_exhaustion=self.time_to_exhaustion,
            evaluated_at=self.evaluated_at,
            consumption=self.consumption,
        )


@dataclass(frozen=True)
class Transition:
    """An event to publish once: its type, its id (the same whenever the same transition is seen) and payload."""

    event: SloEvent
    id: str
    payload: BurnAlert | BudgetExhausted | BudgetRecovered


@dataclass(slots=True)
class Figures:
    """What an evaluation found, field for field the `BudgetState` it becomes. Kept as plain data until a state is
    wanted: most SLOs most cycles find the figures of the state they hold (`BudgetBook` compares before building), and
    validating a state costs about as much as the evaluation's arithmetic. Not changed once made; not frozen only
    because a frozen dataclass sets each field through `object.__setattr__`, and every SLO makes one every cycle."""

    slo: SloRef
    objective: float
    period_start: datetime
    period: timedelta
    evaluated_at: datetime
    budget_remaining: float
    burn_rates: dict[timedelta, float]  # window -> burn rate, shortest window first
    firing: dict[BurnTier, datetime]
    exhausted_since: datetime | None
    time_to_exhaustion: timedelta | None
    consumption: tuple[CauseConsumption, ...]

    def state(self) -> BudgetState:
        # Not validated: every field is `evaluate`'s own arithmetic on a checked measurement and a valid spec, of the
        # field's type (tests validate the dump of states so made). Validating took about a tenth of an engine's
        # cycle when every SLO's figures moved; states read from the bucket are validated.
        return trusted(
            BudgetState,
            {
                "slo": self.slo,
                "objective": self.objective,
                "period_start": self.period_start,
                "period": self.period,
                "evaluated_at": self.evaluated_at,
                "budget_remaining": self.budget_remaining,
                "burn_rates": self.burn_rates,
                "firing": self.firing,
                "exhausted_since": self.exhausted_since,
                "time_to_exhaustion": self.time_to_exhaustion,
                "consumption": self.consumption,
            },
        )


class Evaluation:
    """The figures found and the transitions since the previous state. `figures` is None when the measurement was
    no newer than `previous`, which stands. A plain class: one is made per SLO every cycle."""

    __slots__ = ("_state", "figures", "previous", "transitions")

    def __init__(
        self, figures: Figures | None, transitions: tuple[Transition, ...], previous: BudgetState | None = None
    ) -> None:
        self.figures = figures
        self.transitions = transitions
        self.previous = previous
        self._state: BudgetState | None = None

    @property
    def state(self) -> BudgetState:
        """The state the figures make (made once, when first asked for)."""
        if self._state is None:
            if self.figures is None:
                assert self.previous is not None, "an evaluation without figures keeps its previous state"
                self._state = self.previous
            else:
                self._state = self.figures.state()
        return self._state


def exhaustion_threshold(slo: ServiceLevelObjective) -> float:
    """Budget left at or below which it counts as exhausted: the policy's freeze level, or 0 (all spent)."""
    percent = slo.policy.freeze_deploys_below_percent
    return 0.0 if percent is None else percent / 100


def accrued(
    previous: BudgetState | None,
    consumed: float,
    causes: tuple[CauseSpan, ...],
    at: datetime,
    *,
    exclude_chaos: bool = False,
) -> tuple[CauseConsumption, ...]:
    """The period's consumption by cause, carried on from `previous` when the SLI only tells how much budget is
    consumed in all (`consumed`, a share of the budget), not when.

    What was consumed since the previous evaluation is attributed to every cause that overlapped the time between
    them (to each of them, as the availability SLI counts down time during several causes for each), or to none
    (`unattributed`). Budget given back meanwhile (errors leaving the rolling period, more good requests diluting
    them) is taken from every cause in proportion, as the figures cannot tell whose errors left. The first evaluation
    cannot tell when the budget already consumed went: it is unattributed.

    `consumed` is all the SLI tells, chaos included; with `exclude_chaos` the chaos entry is marked excluded, and the
    caller keeps it out of the budget left (`previous.budget_remaining` is read back the same way).
    """
    if previous is None:
        return (CauseConsumption(cause=BudgetCause.UNATTRIBUTED, budget_consumed=consumed),) if consumed > 0 else ()
    was = max(0.0, 1 - previous.budget_remaining + excluded_consumption(previous.consumption))
    now = max(0.0, consumed)
    if (
        now == was
        and (previous.consumption or now == 0)
        and all(c.excluded is (exclude_chaos and c.cause is BudgetCause.CHAOS) for c in previous.consumption)
    ):
        return previous.consumption  # nothing consumed nor given back (most SLOs, most cycles)
    shares = {entry.cause: (entry.budget_consumed, set(entry.refs)) for entry in previous.consumption}
    if not shares and was > 0:  # a state from before attribution: what it had consumed went unattributed
        shares = {BudgetCause.UNATTRIBUTED: (was, set())}
    if now < was:
        scale = now / was
        shares = {cause: (value * scale, refs) for cause, (value, refs) in shares.items()}
    elif now > was:
        during = [span for span in causes if span.overlaps(previous.evaluated_at, at)]
        tagged = {span.cause for span in during} or {BudgetCause.UNATTRIBUTED}
        for cause in tagged:
            value, refs = shares.get(cause, (0.0, set()))
            shares[cause] = (value + now - was, refs | {span.ref for span in during if span.cause is cause})
    return tuple(
        CauseConsumption(
            cause=cause,
            budget_consumed=shares[cause][0],
            refs=tuple(sorted(shares[cause][1])),
            excluded=exclude_chaos and cause is BudgetCause.CHAOS,
        )
        for cause in BudgetCause
        if cause in shares and shares[cause][0] > 1e-12
    )


def excluded_consumption(consumption: tuple[CauseConsumption, ...]) -> float:
    """The budget consumed by causes the SLO keeps out of its budget (chaos, when it excludes chaos-caused burn)."""
    return sum(c.budget_consumed for c in consumption if c.excluded) if consumption else 0.0


TierConditions = tuple[BurnTier, bool, Threshold, Threshold, float, float]  # tier, enabled, quick, slow, their ratios


@dataclass(frozen=True, slots=True)
class EvaluationPlan:
    """What evaluating an SLO takes from its spec and window table rather than from the measurement: worked out once
    (`plan`) and used by every evaluation of the same objects. An engine evaluates each of thousands of SLOs every
    cycle against the same spec: working these out each time was about half of `evaluate`'s own time."""

    slo: ServiceLevelObjective
    namespace: str
    windows: AlertWindows
    ref: SloRef
    alert_windows: tuple[timedelta, ...]  # shortest first
    budget: float  # the allowed error ratio, checked within (0, 1]
    rolling: timedelta | None  # a rolling period's length (the window's); None for a calendar period's
    exhaustion: float  # budget left at or below which it counts as exhausted
    # Each tier's conditions with the error ratio above which each holds (`factor x budget`), by period length: one
    # length for a rolling period, a few (28 to 31 days) for a calendar month.
    by_length: dict[timedelta, tuple[TierConditions, ...]]

    def conditions(self, length: timedelta) -> tuple[TierConditions, ...]:
        found = self.by_length.get(length)
        if found is None:
            enabled = self.slo.alerting
            found = self.by_length[length] = tuple(
                (tier, enabled.tier(tier).enabled, quick, slow, quick.factor * self.budget, slow.factor * self.budget)
                for tier, (quick, slow) in zip(BURN_TIERS, self.windows.thresholds(length), strict=True)
            )
        return found

    def fits(self, slo: ServiceLevelObjective, namespace: str, windows: AlertWindows) -> bool:
        """Whether the plan is of these very objects (a changed spec is a new object)."""
        return self.slo is slo and self.windows is windows and self.namespace == namespace


def plan(slo: ServiceLevelObjective, namespace: str, windows: AlertWindows) -> EvaluationPlan:
    """The evaluation plan of an SLO in a namespace with its window table; raises ValueError for a 100 % objective
    (no budget to burn)."""
    budget = slo.error_budget
    require_budget(budget)  # once for all the plan's evaluations
    return EvaluationPlan(
        slo=slo,
        namespace=namespace,
        windows=windows,
        ref=SloRef(namespace=namespace, name=slo.name, service=slo.service),
        alert_windows=windows.sorted_windows,
        budget=budget,
        rolling=slo.window.length if isinstance(slo.window, RollingWindow) else None,
        exhaustion=exhaustion_threshold(slo),
        by_length={},
    )


def evaluate(
    slo: ServiceLevelObjective,
    namespace: str,
    cluster: str,
    windows: AlertWindows,
    measurement: Measurement,
    previous: BudgetState | None,
) -> Evaluation:
    """The SLO's figures at `measurement.at` and the transitions from `previous` (None: never evaluated)."""
    return evaluate_planned(plan(slo, namespace, windows), cluster, measurement, previous)


def evaluate_planned(
    plan: EvaluationPlan, cluster: str, measurement: Measurement, previous: BudgetState | None
) -> Evaluation:
    """`evaluate` with the SLO's plan worked out already."""
    if previous is not None and measurement.at <= previous.evaluated_at:
        return Evaluation(None, (), previous)
    slo, namespace = plan.slo, plan.namespace
    ratios = measurement.windows
    alert_windows = plan.alert_windows
    budget = plan.budget
    try:
        rates = {window: ratios[window] / budget for window in alert_windows}
    except KeyError:
        names = ", ".join(format_duration(w) for w in alert_windows if w not in ratios)
        raise ValueError(f"the measurement of SLO {namespace}/{slo.name} has no error ratio over {names}") from None

    at = measurement.at
    if plan.rolling is not None:
        length = plan.rolling
        period_start = at - length
    else:
        period = period_at(slo.window, at)
        length, period_start = period.length, period.start
    ref = plan.ref
    consumed = measurement.period / budget
    consumption = measurement.consumption
    if measurement.causes is not None:
        # The SLI's ratio holds the chaos-caused errors (Prometheus cannot tell them): an SLO excluding them gives
        # back what was attributed to chaos runs. An availability SLI's period ratio leaves them out already.
        exclude = slo.policy.exclude_chaos_burn
        consumption = accrued(previous, consumed, measurement.causes, at, exclude_chaos=exclude)
        if exclude:
            consumed = max(0.0, consumed - excluded_consumption(consumption))
    remaining = 1 - consumed
    # The page tier's long window (1h in the Workbook's table): recent enough to follow a change in burn, long enough
    # not to swing with every scrape.
    tte = time_to_exhaustion(remaining, rates[plan.windows.page.quick.long_window], length)

    def burns(condition: Threshold) -> WindowBurn:
        return WindowBurn(
            short_window=condition.short_window,
            long_window=condition.long_window,
            factor=condition.factor,
            short_burn_rate=rates[condition.short_window],
            long_burn_rate=rates[condition.long_window],
        )

    minimum = slo.min_request_rate
    request_rates = measurement.request_rates if minimum is not None else None
    floor = minimum or 0.0

    def holds(condition: Threshold, threshold: float) -> bool:
        # Sloth's comparison, on ratios (`ratio > factor x budget`), so the engine and the alert rules agree at the
        # boundary; with a minimum request rate, only while the long window had enough requests.
        return (
            ratios[condition.short_window] > threshold
            and ratios[condition.long_window] > threshold
            and (request_rates is None or request_rates.get(condition.long_window, 0.0) >= floor)
        )

    quiet = minimum is not None and measurement.request_rate is not None and measurement.request_rate < minimum
    was_firing = previous.firing if previous is not None else {}
    firing: dict[BurnTier, datetime] = {}
    transitions: list[Transition] = []
    for tier, enabled, quick, slow, quick_at, slow_at in plan.conditions(measurement.alert_period or length):
        fires = enabled and not quiet and (holds(quick, quick_at) or holds(slow, slow_at))
        if fires:
            firing[tier] = was_firing.get(tier, at)
        if fires == (tier in was_firing):
            continue
        change = AlertState.FIRING if fires else AlertState.RESOLVED
        alert = BurnAlert(
            cluster=cluster,
            slo=ref,
            tier=tier,
            state=change,
            since=at,
            objective=slo.objective,
            period=length,
            windows=(burns(quick), burns(slow)),
            budget_remaining=remaining,
            time_to_exhaustion=tte,
            consumption=consumption,
        )
        transitions.append(
            Transition(burn_event(tier, change), f"{namespace}/{slo.name}:{tier}:{change}:{at.isoformat()}", alert)
        )

    threshold = plan.exhaustion
    exhausted = remaining <= threshold
    was_exhausted_since = previous.exhausted_since if previous is not None else None
    was_exhausted = was_exhausted_since is not None
    exhausted_since = (was_exhausted_since or at) if exhausted else None
    if exhausted != was_exhausted:
        kind = BudgetExhausted if exhausted else BudgetRecovered
        event = SloEvent.BUDGET_EXHAUSTED if exhausted else SloEvent.BUDGET_RECOVERED
        payload = kind(
            cluster=cluster,
            slo=ref,
            objective=slo.objective,
            period=length,
            budget_remaining=remaining,
            threshold=threshold,
            freeze_deploys=slo.policy.freeze_deploys_below_percent is not None,
            at=at,
            consumption=consumption,
        )
        transitions.append(Transition(event, f"{namespace}/{slo.name}:{event}:{at.isoformat()}", payload))

    figures = Figures(
        slo=ref,
        objective=slo.objective,
        period_start=period_start,
        period=length,
        evaluated_at=at,
        budget_remaining=remaining,
        burn_rates=rates,
        firing=firing,
        exhausted_since=exhausted_since,
        time_to_exhaustion=tte,
        consumption=consumption,
    )
    return Evaluation(figures, tuple(transitions), previous)
