"""The live evaluator's core: burn per window, multi-window tiers, budget, time to exhaustion, and transitions told
once with ids that repeat for the same transition; and the calendar periods budgets are counted over."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from pydantic import ValidationError

from ballast.events.contracts.slo import (
    BudgetCause,
    BudgetExhausted,
    BurnAlert,
    BurnTier,
    CauseConsumption,
    SloEvent,
)
from ballast.slo import (
    Alerting,
    AlertTier,
    CalendarUnit,
    CalendarWindow,
    ErrorBudgetPolicy,
    EventRatioSli,
    RollingWindow,
    ServiceLevelObjective,
    workbook_windows,
)
from ballast.slo.durations import parse_duration
from ballast.slo.evaluation import (
    BudgetState,
    CauseSpan,
    Counts,
    Evaluation,
    Measurement,
    evaluate,
    evaluate_planned,
    plan,
)
from ballast.slo.periods import Period, period_at

DAYS_30 = timedelta(days=30)
WINDOWS = workbook_windows(DAYS_30)
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


def objective(**changes: object) -> ServiceLevelObjective:
    fields: dict[str, object] = {
        "service": "shop",
        "name": "availability",
        "objective": 99.9,
        "window": RollingWindow(length=DAYS_30),
        "sli": EventRatioSli(error_query="e[{{.window}}]", total_query="t[{{.window}}]"),
        "alerting": Alerting(name="ShopErrors", page=AlertTier(), ticket=AlertTier()),
    }
    return ServiceLevelObjective.model_validate(fields | changes)


SLO = objective()


def measured(at: datetime, ratio: float = 0.0, period: float = 0.0, **by_window: float) -> Measurement:
    """Every window at `ratio` but those named (`m5=0.1`, `h1=…`, `h6`, `m30`, `h2`, `d1`, `d3`)."""
    names = {"m5": "5m", "m30": "30m", "h1": "1h", "h2": "2h", "h6": "6h", "d1": "1d", "d3": "3d"}
    ratios = {w: ratio for w in WINDOWS.windows()}
    ratios |= {parse_duration(names[key]): value for key, value in by_window.items()}
    return Measurement(at=at, windows=ratios, period=period)


def run(measurement: Measurement, previous: BudgetState | None = None, slo: ServiceLevelObjective = SLO) -> Evaluation:
    return evaluate(slo, "shop-ns", "local", WINDOWS, measurement, previous)


def events(evaluation: Evaluation) -> list[tuple[SloEvent, str]]:
    return [(t.event, t.id) for t in evaluation.transitions]


def test_a_state_is_stored_with_its_burn_rates_by_window_and_one_stored_as_a_list_before_reads_the_same() -> None:
    state = run(measured(T0, 0.1, period=0.0005)).state
    stored = orjson.loads(state.model_dump_json())
    assert list(stored["burn_rates"]) == ["PT5M", "PT30M", "PT1H", "PT2H", "PT6H", "P1D", "P3D"]
    assert BudgetState.model_validate_json(state.model_dump_json()) == state
    as_before = stored | {"burn_rates": [{"window": w, "burn_rate": r} for w, r in stored["burn_rates"].items()]}
    assert BudgetState.model_validate(as_before) == state
    with pytest.raises(ValidationError, match="a burn rate is"):
        BudgetState.model_validate(stored | {"burn_rates": [{"window": "PT5M"}]})


def test_ten_percent_errors_fire_both_tiers_with_their_burn_rates() -> None:
    result = run(measured(T0, 0.1, period=0.0005))
    stamp = T0.isoformat()
    assert events(result) == [
        (SloEvent.PAGE_BURN_FIRING, f"shop-ns/availability:page:firing:{stamp}"),
        (SloEvent.TICKET_BURN_FIRING, f"shop-ns/availability:ticket:firing:{stamp}"),
    ]
    page = result.transitions[0].payload
    assert isinstance(page, BurnAlert)
    assert [(w.factor, round(w.short_burn_rate), round(w.long_burn_rate)) for w in page.windows] == [
        (14.4, 100, 100),
        (6, 100, 100),
    ]
    assert page.budget_remaining == pytest.approx(0.5)
    # half the budget left at 100x: 0.5 x 720 h / 100 = 3.6 h
    assert page.time_to_exhaustion == pytest.approx(timedelta(hours=3.6), abs=timedelta(seconds=1))
    state = result.state
    assert state.firing == {BurnTier.PAGE: T0, BurnTier.TICKET: T0}
    assert [round(rate) for rate in state.burn_rates.values()] == [100] * 7
    assert list(state.burn_rates) == sorted(state.burn_rates)  # shortest window first, as the status lists them
    assert state.status().firing == (BurnTier.PAGE, BurnTier.TICKET)


def test_a_tier_needs_both_its_windows_above_the_factor() -> None:
    # A burst that ended: the 1h window still burns at 20x (> 14.4) but the 5m window is clean.
    ended = run(measured(T0, 0.0, h1=0.02))
    assert ended.state.firing == {}
    # A fresh burst: the 5m window burns at 50x but the 1h window only at 10x.
    fresh = run(measured(T0, 0.0, m5=0.05, h1=0.01))
    assert fresh.state.firing == {}
    # Both above: the page's quick condition holds.
    assert run(measured(T0, 0.0, m5=0.0145, h1=0.0145)).state.firing == {BurnTier.PAGE: T0}


def test_an_error_ratio_of_exactly_the_budget_fires_the_ticket_as_sloths_rules_do() -> None:
    # Sloth's budget for 99.9 is 0.0009999999999999432, so 0.001 is above 1 x budget (notes/slo.md §1.3).
    result = run(measured(T0, 0.0, h6=0.001, d3=0.001))
    assert result.state.firing == {BurnTier.TICKET: T0}
    assert run(measured(T0, 0.0, h6=0.00099, d3=0.00099)).state.firing == {}


def test_a_transition_is_told_once_and_the_same_measurement_again_tells_nothing() -> None:
    first = run(measured(T0, 0.1))
    still = run(measured(T0 + MINUTE, 0.1), first.state)
    assert still.transitions == ()
    assert still.state.firing == {BurnTier.PAGE: T0, BurnTier.TICKET: T0}  # firing since the first

    cleared_at = T0 + 2 * MINUTE
    cleared = run(measured(cleared_at, 0.0), still.state)
    assert events(cleared) == [
        (SloEvent.PAGE_BURN_RESOLVED, f"shop-ns/availability:page:resolved:{cleared_at.isoformat()}"),
        (SloEvent.TICKET_BURN_RESOLVED, f"shop-ns/availability:ticket:resolved:{cleared_at.isoformat()}"),
    ]
    assert cleared.state.firing == {}
    # Replayed (a redelivery, or a restart from a state already past it): nothing new, the state stands.
    for replayed in (run(measured(cleared_at, 0.1), cleared.state), run(measured(T0, 0.1), cleared.state)):
        assert replayed.figures is None
        assert replayed.transitions == ()
        assert replayed.state is cleared.state
    # Without the stored state the same transition gets the same id, which the bus keeps once.
    assert events(run(measured(T0, 0.1))) == events(first)


def test_the_budget_is_exhausted_and_recovers_once_each() -> None:
    spent = run(measured(T0, period=0.0011))
    assert events(spent) == [(SloEvent.BUDGET_EXHAUSTED, f"shop-ns/availability:budget_exhausted:{T0.isoformat()}")]
    assert spent.state.budget_remaining == pytest.approx(-0.1)
    assert spent.state.status().budget_exhausted
    assert spent.state.time_to_exhaustion is None  # nothing left to last

    later = run(measured(T0 + MINUTE, period=0.0012), spent.state)
    assert later.transitions == ()
    assert later.state.exhausted_since == T0

    back_at = T0 + 2 * MINUTE
    back = run(measured(back_at, period=0.0009), later.state)
    assert events(back) == [(SloEvent.BUDGET_RECOVERED, f"shop-ns/availability:budget_recovered:{back_at.isoformat()}")]
    assert back.state.exhausted_since is None


def test_the_policys_freeze_level_counts_as_exhausted() -> None:
    slo = objective(policy=ErrorBudgetPolicy(freeze_deploys_below_percent=25))
    result = run(measured(T0, period=0.0008), slo=slo)  # 20 % left
    (transition,) = result.transitions
    assert isinstance(transition.payload, BudgetExhausted)
    assert (transition.payload.threshold, transition.payload.freeze_deploys) == (0.25, True)
    assert run(measured(T0, period=0.0007), slo=slo).transitions == ()  # 30 % left


def test_time_to_exhaustion_follows_the_one_hour_burn() -> None:
    # 60 % left, burning 2x over the last hour: 0.6 x 30 d / 2 = 9 d.
    state = run(measured(T0, 0.0, period=0.0004, h1=0.002)).state
    assert state.time_to_exhaustion == pytest.approx(timedelta(days=9), abs=timedelta(seconds=1))
    assert run(measured(T0, 0.0, period=0.0004)).state.time_to_exhaustion is None  # nothing burns


def test_below_the_minimum_request_rate_no_tier_fires() -> None:
    slo = objective(min_request_rate=1.0)
    busy = run(Measurement(at=T0, windows=dict.fromkeys(WINDOWS.windows(), 0.1), period=0, request_rate=5), slo=slo)
    assert set(busy.state.firing) == {BurnTier.PAGE, BurnTier.TICKET}
    quiet_at = T0 + MINUTE
    quiet = Measurement(at=quiet_at, windows=dict.fromkeys(WINDOWS.windows(), 0.1), period=0, request_rate=0.2)
    assert [t.event for t in run(quiet, busy.state, slo=slo).transitions] == [
        SloEvent.PAGE_BURN_RESOLVED,
        SloEvent.TICKET_BURN_RESOLVED,
    ]


def test_the_minimum_request_rate_is_checked_over_each_conditions_long_window_as_the_alerts_do() -> None:
    slo = objective(min_request_rate=1.0)
    hot = dict.fromkeys(WINDOWS.windows(), 0.1)
    hour, six_hours, day, three_days = (parse_duration(w) for w in ("1h", "6h", "1d", "3d"))
    # Busy over the last hour only (a service that just woke up): the page's quick condition (5m/1h) holds, the
    # others' long windows (6h, 1d, 3d) saw too few requests to count.
    woke = {hour: 3.0, six_hours: 0.5, day: 0.2, three_days: 0.1}
    evaluation = run(Measurement(at=T0, windows=hot, period=0, request_rates=woke), slo=slo)
    assert set(evaluation.state.firing) == {BurnTier.PAGE}
    page = next(t.payload for t in evaluation.transitions if t.event is SloEvent.PAGE_BURN_FIRING)
    assert isinstance(page, BurnAlert)
    assert page.windows[0].long_burn_rate == pytest.approx(100)
    # A window without a rate recorded had no requests; without a minimum the rates do not matter.
    assert run(Measurement(at=T0, windows=hot, period=0, request_rates={}), slo=slo).state.firing == {}
    assert set(run(Measurement(at=T0, windows=hot, period=0, request_rates={}), slo=SLO).state.firing) == {
        BurnTier.PAGE,
        BurnTier.TICKET,
    }


def spent(at: datetime, budget_spent: float, *causes: CauseSpan) -> Measurement:
    """A PromQL SLI's measurement: `budget_spent` of the 0.1 % budget consumed over the period, nothing burning now."""
    return Measurement(at=at, windows=dict.fromkeys(WINDOWS.windows(), 0.0), period=budget_spent * 0.001, causes=causes)


