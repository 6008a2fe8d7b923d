"""The SLO model's rules, loader errors that name file, document, field and rule, and the rule generator's options:
periods and custom alert windows, extra labels, disabled rule kinds, per-tier names, latency SLIs, a minimum
request rate, and the SLOs Prometheus rules cannot express."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from pydantic import ValidationError

from ballast.events.contracts.slo import BurnTier
from ballast.slo import (
    Alerting,
    AlertTier,
    AlertWindows,
    CalendarUnit,
    CalendarWindow,
    EventRatioSli,
    InvalidSpec,
    LatencySli,
    RatioTimeslices,
    RawErrorRatioSli,
    RollingWindow,
    RuleOptions,
    ServiceLevelObjective,
    SpecFormat,
    ThresholdSli,
    Timeslices,
    UnsupportedSlo,
    WebAppAvailabilitySli,
    WindowCatalogue,
    load_texts,
    slo_rule_groups,
)
from ballast.slo.rules import AlertingRule, RecordingRule, RuleGroup

DAYS_30 = timedelta(days=30)
EVENTS = EventRatioSli(
    error_query='sum(rate(http_requests_total{job="shop",code=~"5.."}[{{.window}}]))',
    total_query='sum(rate(http_requests_total{job="shop"}[{{.window}}]))',
)
PAGING = Alerting(name="ShopBurn", page=AlertTier(), ticket=AlertTier())


def slo(**changes: object) -> ServiceLevelObjective:
    fields: dict[str, object] = {
        "service": "shop",
        "name": "requests",
        "objective": 99.9,
        "window": RollingWindow(length=DAYS_30),
        "sli": EVENTS,
        "alerting": PAGING,
    }
    return ServiceLevelObjective.model_validate(fields | changes)


Rule = TypeVar("Rule", RecordingRule, AlertingRule)


def rules(groups: list[RuleGroup], kind: type[Rule]) -> list[Rule]:
    return [rule for group in groups for rule in group.rules if isinstance(rule, kind)]


def generate(objective: ServiceLevelObjective, **options: object) -> list[RuleGroup]:
    return slo_rule_groups(objective, SpecFormat.SLOTH_PROMETHEUS, RuleOptions(version="test", **options))  # type: ignore[arg-type]


# --- the model -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"objective": 100.5}, "less than or equal to 100"),
        ({"objective": 0}, "greater than 0"),
        ({"name": "-requests"}, "should match pattern"),
        ({"alerting": {"page": {"enabled": True}}}, "the page tier is enabled but has no alert name"),
        (
            {"sli": RawErrorRatioSli(error_ratio_query="x[{{.window}}]"), "min_request_rate": 1},
            "needs a total request rate",
        ),
        ({"min_request_rate": 0}, "greater than 0"),
        ({"window": {"kind": "calendar", "unit": "month", "time_zone": "Mars/Olympus"}}, "not an IANA time zone"),
        ({"sli": {"kind": "latency", "histogram": "h", "le": "fast"}}, "not a bucket bound"),
        ({"sli": {"kind": "event_ratio", "total_query": "t"}}, "exactly one of error_query and good_query"),
        ({"policy": {"freeze_deploys_below_percent": 100}}, "less than 100"),
    ],
)
def test_the_model_rejects_what_cannot_be_meant(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        slo(**changes)


def test_a_tier_may_be_named_on_its_own_and_sets_are_laid_over_the_shared_ones() -> None:
    alerting = Alerting(
        labels={"team": "shop", "route": "default"},
        annotations={"runbook": "r"},
        page=AlertTier(name="ShopPage", labels={"route": "pager"}),
        ticket=AlertTier(name="ShopTicket", annotations={"runbook": "t"}),
    )
    assert [alerting.alert_name(t) for t in BurnTier] == ["ShopPage", "ShopTicket"]
    assert alerting.alert_labels(BurnTier.PAGE) == {"team": "shop", "route": "pager"}
    assert alerting.alert_annotations(BurnTier.TICKET) == {"runbook": "t"}


# --- loader errors ---------------------------------------------------------------------------------------------

SPEC = """
version: prometheus/v1
service: shop
slos:
  - name: requests
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
    alerting:
      name: ShopBurn
"""

KUBERNETES = """
apiVersion: sloth.slok.dev/v1
kind: PrometheusServiceLevel
metadata: {name: shop}
spec:
  service: shop
  slos:
    - name: requests
      objective: 99.9
      sli:
        events:
          errorQuery: sum(rate(http_requests_total{code=~"5.."}[5m]))
          totalQuery: sum(rate(http_requests_total[{{.window}}]))
      alerting:
        name: ShopBurn
        pageAlert: {labels: {"bad key": x}}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SPEC + "---\nversion: [", ["f.yaml: document 2: not valid YAML: "]),
        (
            "apiVersion: v1\nkind: ConfigMap\n",
            ["f.yaml: document 1: apiVersion 'v1' kind 'ConfigMap' is not an SLO spec"],
        ),
        ("- a list\n", ["f.yaml: document 1: expected a mapping: "]),
        (
            SPEC.replace("objective: 99.9", "objective: high"),
            ["f.yaml: document 1: slos[0].objective: Input should be a valid number"],
        ),
        (
            KUBERNETES,  # errors spelled as the Kubernetes kind spells its fields
            [
                "f.yaml: document 1: spec.slos[0].sli.events.errorQuery: the query must contain the {{.window}}",
                "f.yaml: document 1: spec.slos[0].alerting.pageAlert.labels: 'bad key' is not a Prometheus label name",
            ],
        ),
    ],
)
def test_load_errors_name_file_document_field_and_rule(text: str, expected: list[str]) -> None:
    loaded = load_texts([("f.yaml", text)], DAYS_30)
    assert len(loaded.errors) == len(expected), loaded.errors
    for error, start in zip(loaded.errors, expected, strict=True):
        assert str(error).startswith(start), str(error)


