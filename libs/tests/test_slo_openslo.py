"""OpenSLO: the project's v1 examples load into the model (read from `../shared/conformance/openslo/examples`, or
`$BALLAST_CONFORMANCE/openslo/examples`: see slo_conformance.py); v1 references resolve across files and a missing
one is named; Sloth's openslo/v1alpha reading gives Sloth's SLO names and query.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from slo_conformance import OPENSLO_EXAMPLES, SLOTH, conformance_file

from ballast.slo import (
    CalendarUnit,
    CalendarWindow,
    EventRatioSli,
    Occurrences,
    RatioTimeslices,
    RawErrorRatioSli,
    RollingWindow,
    SpecFormat,
    ThresholdSli,
    Timeslices,
    load_paths,
    load_texts,
)

DAYS_30 = timedelta(days=30)
NEW_YORK = ZoneInfo("America/New_York")


def test_every_openslo_example_loads_as_the_model() -> None:
    examples = sorted(OPENSLO_EXAMPLES.glob("*/*.yaml"))
    assert len(examples) == 4, f"expected the 4 OpenSLO examples under {OPENSLO_EXAMPLES}"
    # each example stands alone (two reuse the name service-availability), so each loads on its own
    loaded = {path.relative_to(OPENSLO_EXAMPLES).as_posix(): load_paths([path], DAYS_30) for path in examples}
    assert {name: result.errors for name, result in loaded.items() if result.errors} == {}
    slos = {name: [s for g in result.groups for s in g.slos] for name, result in loaded.items()}

    (search,) = slos["budgeting-method/occurences-slo.yaml"]
    assert (search.service, search.name, search.objective) == ("web-shop", "search-slo", 99.0)
    assert search.window == RollingWindow(length=timedelta(weeks=2))
    assert search.budgeting == Occurrences()
    assert search.sli == ThresholdSli(query="Any", op="lt", value=500, source="any")

    (main_page,) = slos["budgeting-method/ratio-timeslices.yaml"]
    assert main_page.budgeting == RatioTimeslices(slice_window=timedelta(minutes=1))
    assert main_page.sli == EventRatioSli(good_query="Any", total_query="Any", source="any")

    internal, sla = slos["budgeting-method/timeslices-slo.yaml"]  # a composite: one SLO per objective
    assert (internal.name, internal.objective, sla.name, sla.objective) == (
        "service-availability-0",
        99.5,
        "service-availability-1",
        99.0,
    )
    assert internal.budgeting == Timeslices(slice_window=timedelta(minutes=1), slice_target=0.99)
    # the example writes 1m (a minute) where its comment means a month; OpenSLO's month is 1M
    start = datetime(2022, 1, 1, 12, tzinfo=NEW_YORK)
    assert internal.window == CalendarWindow(unit=CalendarUnit.MINUTE, start=start, time_zone="America/New_York")

    (weekly,) = slos["treat-low-traffic-as-equally-important/timeslices-slo.yaml"]
    assert weekly.window == CalendarWindow(unit=CalendarUnit.WEEK, start=start, time_zone="America/New_York")
    assert (weekly.objective, weekly.budgeting) == (
        99.95,
        Timeslices(slice_window=timedelta(minutes=1), slice_target=0.95),
    )


SERVICE = """
apiVersion: openslo/v1
kind: Service
metadata: {name: shop}
spec: {description: the web shop}
"""

SLI = """
apiVersion: openslo/v1
kind: SLI
metadata: {name: http-errors}
spec:
  ratioMetric:
    counter: true
    bad:
      metricSource: {metricSourceRef: prom, spec: {query: 'sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))'}}
    total: {metricSource: {metricSourceRef: prom, spec: {query: 'sum(rate(http_requests_total[{{.window}}]))'}}}
---
apiVersion: openslo/v1
kind: DataSource
metadata: {name: prom}
spec: {type: Prometheus, connectionDetails: {url: "http://127.0.0.1:9090"}}
---
apiVersion: openslo/v1
kind: AlertCondition
metadata: {name: fast-burn}
spec: {severity: page, condition: {kind: burnrate, op: gt, threshold: 14.4, lookbackWindow: 1h, alertAfter: 5m}}
---
apiVersion: openslo/v1
kind: AlertPolicy
metadata: {name: page-on-fast-burn}
spec:
  alertWhenBreaching: true
  conditions: [{conditionRef: fast-burn}]