def consumption(evaluation: Evaluation) -> dict[BudgetCause, tuple[float, tuple[str, ...]]]:
    return {part.cause: (round(part.budget_consumed, 9), part.refs) for part in evaluation.state.consumption}


def test_budget_consumed_between_evaluations_goes_to_the_causes_that_overlapped_them() -> None:
    run_span = CauseSpan(cause=BudgetCause.CHAOS, ref="run-1", start=T0 + MINUTE, end=T0 + 3 * MINUTE)
    incident = CauseSpan(cause=BudgetCause.INCIDENT, ref="inc-7", start=T0 + 90 * SECOND, end=T0 + 3 * MINUTE)
    first = run(spent(T0, 0.1, run_span))
    assert consumption(first) == {BudgetCause.UNATTRIBUTED: (0.1, ())}  # before the engine watched: no telling when
    during = run(spent(T0 + 2 * MINUTE, 0.3, run_span, incident), first.state)
    assert consumption(during) == {
        BudgetCause.CHAOS: (0.2, ("run-1",)),
        BudgetCause.INCIDENT: (0.2, ("inc-7",)),  # overlapping causes count it each, as for availability SLIs
        BudgetCause.UNATTRIBUTED: (0.1, ()),
    }
    after = run(spent(T0 + 4 * MINUTE, 0.35, run_span, incident), during.state)
    assert consumption(after)[BudgetCause.CHAOS] == (0.25, ("run-1",))  # the cycle 2m..4m still overlapped it
    later = run(spent(T0 + 6 * MINUTE, 0.45, run_span, incident), after.state)
    assert consumption(later) == consumption(after) | {BudgetCause.UNATTRIBUTED: (0.2, ())}
    assert [t.event for t in later.transitions] == []
    # Budget given back (errors leaving the rolling period) is taken from every cause in proportion.
    back = run(spent(T0 + 8 * MINUTE, 0.225, run_span, incident), later.state)
    assert consumption(back) == {
        BudgetCause.CHAOS: (0.125, ("run-1",)),
        BudgetCause.INCIDENT: (0.125, ("inc-7",)),
        BudgetCause.UNATTRIBUTED: (0.1, ()),
    }
    assert back.state.status().consumption == back.state.consumption