def test_every_document_is_read_before_errors_are_reported() -> None:
    loaded = load_texts([("a.yaml", SPEC.replace("99.9", "101")), ("b.yaml", SPEC)], DAYS_30)
    assert [e.file for e in loaded.errors] == ["a.yaml"]
    assert [g.file for g in loaded.groups] == ["b.yaml"]
    with pytest.raises(InvalidSpec, match=r"a\.yaml: document 1: slos"):
        raise InvalidSpec(loaded.errors)


# --- generation --------------------------------------------------------------------------------------------------


def test_a_28_day_period_names_its_rule_4w_and_scales_the_factors() -> None:
    groups = generate(slo(window=RollingWindow(length=timedelta(days=28))))
    records = rules(groups, RecordingRule)
    assert [r.record for r in records][:8] == [
        f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "4w")
    ]
    assert any(r.expr == "vector(28)" for r in records)
    page, ticket = rules(groups, AlertingRule)
    assert "(13.44 * 0.0009999999999999432)" in page.expr
    assert "(5.6000000000000005 * " in page.expr
    assert "(2.8000000000000003 * " in ticket.expr
    assert "(0.9333333333333333 * " in ticket.expr


SEVEN_DAYS = """
apiVersion: sloth.slok.dev/v1
kind: AlertWindows
spec:
  sloPeriod: 7d
  page:
    quick: {errorBudgetPercent: 8, shortWindow: 5m, longWindow: 1h}
    slow: {errorBudgetPercent: 12.5, shortWindow: 30m, longWindow: 6h}
  ticket:
    quick: {errorBudgetPercent: 20, shortWindow: 2h, longWindow: 1d}
    slow: {errorBudgetPercent: 42, shortWindow: 6h, longWindow: 3d}
"""


def test_custom_alert_windows_replace_the_builtin_tables(tmp_path: Path) -> None:
    (tmp_path / "7d.yaml").write_text(SEVEN_DAYS)
    catalogue = WindowCatalogue.from_directory(tmp_path)
    with pytest.raises(ValueError, match="no alert windows for a 30d period"):
        catalogue.for_period(DAYS_30)
    groups = generate(slo(window=RollingWindow(length=timedelta(days=7))), windows=catalogue)
    page, ticket = rules(groups, AlertingRule)
    assert "(13.44 * " in page.expr
    assert "(3.5 * " in page.expr
    assert "(1.4000000000000001 * " in ticket.expr
    assert "(0.98 * " in ticket.expr
    assert "slo:sli_error:ratio_rate1w" in [r.record for r in rules(groups, RecordingRule)]


def test_a_broken_windows_file_names_its_field(tmp_path: Path) -> None:
    (tmp_path / "7d.yaml").write_text(SEVEN_DAYS.replace("shortWindow: 30m", "shortWindow: 7h"))
    with pytest.raises(InvalidSpec, match=r"7d.yaml: document 1: spec.page.slow: shortWindow must be shorter"):
        WindowCatalogue.from_directory(tmp_path)


def test_extra_labels_go_on_recordings_not_alerts_and_rule_kinds_can_be_left_out() -> None:
    groups = generate(slo(labels={"team": "shop"}), extra_labels={"cmd": "gen", "team": "override"})
    assert all(r.labels["cmd"] == "gen" and r.labels["team"] == "override" for r in rules(groups, RecordingRule))
    assert all("cmd" not in r.labels for r in rules(groups, AlertingRule))
    assert [g.name for g in generate(slo(), alerts=False)] == [
        "sloth-slo-sli-recordings-shop-requests",
        "sloth-slo-meta-recordings-shop-requests",
    ]
    assert [g.name for g in generate(slo(), recordings=False)] == ["sloth-slo-alerts-shop-requests"]


def test_tiers_switch_off_one_at_a_time_and_carry_their_own_names() -> None:
    alerting = Alerting(page=AlertTier(name="ShopPage"), ticket=AlertTier(enabled=False))
    (page,) = rules(generate(slo(alerting=alerting)), AlertingRule)
    assert isinstance(page, AlertingRule)
    assert (page.alert, page.labels["sloth_severity"]) == ("ShopPage", "page")


