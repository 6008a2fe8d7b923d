"""An availability SLO's measurement at an instant (pure): error ratios per alert window and over the budget period,
and the period's consumption by cause.

Budget attribution: the down time of the period is intersected with each cause's time (the chaos runs against the
WebApp or its namespace, its rollouts, the open incidents of its service); the budget a cause consumed is that down
time over the observed time of the period, over the error budget. Down time during several causes counts for each;
down time during none is `unattributed`. Under the Timeslices budgeting methods the period's error is counted in
slices (`ballast.slo.slices`), and a cause gets the part of each bad slice's cost that its down time in the slice
carries. An SLO that excludes chaos-caused burn keeps the down time during chaos runs out of its period ratio (so out
of its budget); its alert windows still see it, so that a run burning too fast still pages and the chaos-runner still
aborts it.

A rollout lasts from the first report of a new generation until the WebApp is up again after a settling time (a
rollout that never took the WebApp down ends when the settling time does).

A PromQL SLO's measurement tells only how much budget its period has consumed, not when: `cause_spans` gives the
causes bearing on it, and `evaluate` attributes what was consumed between two evaluations to those that overlapped.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from ballast.events.contracts.slo import BudgetCause, CauseConsumption
from ballast.slo import AlertWindows, ServiceLevelObjective, workbook_windows
from ballast.slo.evaluation import CauseSpan, Measurement
from ballast.slo.intervals import Interval, clip, intersect, subtract
from ballast.slo.periods import period_at
from ballast.slo.slices import CostWeights, period_error_ratio
from ballast.slo_engine.availability import WebAppRecord
from ballast.slo_engine.causes import CauseWindow


def alert_windows(slo: ServiceLevelObjective, at: datetime) -> AlertWindows:
    """The Workbook's windows for the period `at` falls in (its factors scale with the period's length)."""
    return workbook_windows(period_at(slo.window, at).length)


def rollout_intervals(record: WebAppRecord, settle: timedelta, now: datetime) -> list[tuple[str, Interval]]:
    found: list[tuple[str, Interval]] = []
    for rollout in record.rollouts:
        end = record.up_again(rollout.at + settle)
        found.append((f"{record.name}@{rollout.generation}", (rollout.at, min(end, now) if end else now)))
    return found


def cause_intervals(
    slo: ServiceLevelObjective,
    namespace: str,
    record: WebAppRecord,
    causes: Iterable[CauseWindow],
    settle: timedelta,
    at: datetime,
) -> dict[BudgetCause, list[tuple[str, Interval]]]:
    by_cause: dict[BudgetCause, list[tuple[str, Interval]]] = {
        BudgetCause.CHAOS: [],
        BudgetCause.ROLLOUT: rollout_intervals(record, settle, at),
        BudgetCause.INCIDENT: [],
    }
    for window in causes:
        interval = window.interval(at)
        if interval is not None and window.concerns(namespace, record.name, slo.service):
            by_cause[window.cause].append((window.ref, interval))
    return by_cause


def cause_spans(
    slo: ServiceLevelObjective,
    namespace: str,
    record: WebAppRecord | None,
    causes: Iterable[CauseWindow],
    settle: timedelta,
    at: datetime,
    lag: timedelta,
) -> tuple[CauseSpan, ...]:
    """The causes bearing on a PromQL SLO, for `evaluate` to attribute its consumption to: those of the WebApp named
    like its service in its namespace (`record`, when there is one: its rollouts, the chaos runs against it) and the
    incidents of its service. Each lasts `lag` longer than it did: a rate window still counts its errors that long."""
    spans: list[CauseSpan] = []
    webapp = record.name if record is not None else slo.service
    if record is not None:
        for ref, (start, end) in rollout_intervals(record, settle, at):
            spans.append(CauseSpan(cause=BudgetCause.ROLLOUT, ref=ref, start=start, end=end + lag))
    for window in causes:
        interval = window.interval(at)
        if interval is not None and window.concerns(namespace, webapp, slo.service):
            spans.append(CauseSpan(cause=window.cause, ref=window.ref, start=interval[0], end=interval[1] + lag))
    return tuple(spans)


def availability_measurement(
    slo: ServiceLevelObjective,
    namespace: str,
    record: WebAppRecord,
    causes: Iterable[CauseWindow],
    windows: AlertWindows,
    at: datetime,
    settle: timedelta,
) -> Measurement:
    ratios = {window: record.error_ratio(at - window, at) for window in windows.windows()}
    period = period_at(slo.window, at)
    observed, down = record.spans(period.start, at)
    # The share of the period's error each cause's down time carries, as the SLO's budgeting method counts it.
    weights = CostWeights(slo.budgeting, observed, down)
    budget = slo.error_budget
    consumption: list[CauseConsumption] = []
    attributed: list[Interval] = []
    chaos_down: list[Interval] = []
    for cause, spans in cause_intervals(slo, namespace, record, causes, settle, at).items():
        during = intersect(down, clip((span for _, span in spans), period.start, at))
        if not during:
            continue
        attributed += during
        refs = tuple(sorted({ref for ref, span in spans if intersect(during, [span])}))
        excluded = cause is BudgetCause.CHAOS and slo.policy.exclude_chaos_burn
        if excluded:
            chaos_down = during
        consumption.append(
            CauseConsumption(
                cause=cause, budget_consumed=weights.error_ratio(during) / budget, refs=refs, excluded=excluded
            )
        )
    unattributed = subtract(down, attributed)
    if unattributed:
        consumption.append(
            CauseConsumption(cause=BudgetCause.UNATTRIBUTED, budget_consumed=weights.error_ratio(unattributed) / budget)
        )
    return Measurement(
        at=at,
        windows=ratios,
        # Chaos-run down time kept out when the SLO excludes it: that time counts as up.
        period=period_error_ratio(slo.budgeting, observed, subtract(down, chaos_down))
        if chaos_down
        else weights.error_ratio(down),
        consumption=tuple(consumption),
    )