def test_a_promql_slo_excluding_chaos_burn_gets_back_what_chaos_runs_consumed() -> None:
    excluding = objective(policy=ErrorBudgetPolicy(exclude_chaos_burn=True))
    run_span = CauseSpan(cause=BudgetCause.CHAOS, ref="run-1", start=T0 + MINUTE, end=T0 + 3 * MINUTE)
    first = run(spent(T0, 0.1, run_span), slo=excluding)
    assert first.state.budget_remaining == pytest.approx(0.9)
    during = run(spent(T0 + 2 * MINUTE, 0.4, run_span), first.state, slo=excluding)
    chaos = during.state.consumption[0]
    assert (chaos.cause, chaos.excluded) == (BudgetCause.CHAOS, True)
    assert chaos.budget_consumed == pytest.approx(0.3)
    assert during.state.budget_remaining == pytest.approx(0.9)  # the run's 0.3 given back
    assert during.state.burn_rates  # the alert windows still burn on what Prometheus saw
    # Later errors outside the run count; the run's share stays out, and shrinks as errors leave the period.
    quiet = run(spent(T0 + 4 * MINUTE, 0.4, run_span), during.state, slo=excluding)
    after = run(spent(T0 + 6 * MINUTE, 0.5, run_span), quiet.state, slo=excluding)
    assert after.state.budget_remaining == pytest.approx(0.8)
    back = run(spent(T0 + 8 * MINUTE, 0.25, run_span), after.state, slo=excluding)
    assert consumption(back)[BudgetCause.CHAOS][0] == pytest.approx(0.15)
    assert back.state.budget_remaining == pytest.approx(0.9)
    # Not excluding, the same figures: the run's burn is the budget's.
    counted = run(spent(T0 + 2 * MINUTE, 0.4, run_span), run(spent(T0, 0.1, run_span)).state)
    assert counted.state.budget_remaining == pytest.approx(0.6)
    assert not counted.state.consumption[0].excluded


