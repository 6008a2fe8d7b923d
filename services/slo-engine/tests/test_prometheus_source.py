"""The Prometheus reader's readings into measurements: every window and the period needed, an idle window counts as
no errors, a NaN period is not guessed at (the SLO keeps its last state), one query per window covers all SLOs, and a
calendar period is asked since its start.
The reading against a real Prometheus is in test_prometheus_live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ballast.slo import CalendarUnit, CalendarWindow, EventRatioSli, ServiceLevelObjective, workbook_windows
from ballast.slo_engine.prometheus_source import (
    SERIES_LABEL,
    Readings,
    SeriesSlo,
    _rates,
    _ratios,
    period_query,
    requests_query,
    sli_query,
    sli_record,
    windows_to_read,
)
from ballast.slo_engine.request_rates import gated_windows

WINDOWS = workbook_windows(timedelta(days=30))
AT = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
SHOP = SeriesSlo("shop", "web", "availability")


def test_one_query_per_distinct_window_of_all_tables() -> None:
    tables = [WINDOWS, workbook_windows(timedelta(days=28))]
    read = windows_to_read(tables)
    assert sorted(sli_record(w) for w in read) == sorted(
        [
            *(f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")),
            "slo:sli_error:ratio_rate30d",
            "slo:sli_error:ratio_rate4w",
        ]
    )


def test_a_measurement_needs_every_window_and_a_known_period() -> None:
    full: dict[timedelta, float | None] = {window: 0.002 for window in WINDOWS.windows()}
    full[WINDOWS.period] = 0.0005
    measured = Readings.of_slos(AT, {SHOP: full}).measurement(SHOP, WINDOWS)
    assert measured is not None
    assert measured.at == AT
    assert measured.windows[timedelta(minutes=5)] == 0.002
    assert measured.period == 0.0005

    missing = {w: r for w, r in full.items() if w != timedelta(days=3)}
    assert Readings.of_slos(AT, {SHOP: missing}).measurement(SHOP, WINDOWS) is None  # rules not loaded (yet)
    assert Readings.of_slos(AT, {}).measurement(SHOP, WINDOWS) is None

    idle = full | {timedelta(minutes=5): None}
    quiet = Readings.of_slos(AT, {SHOP: idle}).measurement(SHOP, WINDOWS)
    assert quiet is not None
    assert quiet.windows[timedelta(minutes=5)] == 0.0  # no requests, no errors
    assert Readings.of_slos(AT, {SHOP: full | {WINDOWS.period: None}}).measurement(SHOP, WINDOWS) is None


def sample(series: str | None, value: str) -> dict[str, Any]:
    return {"metric": {} if series is None else {SERIES_LABEL: series}, "value": [1764600000.0, value]}


def test_an_answer_becomes_each_slos_ratio() -> None:
    answer = [
        sample("shop/web/availability", "0.25"),
        sample("shop/web/idle", "NaN"),
        sample("shop/web/raw", "1.0000001"),  # a raw-ratio query's overshoot
        sample("shop/web/zero", "-0"),
        sample(None, "0.5"),  # not joined: no SLO's series
    ]
    assert _ratios(answer) == {
        "shop/web/availability": 0.25,
        "shop/web/idle": None,
        "shop/web/raw": 1.0,
        "shop/web/zero": 0.0,
    }
    assert _rates([sample("shop/web/a", "4.5"), sample("shop/web/b", "NaN")]) == {"shop/web/a": 4.5}


def test_the_joined_series_label_names_the_slo_both_ways() -> None:
    assert SHOP.joined == "shop/web/availability"
    assert SeriesSlo.parse(SHOP.joined) == SHOP
    assert SeriesSlo.parse("shop/team/web/availability") == SeriesSlo("shop", "team/web", "availability")
    assert SeriesSlo.parse("/web/availability") == SeriesSlo("", "web", "availability")  # rules from spec files
    assert sli_query(timedelta(minutes=5)) == (
        'max by (ballast_slo_series) (label_join(slo:sli_error:ratio_rate5m, "ballast_slo_series", "/", '
        '"namespace", "sloth_service", "sloth_slo"))'
    )
    readings = Readings.of_slos(AT, {SHOP: {timedelta(minutes=5): 0.1}}, {SHOP: {timedelta(hours=1): 2.0}})
    assert readings.ratios == {SHOP: {timedelta(minutes=5): 0.1}}
    assert readings.rates == {SHOP: {timedelta(hours=1): 2.0}}


def test_an_slo_with_a_minimum_gets_its_request_rates_and_causes_others_none() -> None:
    full: dict[timedelta, float | None] = {window: 0.002 for window in (*WINDOWS.windows(), WINDOWS.period)}
    hour = timedelta(hours=1)
    readings = Readings.of_slos(AT, {SHOP: full}, {SHOP: {hour: 4.5}})
    rated = readings.measurement(SHOP, WINDOWS, rated=True, causes=())
    assert rated is not None
    assert rated.request_rates == {hour: 4.5}  # the windows without a series had no requests
    assert rated.causes == ()
    plain = readings.measurement(SHOP, WINDOWS)
    assert plain is not None
    assert (plain.request_rates, plain.causes) == (None, None)
    assert sorted(requests_query(w) for w in gated_windows(WINDOWS)) == [
        f'max by (ballast_slo_series) (label_join(ballast:slo_requests:rate{w}, "ballast_slo_series", "/", '
        '"namespace", "sloth_service", "sloth_slo"))'
        for w in ("1d", "1h", "3d", "6h")
    ]


def test_a_calendar_period_is_asked_since_its_start_for_every_slo_of_its_group() -> None:
    monthly = ServiceLevelObjective(
        service="web",
        name="availability",
        objective=99.9,
        window=CalendarWindow(unit=CalendarUnit.MONTH),
        sli=EventRatioSli(error_query="e[{{.window}}]", total_query="t[{{.window}}]"),
    )
    query = period_query(monthly, WINDOWS, ["web.b", "web-a", 'we"b'], timedelta(hours=1, minutes=30))
    # The SLOs' ids as an exact alternation, each RE2 metacharacter escaped, inside a PromQL string.
    assert 'sloth_id=~"we\\"b|web-a|web\\\\.b"' in query
    assert "sum_over_time(slo:sli_error:ratio_rate5m" in query
    assert "[5400s]" in query  # since the period's start
    assert query.startswith(f"max by ({SERIES_LABEL}) (label_join((sum_over_time(")
    # A calendar SLO's ratio comes from the period query's answer, not from a recorded series.
    readings = Readings.of_slos(AT, {SHOP: dict.fromkeys(WINDOWS.windows(), 0.0) | {WINDOWS.period: 0.5}})
    measured = readings.measurement(SHOP, WINDOWS, calendar={SHOP.joined: 0.002})
    assert measured is not None
    assert measured.period == 0.002
    assert measured.alert_period == WINDOWS.period  # its tiers fire with its rules' factors, as Prometheus's alerts
    assert readings.measurement(SHOP, WINDOWS, calendar={}) is None  # not answered: no measurement
    rolling = readings.measurement(SHOP, WINDOWS)
    assert rolling is not None
    assert rolling.alert_period is None
