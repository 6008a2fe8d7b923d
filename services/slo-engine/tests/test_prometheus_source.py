"""The Prometheus reader's readings into measurements: every window and the period needed, an idle window counts as
no errors, a NaN period is not guessed at (the SLO keeps its last state), and one query per window covers all SLOs.
The reading against a real Prometheus is in test_prometheus_live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ballast.slo import workbook_windows
from ballast.slo_engine.prometheus_source import (
    Readings,
    SeriesSlo,
    _ratio,
    requests_query,
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
    measured = Readings(AT, {SHOP: full}).measurement(SHOP, WINDOWS)
    assert measured is not None
    assert measured.at == AT
    assert measured.windows[timedelta(minutes=5)] == 0.002
    assert measured.period == 0.0005

    missing = {w: r for w, r in full.items() if w != timedelta(days=3)}
    assert Readings(AT, {SHOP: missing}).measurement(SHOP, WINDOWS) is None  # rules not loaded (yet)
    assert Readings(AT, {}).measurement(SHOP, WINDOWS) is None

    idle = full | {timedelta(minutes=5): None}
    quiet = Readings(AT, {SHOP: idle}).measurement(SHOP, WINDOWS)
    assert quiet is not None
    assert quiet.windows[timedelta(minutes=5)] == 0.0  # no requests, no errors
    assert Readings(AT, {SHOP: full | {WINDOWS.period: None}}).measurement(SHOP, WINDOWS) is None


def test_sample_values_become_ratios() -> None:
    assert _ratio("0.25") == 0.25
    assert _ratio("NaN") is None
    assert _ratio("1.0000001") == 1.0  # a raw-ratio query's overshoot
    assert _ratio("-0") == 0.0


def test_an_slo_with_a_minimum_gets_its_request_rates_and_causes_others_none() -> None:
    full: dict[timedelta, float | None] = {window: 0.002 for window in (*WINDOWS.windows(), WINDOWS.period)}
    hour = timedelta(hours=1)
    readings = Readings(AT, {SHOP: full}, {SHOP: {hour: 4.5}})
    rated = readings.measurement(SHOP, WINDOWS, rated=True, causes=())
    assert rated is not None
    assert rated.request_rates == {hour: 4.5}  # the windows without a series had no requests
    assert rated.causes == ()
    plain = readings.measurement(SHOP, WINDOWS)
    assert plain is not None
    assert (plain.request_rates, plain.causes) == (None, None)
    assert sorted(requests_query(w) for w in gated_windows(WINDOWS)) == [
        f"max by (namespace, sloth_service, sloth_slo) (ballast:slo_requests:rate{w})" for w in ("1d", "1h", "3d", "6h")
    ]