def test_a_measurement_telling_its_consumption_is_kept_as_told() -> None:
    told = (CauseConsumption(cause=BudgetCause.ROLLOUT, budget_consumed=0.5, refs=("web@2",)),)
    measurement = Measurement(at=T0, windows=dict.fromkeys(WINDOWS.windows(), 0.0), period=0.0005, consumption=told)
    assert run(measurement).state.consumption == told


def test_a_disabled_tier_never_fires() -> None:
    slo = objective(alerting=Alerting(name="ShopErrors", page=AlertTier(), ticket=AlertTier(enabled=False)))
    assert run(measured(T0, 0.1), slo=slo).state.firing == {BurnTier.PAGE: T0}


def test_a_measurement_without_an_alert_window_is_refused_naming_it() -> None:
    partial = Measurement(at=T0, windows={timedelta(minutes=5): 0.0, timedelta(hours=1): 0.0}, period=0)
    with pytest.raises(ValueError, match=r"shop-ns/availability has no error ratio over 30m, 2h, 6h, 1d, 3d"):
        run(partial)


def test_counts_give_ratios_and_bad_input_is_refused() -> None:
    at = Measurement.from_counts(T0, {w: Counts(bad=1, total=4) for w in WINDOWS.windows()}, Counts(bad=0, total=0))
    assert set(at.windows.values()) == {0.25}
    assert at.period == 0.0  # no events, no errors
    with pytest.raises(ValidationError, match=r"bad 5\.0 exceeds total 4\.0"):
        Counts(bad=5, total=4)
    with pytest.raises(ValueError, match=r"the 5m error ratio 1\.5 is not within 0 and 1"):
        Measurement(at=T0, windows={timedelta(minutes=5): 1.5}, period=0)
    with pytest.raises(ValueError, match=r"the period's error ratio -0\.1 is not within 0 and 1"):
        Measurement(at=T0, windows={}, period=-0.1)
    with pytest.raises(ValueError, match="needs a zone"):
        Measurement(at=T0.replace(tzinfo=None), windows={}, period=0)
    with pytest.raises(ValueError, match="request rate -1 is negative"):
        Measurement(at=T0, windows={}, period=0, request_rate=-1)


