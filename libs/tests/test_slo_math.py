"""Error-budget math and the alert-window table against the SRE Workbook's numbers (ch. 5) and Sloth's factors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ballast.events.contracts.slo import BurnTier
from ballast.slo import AlertWindows, WindowCatalogue, workbook_windows
from ballast.slo.budget import (
    budget_remaining,
    budget_remaining_from_counts,
    budget_spent,
    burn_factor,
    burn_rate,
    detection_time,
    time_to_exhaustion,
)
from ballast.slo.durations import format_duration, parse_duration
from ballast.slo.numbers import go_float

DAYS_30 = timedelta(days=30)
HOUR = timedelta(hours=1)


def factors(windows: AlertWindows) -> list[float]:
    pairs = [windows.tier(tier) for tier in BurnTier]
    return [burn.factor(windows.period) for pair in pairs for burn in (pair.quick, pair.slow)]


def test_burn_factors_are_sloths_to_the_last_digit_for_30d_and_28d() -> None:
    assert factors(workbook_windows(timedelta(days=30))) == [14.4, 6, 3, 1]
    assert factors(workbook_windows(timedelta(days=28))) == [
        13.44,
        5.6000000000000005,
        2.8000000000000003,
        0.9333333333333333,
    ]


def test_the_builtin_catalogue_has_the_30d_and_28d_tables_only() -> None:
    catalogue = WindowCatalogue.builtin()
    assert catalogue.for_period(timedelta(days=28)) == workbook_windows(timedelta(days=28))
    with pytest.raises(ValueError, match=r"no alert windows for a 1w period .*--slo-period-windows-path"):
        catalogue.for_period(timedelta(days=7))


def test_workbook_table_5_8_budget_shares_give_its_burn_rates() -> None:
    # page: 2% of the budget in 1h, 5% in 6h; ticket: 10% in 1d and in 3d
    assert burn_factor(0.02, HOUR, DAYS_30) == pytest.approx(14.4)
    assert burn_factor(0.05, 6 * HOUR, DAYS_30) == pytest.approx(6)
    assert burn_factor(0.10, 24 * HOUR, DAYS_30) == pytest.approx(3)
    assert burn_factor(0.10, 72 * HOUR, DAYS_30) == pytest.approx(1)
    assert budget_spent(14.4, HOUR, DAYS_30) == pytest.approx(0.02)
    # a 1h window at 5% of the budget needs a burn of 36; at 35x nothing alerts yet the budget lasts 20.5h
    assert burn_factor(0.05, HOUR, DAYS_30) == pytest.approx(36)
    spent_in = time_to_exhaustion(1.0, 35, DAYS_30)
    assert spent_in is not None
    assert spent_in.total_seconds() / 3600 == pytest.approx(20.57, abs=0.01)


def test_table_5_4_burn_rates_and_time_to_exhaustion_for_99_9() -> None:
    budget = 0.001  # 99.9%
    for error_ratio, burn, exhausted in [
        (0.001, 1, timedelta(days=30)),
        (0.002, 2, timedelta(days=15)),
        (0.01, 10, timedelta(days=3)),
        (1.0, 1000, timedelta(minutes=43.2)),
    ]:
        assert burn_rate(error_ratio, budget) == pytest.approx(burn)
        assert time_to_exhaustion(1.0, burn, DAYS_30) == exhausted


def test_time_to_exhaustion_counts_only_the_budget_left_and_none_when_nothing_burns_or_is_left() -> None:
    assert time_to_exhaustion(0.5, 2, DAYS_30) == timedelta(days=7.5)
    assert time_to_exhaustion(0.5, 0, DAYS_30) is None
    assert time_to_exhaustion(-0.1, 3, DAYS_30) is None


def test_a_99_999_slo_loses_its_whole_budget_to_a_full_outage_in_26_seconds() -> None:
    burn = burn_rate(1.0, (100 - 99.999) / 100)
    exhausted = time_to_exhaustion(1.0, burn, DAYS_30)
    assert exhausted is not None
    assert exhausted.total_seconds() == pytest.approx(25.92, rel=1e-6)


def test_low_traffic_one_failure_in_ten_requests_an_hour_spends_13_9_percent() -> None:
    burn = burn_rate(1 / 10, 0.001)  # the hour's error ratio is 10%
    assert budget_spent(burn, HOUR, DAYS_30) == pytest.approx(0.139, abs=0.0005)
    # the same from counts: 7200 requests a month allow 7.2 failures
    assert budget_remaining_from_counts(1, 10 * 24 * 30, 0.001) == pytest.approx(1 - 0.139, abs=0.0005)


def test_a_90_percent_slo_full_outage_burns_1_4_percent_an_hour_so_the_2_percent_page_never_fires() -> None:
    assert budget_spent(burn_rate(1.0, 0.1), HOUR, DAYS_30) == pytest.approx(0.0139, abs=0.0001)
    assert detection_time(1.0, 0.1, HOUR, 14.4) is None


def test_window_length_tradeoffs_from_the_workbook() -> None:
    # a 10m window at the SLO's own rate alerts after 0.02% of the budget, up to 144 times a day
    assert budget_spent(1, timedelta(minutes=10), DAYS_30) == pytest.approx(0.00023, abs=0.00001)
    # a 36h window at 5% of the budget detects a full outage in 2m10s
    factor = burn_factor(0.05, timedelta(hours=36), DAYS_30)
    assert detection_time(1.0, 0.001, timedelta(hours=36), factor) == pytest.approx(
        timedelta(seconds=129.6), abs=timedelta(milliseconds=1)
    )
    # `for: 1h` on a full outage lets 140% of the budget go before anyone hears
    assert budget_spent(burn_rate(1.0, 0.001), HOUR, DAYS_30) == pytest.approx(1.39, abs=0.01)


def test_remaining_budget_goes_negative_when_overspent_and_a_100_percent_objective_has_none() -> None:
    assert budget_remaining(0.0005, 0.001) == pytest.approx(0.5)
    assert budget_remaining(0.003, 0.001) == pytest.approx(-2)
    assert budget_remaining_from_counts(0, 0, 0.001) == 1
    with pytest.raises(ValueError, match="100% objective has no budget"):
        burn_rate(0.1, 0.0)


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (30.0, "30"),
        (99.9 / 100, "0.9990000000000001"),
        ((100 - 99.9) / 100, "0.0009999999999999432"),
        ((100 - 99.99) / 100, "0.00010000000000005117"),
        (5.6000000000000005, "5.6000000000000005"),
        (1e6, "1e+06"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
    ],
)
def test_numbers_print_as_go_prints_them(value: float, printed: str) -> None:
    assert go_float(value) == printed


def test_durations_print_as_prometheus_prints_them() -> None:
    assert [format_duration(parse_duration(d)) for d in ("30d", "28d", "7d", "90d", "1h30m", "5m")] == [
        "30d",
        "4w",
        "1w",
        "90d",
        "1h30m",
        "5m",
    ]
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        parse_duration("30 days")
