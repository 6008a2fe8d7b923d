"""Prometheus rules for SLOs, the same as Sloth's default plugin chain makes for the same spec.

Per SLO: the SLI's error ratio recorded over every alert window and the period (`sloth-slo-sli-recordings-<id>`),
the SLO's metadata (`sloth-slo-meta-recordings-<id>`), and one alert per enabled tier whose two conditions each
need a short and a long window burning faster than the tier's factor (`sloth-slo-alerts-<id>`). Names, labels and
expressions keep Sloth's spelling, `sloth_*` labels included, so dashboards and alert routes made for Sloth work.
Only a minimum request rate, which Sloth lacks, adds a term to the alert conditions.

The period's ratio is Sloth's (the mean of the shortest window's ratios) for an Occurrences budget. Under OpenSLO's
slice methods, which Sloth lacks, it counts slices instead: a subquery with one step per slice over the period (steps
Prometheus aligns to the epoch, as `ballast.slo.slices` does for availability SLIs) over the slice window's ratio,
recorded too when it is not an alert window. Timeslices records the share of slices whose good ratio missed the slice
target, RatioTimeslices the slices' mean ratio; a slice without traffic (a NaN ratio) counts for neither.

A calendar window (which Sloth lacks too) gets the alert windows and factors of its usual length (a month: the 30-day
table), and no period ratio: a calendar period has no fixed range, so the slo-engine asks Prometheus for the ratio
since the period's start (`period_ratio_expr`) when it evaluates, and the period burn-rate rules are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from ballast.events.contracts.slo import BurnTier
from ballast.slo.alert_windows import AlertWindows, BurnWindow, MissingAlertWindows, WindowCatalogue
from ballast.slo.budgeting import Occurrences, Timeslices
from ballast.slo.durations import format_duration
from ballast.slo.group import KubernetesObject, SloGroup, SpecFormat
from ballast.slo.numbers import go_float
from ballast.slo.objective import ServiceLevelObjective
from ballast.slo.periods import nominal_length
from ballast.slo.sli import PROMETHEUS, EventRatioSli, LatencySli, RawErrorRatioSli, has_window
from ballast.slo.window import RollingWindow

_MODES = {
    SpecFormat.SLOTH_PROMETHEUS: "cli-gen-prom",
    SpecFormat.SLOTH_KUBERNETES: "cli-gen-k8s",
    SpecFormat.OPENSLO_V1ALPHA: "cli-gen-openslo",
    SpecFormat.OPENSLO_V1: "cli-gen-openslo",
    SpecFormat.BALLAST: "ballast-k8s",
}


class UnsupportedSlo(ValueError):
    """The SLO loads, but Prometheus rules cannot express it (the message says why)."""


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str
    labels: dict[str, str]


@dataclass(frozen=True)
class AlertingRule:
    alert: str
    expr: str
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: tuple[RecordingRule | AlertingRule, ...]


@dataclass(frozen=True)
class RuleDocument:
    """The rules of one spec document: plain rule groups, or a PrometheusRule when the spec was a Kubernetes object."""

    groups: list[RuleGroup]
    kubernetes: KubernetesObject | None = None


@dataclass(frozen=True)
class RuleOptions:
    """Sloth's `generate` flags: extra labels on every recorded series, and which rule kinds to leave out."""

    version: str
    windows: WindowCatalogue = field(default_factory=WindowCatalogue.builtin)
    extra_labels: dict[str, str] = field(default_factory=dict)
    recordings: bool = True
    alerts: bool = True


def _sli_record(window: timedelta) -> str:
    return f"slo:sli_error:ratio_rate{format_duration(window)}"


def _selector(slo: ServiceLevelObjective) -> str:
    return f'{{sloth_id="{slo.id}", sloth_service="{slo.service}", sloth_slo="{slo.name}"}}'


def _ids(slo: ServiceLevelObjective) -> dict[str, str]:
    return {"sloth_id": slo.id, "sloth_service": slo.service, "sloth_slo": slo.name}