def test_a_calendar_month_scales_the_factors_with_its_length() -> None:
    slo = objective(window=CalendarWindow(unit=CalendarUnit.MONTH))
    alert = run(measured(T0, 0.1), slo=slo).transitions[0].payload
    assert isinstance(alert, BurnAlert)
    assert alert.period == timedelta(days=31)  # December
    assert alert.windows[0].factor == pytest.approx(14.88)  # 2 % of 744 h in 1 h


def test_a_calendar_month_read_from_its_rules_fires_with_the_rules_factors() -> None:
    """Its rules alert with the 30-day table's fixed factors: the engine's tiers follow them, in every month, while
    the budget stays the month's own."""
    slo = objective(window=CalendarWindow(unit=CalendarUnit.MONTH))
    budget = slo.error_budget
    # 14.6x the budget over 1h and 5m: over the 30-day factor (14.4), under December's own (14.88).
    between = 14.6 * budget

    def at_rules(at: datetime) -> Measurement:
        return replace(measured(at, 0.0, h1=between, m5=between), alert_period=DAYS_30)

    assert run(measured(T0, 0.0, h1=between, m5=between), slo=slo).transitions == ()  # the month's own factor
    fired = run(at_rules(T0), slo=slo)
    (alert,) = [t.payload for t in fired.transitions]
    assert isinstance(alert, BurnAlert)
    assert alert.tier is BurnTier.PAGE
    assert alert.windows[0].factor == pytest.approx(14.4)
    assert alert.period == timedelta(days=31)  # the budget is December's
    february = run(at_rules(datetime(2027, 2, 10, tzinfo=UTC)), slo=slo)
    assert [(t.payload.tier, t.payload.period) for t in february.transitions if isinstance(t.payload, BurnAlert)] == [
        (BurnTier.PAGE, timedelta(days=28))
    ]


def test_one_plan_evaluates_a_calendar_month_as_each_months_own_evaluation_does() -> None:
    slo = objective(window=CalendarWindow(unit=CalendarUnit.MONTH))
    planned = plan(slo, "shop-ns", WINDOWS)
    for at in (T0, datetime(2027, 2, 10, tzinfo=UTC), datetime(2027, 3, 10, tzinfo=UTC)):  # 31, 28, 31 days
        alone, with_plan = run(measured(at, 0.1), slo=slo), evaluate_planned(planned, "local", measured(at, 0.1), None)
        assert with_plan.figures == alone.figures
        assert [t.payload for t in with_plan.transitions] == [t.payload for t in alone.transitions]


def test_a_plan_is_kept_only_for_the_very_objects_it_was_made_of() -> None:
    planned = plan(SLO, "shop-ns", WINDOWS)
    assert planned.fits(SLO, "shop-ns", WINDOWS)
    assert not planned.fits(objective(), "shop-ns", WINDOWS)  # an equal spec, but a new object: a changed one is
    assert not planned.fits(SLO, "other-ns", WINDOWS)
    assert not planned.fits(SLO, "shop-ns", workbook_windows(DAYS_30))