def test_a_latency_sli_counts_requests_slower_than_the_bucket() -> None:
    latency = LatencySli(histogram="http_request_duration_seconds", selector='job="shop"', le="0.25")
    (five_minutes, *_) = rules(generate(slo(sli=latency)), RecordingRule)
    assert five_minutes.expr == (
        '((sum(rate(http_request_duration_seconds_count{job="shop"}[5m]))) - '
        '(sum(rate(http_request_duration_seconds_bucket{job="shop",le="0.25"}[5m]))))\n'
        "/\n"
        '(sum(rate(http_request_duration_seconds_count{job="shop"}[5m])))\n'
    )


def test_a_minimum_request_rate_adds_a_traffic_condition_on_each_long_window() -> None:
    page, ticket = rules(generate(slo(min_request_rate=0.5)), AlertingRule)
    assert page.expr.count("and on()") == 2
    assert '    (sum(rate(http_requests_total{job="shop"}[1h]))) >= 0.5\n' in page.expr
    assert '    (sum(rate(http_requests_total{job="shop"}[6h]))) >= 0.5\n' in page.expr
    assert '    (sum(rate(http_requests_total{job="shop"}[3d]))) >= 0.5\n' in ticket.expr
    assert "and on()" not in rules(generate(slo()), AlertingRule)[0].expr  # Sloth's expression otherwise


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"window": CalendarWindow(unit=CalendarUnit.WEEK)}, "no alert windows for a 1w period"),
        ({"window": RollingWindow(length=timedelta(days=14))}, "no alert windows for a 2w period"),
        ({"sli": ThresholdSli(query="q", op="lt", value=1)}, "a threshold SLI has no Prometheus error-ratio query"),
        ({"sli": WebAppAvailabilitySli(namespace="shop", webapp="web")}, "a webapp_availability SLI has no Prometheus"),
        ({"sli": EventRatioSli(good_query="g", total_query="t", source="datadog")}, "for 'datadog', not Prometheus"),
        ({"sli": EventRatioSli(good_query="g", total_query="t")}, "no {{.window}} placeholder"),
    ],
)
def test_slos_prometheus_rules_cannot_express_are_refused_with_the_reason(
    changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(UnsupportedSlo, match=reason.replace("{", r"\{").replace("}", r"\}")):
        generate(slo(**changes))


def period_rule(groups: list[RuleGroup]) -> RecordingRule:
    (found,) = [r for r in rules(groups, RecordingRule) if r.record == "slo:sli_error:ratio_rate30d"]
    return found


def test_slice_budgets_count_slices_over_the_period_and_occurrences_keep_sloths_mean() -> None:
    minute, five = timedelta(minutes=1), timedelta(minutes=5)
    selector = '{sloth_id="shop-requests", sloth_service="shop", sloth_slo="requests"}'
    sliced = generate(slo(budgeting=Timeslices(slice_window=minute, slice_target=0.95)))
    assert period_rule(sliced).expr == (
        f"avg_over_time(((slo:sli_error:ratio_rate1m{selector} >= 0) > bool 0.050000000000000044)[30d:1m])\n"
    )
    # The slice window is recorded too when it is not an alert window, with the SLI's query at that range.
    (one_minute,) = [r for r in rules(sliced, RecordingRule) if r.record == "slo:sli_error:ratio_rate1m"]
    assert "[1m]" in one_minute.expr
    assert one_minute.labels["sloth_window"] == "1m"
    averaged = generate(slo(budgeting=RatioTimeslices(slice_window=five)))
    assert period_rule(averaged).expr == f"avg_over_time((slo:sli_error:ratio_rate5m{selector} >= 0)[30d:5m])\n"
    assert len(rules(averaged, RecordingRule)) == len(rules(generate(slo()), RecordingRule))  # 5m was recorded
    assert period_rule(generate(slo())).expr.startswith(f"sum_over_time(slo:sli_error:ratio_rate5m{selector}[30d])")


def test_a_calendar_month_gets_the_30_day_windows_and_alerts_and_no_period_ratio() -> None:
    monthly = generate(slo(window=CalendarWindow(unit=CalendarUnit.MONTH, time_zone="Europe/Berlin")))
    rolling = generate(slo())
    records = [r.record for r in rules(monthly, RecordingRule)]
    assert "slo:sli_error:ratio_rate30d" not in records  # no fixed range: the engine asks since the period's start
    assert "slo:period_burn_rate:ratio" not in records
    assert "slo:period_error_budget_remaining:ratio" not in records
    windows = [r.record for r in rules(rolling, RecordingRule) if r.record.startswith("slo:sli_error:")]
    assert [r for r in records if r.startswith("slo:sli_error:")] == windows[:-1]  # the same windows, bar the period
    assert rules(monthly, AlertingRule) == rules(rolling, AlertingRule)  # the 30-day table's factors


def test_alert_windows_list_every_window_once_shortest_first() -> None:
    windows = WindowCatalogue.builtin().for_period(DAYS_30)
    assert isinstance(windows, AlertWindows)
    minutes = [int(w / timedelta(minutes=1)) for w in windows.windows()]
    assert minutes == [5, 30, 60, 120, 360, 1440, 4320]