def _prometheus_sli(slo: ServiceLevelObjective) -> EventRatioSli | RawErrorRatioSli | LatencySli:
    sli = slo.sli
    if isinstance(sli, LatencySli):
        return sli
    if not isinstance(sli, EventRatioSli | RawErrorRatioSli):
        raise UnsupportedSlo(f"a {sli.kind} SLI has no Prometheus error-ratio query")
    if sli.source not in (PROMETHEUS, "sloth"):
        raise UnsupportedSlo(f"its queries are for {sli.source!r}, not Prometheus")
    queries = (sli.error_ratio_query,) if isinstance(sli, RawErrorRatioSli) else (sli.total_query,)
    if not all(has_window(q) for q in queries):
        raise UnsupportedSlo("its queries have no {{.window}} placeholder for the rate window")
    return sli


def alert_windows_of(slo: ServiceLevelObjective, catalogue: WindowCatalogue) -> AlertWindows:
    """The SLO's alert window table: its period's, a calendar period's usual length for a calendar window (a month's
    is the 30-day table). Raises UnsupportedSlo when the catalogue has none."""
    try:
        return catalogue.for_period(nominal_length(slo.window))
    except MissingAlertWindows as error:
        raise UnsupportedSlo(str(error)) from None


def period_ratio_expr(slo: ServiceLevelObjective, windows: AlertWindows, selector: str, span: str) -> str:
    """The error ratio over the last `span` (a PromQL range) as the SLO's budgeting method counts it, from the
    recorded series `selector` picks: Sloth's mean of the shortest window's ratios for Occurrences, one subquery step
    per slice for the slice methods (a slice without traffic, a NaN ratio, counts for neither)."""
    budgeting = slo.budgeting
    if isinstance(budgeting, Occurrences):
        series = f"{_sli_record(windows.windows()[0])}{selector}[{span}]"
        return f"sum_over_time({series})\n/ ignoring (sloth_window)\ncount_over_time({series})\n"
    width = budgeting.slice_window
    slices = f"({_sli_record(width)}{selector} >= 0)"  # `>= 0` drops NaN: it compares false
    if isinstance(budgeting, Timeslices):
        # A slice is bad when its good ratio misses the target: its error ratio is over 1 - target.
        slices = f"({slices} > bool {go_float(1 - budgeting.slice_target)})"
    return f"avg_over_time({slices}[{span}:{format_duration(width)}])\n"


def _sli_group(slo: ServiceLevelObjective, windows: AlertWindows, labels: dict[str, str]) -> RuleGroup:
    sli = _prometheus_sli(slo)
    rules = [
        RecordingRule(
            _sli_record(window),
            sli.error_ratio(format_duration(window)),
            labels | {"sloth_window": format_duration(window)},
        )
        for window in windows.windows()
    ]
    budgeting = slo.budgeting
    if not isinstance(budgeting, Occurrences) and budgeting.slice_window not in windows.windows():
        width = format_duration(budgeting.slice_window)  # the slices' own ratio, recorded too
        rules.append(
            RecordingRule(_sli_record(budgeting.slice_window), sli.error_ratio(width), labels | {"sloth_window": width})
        )
    if isinstance(slo.window, RollingWindow):
        # The period's ratio over the last period. A calendar period has no fixed range: the engine asks for the
        # ratio since its start itself.
        period = format_duration(windows.period)
        ratio = period_ratio_expr(slo, windows, _selector(slo), period)
        rules.append(RecordingRule(_sli_record(windows.period), ratio, labels | {"sloth_window": period}))
    return RuleGroup(f"sloth-slo-sli-recordings-{slo.id}", tuple(rules))


def _meta_group(
    slo: ServiceLevelObjective, windows: AlertWindows, labels: dict[str, str], spec: SpecFormat, version: str
) -> RuleGroup:
    selector = _selector(slo)
    objective = go_float(slo.objective_ratio)

    def burn(window: timedelta) -> str:
        ratio = f"{_sli_record(window)}{selector}"
        return f"{ratio}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\nslo:error_budget:ratio{selector}\n"

    info = labels | {
        "sloth_mode": _MODES[spec],
        "sloth_objective": go_float(slo.objective),
        "sloth_spec": spec.value,
        "sloth_version": version,
    }
    return RuleGroup(
        f"sloth-slo-meta-recordings-{slo.id}",
        (
            RecordingRule("slo:objective:ratio", f"vector({objective})", labels),
            RecordingRule("slo:error_budget:ratio", f"vector(1-{objective})", labels),
            RecordingRule("slo:time_period:days", f"vector({go_float(windows.period / timedelta(days=1))})", labels),
            RecordingRule("slo:current_burn_rate:ratio", burn(windows.windows()[0]), labels),
            *(
                (
                    RecordingRule("slo:period_burn_rate:ratio", burn(windows.period), labels),
                    RecordingRule(
                        "slo:period_error_budget_remaining:ratio", f"1 - slo:period_burn_rate:ratio{selector}", labels
                    ),
                )
                if isinstance(slo.window, RollingWindow)  # a calendar period's ratio is not recorded
                else ()
            ),
            RecordingRule("sloth_slo_info", "vector(1)", dict(sorted(info.items()))),
        ),
    )