def test_a_hundred_percent_objective_has_no_budget_to_plan_with() -> None:
    with pytest.raises(ValueError, match="no budget to burn"):
        plan(objective(objective=100), "shop-ns", WINDOWS)


@pytest.mark.parametrize(
    "evaluation",
    [
        pytest.param(lambda: run(measured(T0)), id="quiet"),
        pytest.param(lambda: run(measured(T0, 0.1, period=0.002)), id="firing-and-exhausted"),
        pytest.param(
            lambda: run(
                measured(T0, 0.1, period=0.0005), slo=objective(window=CalendarWindow(unit=CalendarUnit.MONTH))
            ),
            id="calendar-month",
        ),
        pytest.param(
            lambda: run(
                Measurement(
                    at=T0,
                    windows={w: 0.01 for w in WINDOWS.windows()},
                    period=0.0004,
                    consumption=(CauseConsumption(cause=BudgetCause.CHAOS, budget_consumed=0.4, refs=("run-1",)),),
                )
            ),
            id="consumption",
        ),
    ],
)
def test_a_state_made_without_validation_is_what_validating_it_gives(evaluation: object) -> None:
    # States are built from the evaluation's own figures without validation (`trusted`): each must be a state that
    # validation accepts as it is, and read back from its JSON (the bucket) equal.
    assert callable(evaluation)
    state = evaluation().state
    assert isinstance(state, BudgetState)
    assert BudgetState.model_validate(state.model_dump()) == state
    assert BudgetState.model_validate_json(state.model_dump_json()) == state
    assert state.model_fields_set == set(BudgetState.model_fields)
    assert state.model_copy(update={"budget_remaining": 0.5}).budget_remaining == 0.5


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("window", "at", "expected"),
    [
        (
            CalendarWindow(unit=CalendarUnit.MONTH, time_zone="Europe/Berlin"),
            datetime(2026, 11, 30, 23, 30, tzinfo=UTC),  # already December in Berlin
            (datetime(2026, 12, 1, tzinfo=BERLIN), datetime(2027, 1, 1, tzinfo=BERLIN)),
        ),
        (
            CalendarWindow(unit=CalendarUnit.WEEK),
            datetime(2026, 12, 3, 9, tzinfo=UTC),  # a Thursday
            (datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC)),
        ),
        (
            CalendarWindow(unit=CalendarUnit.QUARTER),
            datetime(2026, 12, 3, tzinfo=UTC),
            (datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ),
        (
            CalendarWindow(count=2, unit=CalendarUnit.WEEK, start=datetime(2026, 11, 4, tzinfo=UTC)),
            datetime(2026, 12, 3, tzinfo=UTC),
            (datetime(2026, 12, 2, tzinfo=UTC), datetime(2026, 12, 16, tzinfo=UTC)),
        ),
        (
            CalendarWindow(count=6, unit=CalendarUnit.MONTH, start=datetime(2026, 2, 1, tzinfo=UTC)),
            datetime(2026, 12, 3, tzinfo=UTC),
            (datetime(2026, 8, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)),
        ),
        (
            RollingWindow(length=DAYS_30),
            T0,
            (T0 - DAYS_30, T0),
        ),
    ],
    ids=["month-in-zone", "week-from-monday", "quarter", "fortnight-from-start", "half-year-from-start", "rolling"],
)
def test_the_period_an_instant_falls_in(
    window: CalendarWindow | RollingWindow, at: datetime, expected: tuple[datetime, datetime]
) -> None:
    assert period_at(window, at) == Period(*expected)


def test_a_calendar_day_across_a_clock_change_has_its_real_length() -> None:
    window = CalendarWindow(unit=CalendarUnit.DAY, time_zone="Europe/Berlin")
    assert period_at(window, datetime(2026, 3, 29, 12, tzinfo=UTC)).length == timedelta(hours=23)
    with pytest.raises(ValueError, match="has no time zone"):
        period_at(window, datetime(2026, 3, 29, 12))