"""

SLO = """
apiVersion: openslo/v1
kind: SLO
metadata: {name: checkout}
spec:
  service: shop
  indicatorRef: http-errors
  timeWindow: [{duration: 28d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{targetPercent: 99.5}]
  alertPolicies: [{alertPolicyRef: page-on-fast-burn}]
"""


def test_v1_references_resolve_across_files() -> None:
    loaded = load_texts([("slo.yaml", SLO), ("sli.yaml", SLI), ("service.yaml", SERVICE)], DAYS_30)
    assert loaded.errors == []
    (group,) = loaded.groups
    (slo,) = group.slos
    assert (group.file, group.format, slo.id, slo.objective) == (
        "slo.yaml",
        SpecFormat.OPENSLO_V1,
        "shop-checkout",
        99.5,
    )
    assert slo.window == RollingWindow(length=timedelta(days=28))
    assert slo.sli == EventRatioSli(
        error_query='sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))',
        total_query="sum(rate(http_requests_total[{{.window}}]))",
        source="prometheus",  # from the DataSource the metric source refers to
    )


def test_a_missing_reference_is_named_with_its_field() -> None:
    loaded = load_texts([("slo.yaml", SLO), ("sli.yaml", SLI.replace("name: fast-burn", "name: slow-burn"))], DAYS_30)
    assert [str(e) for e in loaded.errors] == [
        "slo.yaml: document 1: spec.alertPolicies[0].conditions[0].conditionRef: "
        "no AlertCondition named 'fast-burn' was loaded"
    ]


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ("name: checkout", "metadata.name", "should match pattern"),
        ("targetPercent: 99.5", "spec.objectives[0]", "exactly one of target and targetPercent"),
        ("duration: 28d, isRolling: true", "spec.timeWindow[0]", "has no fixed length: use m, h, d or w"),
        ("budgetingMethod: Occurrences", "spec.budgetingMethod", "Input should be 'Occurrences'"),
        ("service: shop", "spec.servce", "Extra inputs are not permitted"),
    ],
)
def test_invalid_v1_documents_name_the_field_and_rule(change: str, field: str, rule: str) -> None:
    broken = {
        "name: checkout": "name: Check Out",
        "targetPercent: 99.5": "targetPercent: 99.5, target: 0.995",
        "duration: 28d, isRolling: true": "duration: 1M, isRolling: true",
        "budgetingMethod: Occurrences": "budgetingMethod: Events",
        "service: shop": "servce: shop",
    }[change]
    loaded = load_texts([("slo.yaml", SLO.replace(change, broken)), ("sli.yaml", SLI)], DAYS_30)
    assert loaded.errors
    assert {(e.file, e.document) for e in loaded.errors} == {("slo.yaml", 1)}
    assert any(e.field == field and rule in e.rule for e in loaded.errors), loaded.errors


def test_sloth_v1alpha_reading_gives_sloths_names_and_raw_query() -> None:
    loaded = load_paths([conformance_file(SLOTH / "validate" / "good" / "good-openslo.yaml")], DAYS_30)
    (group,) = loaded.groups
    (slo,) = group.slos
    assert (group.format, slo.id, slo.name, slo.objective) == (
        SpecFormat.OPENSLO_V1ALPHA,
        "svc01-slo1-0",
        "slo1-0",
        99.9,
    )
    assert not slo.alerting.page.enabled
    assert not slo.alerting.ticket.enabled
    assert isinstance(slo.sli, RawErrorRatioSli)
    assert slo.sli.error_ratio_query.startswith("\n  1 - (\n    (\n      sum(rate(http_request_duration_seconds_count")


def test_calendar_start_keeps_an_explicit_offset() -> None:
    text = SLO.replace(
        "timeWindow: [{duration: 28d, isRolling: true}]",
        "timeWindow: [{duration: 1M, isRolling: false, calendar: {startTime: '2026-01-01T00:00:00Z', timeZone: UTC}}]",
    )
    loaded = load_texts([("slo.yaml", text), ("sli.yaml", SLI)], DAYS_30)
    assert loaded.errors == []
    window = loaded.groups[0].slos[0].window
    assert window == CalendarWindow(unit=CalendarUnit.MONTH, start=datetime(2026, 1, 1, tzinfo=UTC), time_zone="UTC")