def _condition(slo: ServiceLevelObjective, burn: BurnWindow, period: timedelta) -> str:
    threshold = f"({go_float(burn.factor(period))} * {go_float(slo.error_budget)})"
    terms = [
        f"max({_sli_record(w)}{_selector(slo)} > {threshold}) without (sloth_window)"
        for w in (burn.short_window, burn.long_window)
    ]
    lines = [terms[0], "and", terms[1]]
    if slo.min_request_rate is not None:
        sli = slo.sli
        assert isinstance(sli, EventRatioSli | LatencySli)  # the model allows a minimum rate only for these
        total = sli.total_rate_query(format_duration(burn.long_window))
        lines += ["and on()", f"({total}) >= {go_float(slo.min_request_rate)}"]
    return "(\n" + "".join(f"    {line}\n" for line in lines) + ")"


def _alert(slo: ServiceLevelObjective, tier: BurnTier, windows: AlertWindows) -> AlertingRule:
    pair = windows.tier(tier)
    expr = f"{_condition(slo, pair.quick, windows.period)}\nor\n{_condition(slo, pair.slow, windows.period)}\n"
    alerting = slo.alerting
    which = "{{$labels.sloth_service}} {{$labels.sloth_slo}}"
    defaults = {
        "title": f"({tier}) {which} SLO error budget burn rate is too fast.",
        "summary": f"{which} SLO error budget burn rate is over expected.",
    }
    labels = alerting.alert_labels(tier) | {"sloth_severity": tier.value}
    annotations = defaults | alerting.alert_annotations(tier)
    return AlertingRule(
        alerting.alert_name(tier), expr, dict(sorted(labels.items())), dict(sorted(annotations.items()))
    )


def slo_rule_groups(slo: ServiceLevelObjective, spec: SpecFormat, options: RuleOptions) -> list[RuleGroup]:
    """The rule groups for one SLO; raises UnsupportedSlo when Prometheus rules cannot express it."""
    windows = alert_windows_of(slo, options.windows)
    labels = dict(sorted((slo.labels | options.extra_labels | _ids(slo)).items()))
    groups = []
    if options.recordings:
        groups.append(_sli_group(slo, windows, labels))
        groups.append(_meta_group(slo, windows, labels, spec, options.version))
    else:
        _prometheus_sli(slo)  # the alerts still read the recorded SLI, so it must be expressible
    tiers = [tier for tier in BurnTier if slo.alerting.tier(tier).enabled]
    if options.alerts and tiers:
        groups.append(RuleGroup(f"sloth-slo-alerts-{slo.id}", tuple(_alert(slo, tier, windows) for tier in tiers)))
    return groups


# On every recording of a ServiceLevelObjective object's rules: two objects of one name in two namespaces stay apart.
NAMESPACE_LABEL = "namespace"


def object_options(options: RuleOptions, namespace: str) -> RuleOptions:
    """The options for the rules of a ServiceLevelObjective object in `namespace` (as the slo-engine writes them)."""
    return replace(options, extra_labels=options.extra_labels | {NAMESPACE_LABEL: namespace})


def document_rules(group: SloGroup, options: RuleOptions) -> RuleDocument:
    if group.format is SpecFormat.BALLAST and group.kubernetes is not None:
        options = object_options(options, group.kubernetes.namespace)
    groups = [rule_group for slo in group.slos for rule_group in slo_rule_groups(slo, group.format, options)]
    return RuleDocument(groups, group.kubernetes)
