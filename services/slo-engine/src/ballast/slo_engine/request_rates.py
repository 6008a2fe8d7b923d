"""The request rates an SLO's minimum request rate is checked against, recorded by Prometheus so that the engine reads
every SLO's rate over a window in one query, as it reads their error ratios.

For an SLO with `min_request_rate`, `rules_sync` writes one group more next to Sloth's (in the engine's rule files and
PrometheusRules only, never in `ballast slo generate`'s output, which stays Sloth's): `ballast:slo_requests:rate<w>`,
the SLI's total request rate (an event ratio's total query, a latency SLI's histogram count) over every long window of
the SLO's burn conditions, which is where the generated alerts check the minimum. A raw error ratio SLI has no total,
so it cannot have a minimum (the model refuses one), and neither can a WebApp availability SLI.
"""

from __future__ import annotations

from datetime import timedelta

from ballast.events.contracts.slo import BurnTier
from ballast.slo import AlertWindows, EventRatioSli, LatencySli, RuleGroup, ServiceLevelObjective
from ballast.slo.durations import format_duration
from ballast.slo.rules import RecordingRule


def requests_record(window: timedelta) -> str:
    """The recorded series of the SLI's total request rate over `window`, in requests/s."""
    return f"ballast:slo_requests:rate{format_duration(window)}"


def gated_windows(windows: AlertWindows) -> set[timedelta]:
    """The windows the minimum request rate is checked over: every burn condition's long window."""
    return {
        condition.long_window for tier in BurnTier for condition in (windows.tier(tier).quick, windows.tier(tier).slow)
    }


def request_rate_group(slo: ServiceLevelObjective, windows: AlertWindows, labels: dict[str, str]) -> RuleGroup | None:
    """The group recording the SLO's request rates, labelled like its SLI recordings; None without a minimum."""
    sli = slo.sli
    if slo.min_request_rate is None or not isinstance(sli, EventRatioSli | LatencySli):
        return None
    rules = tuple(
        RecordingRule(
            requests_record(window),
            # Summed: one series per SLO and window, whatever the total query's own labels.
            f"sum({sli.total_rate_query(format_duration(window))})",
            labels | {"sloth_window": format_duration(window)},
        )
        for window in sorted(gated_windows(windows))
    )
    return RuleGroup(f"ballast-slo-requests-{slo.id}", rules)
