"""`/metrics` budget gauges: every SLO's last evaluated state, read from the status view at scrape time.

Every replica exports the same figures (the view follows the shared bucket), so a dashboard picks any one
(`max by (namespace, slo)`); a deleted SLO's series end with its state instead of lingering as stale gauges.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from ballast.events.contracts.slo import BurnTier
from ballast.slo.durations import format_duration
from ballast.slo_engine.status import StatusView

LABELS = ["namespace", "slo", "service"]


class BudgetGauges:
    def __init__(self, view: StatusView) -> None:
        self._view = view

    def collect(self) -> Iterable[Metric]:
        remaining = GaugeMetricFamily(
            "ballast_slo_budget_remaining_ratio",
            "Fraction of the period's error budget left at the last evaluation; negative once overspent.",
            labels=LABELS,
        )
        burn = GaugeMetricFamily(
            "ballast_slo_burn_rate",
            "Error ratio over the window / error budget, per alert window.",
            labels=[*LABELS, "window"],
        )
        firing = GaugeMetricFamily(
            "ballast_slo_tier_firing", "1 while the tier's burn-rate alert fires, else 0.", labels=[*LABELS, "tier"]
        )
        exhausted = GaugeMetricFamily(
            "ballast_slo_budget_exhausted", "1 while the budget is at or below the policy's threshold.", labels=LABELS
        )
        tte = GaugeMetricFamily(
            "ballast_slo_time_to_exhaustion_seconds",
            "How long the budget left lasts at the 1h burn rate; absent when nothing burns or nothing is left.",
            labels=LABELS,
        )
        consumed = GaugeMetricFamily(
            "ballast_slo_budget_consumed_ratio",
            "Fraction of the period's budget consumed while a cause was going on (chaos, rollout, incident, "
            "unattributed); excluded=true when the SLO keeps it out of its budget.",
            labels=[*LABELS, "cause", "excluded"],
        )
        evaluated = GaugeMetricFamily(
            "ballast_slo_evaluated_timestamp_seconds", "When the SLO was last evaluated (Unix time).", labels=LABELS
        )
        for state in self._view.states():
            slo = [state.slo.namespace, state.slo.name, state.slo.service]
            remaining.add_metric(slo, state.budget_remaining)
            for window, rate in state.burn_rates.items():
                burn.add_metric([*slo, format_duration(window)], rate)
            for tier in BurnTier:
                firing.add_metric([*slo, str(tier)], 1.0 if tier in state.firing else 0.0)
            exhausted.add_metric(slo, 1.0 if state.exhausted else 0.0)
            if state.time_to_exhaustion is not None:
                tte.add_metric(slo, state.time_to_exhaustion.total_seconds())
            for part in state.consumption:
                consumed.add_metric([*slo, str(part.cause), str(part.excluded).lower()], part.budget_consumed)
            evaluated.add_metric(slo, state.evaluated_at.timestamp())
        return [remaining, burn, firing, exhausted, tte, consumed, evaluated]
