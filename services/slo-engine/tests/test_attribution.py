"""Budget attribution (pure): down time during a chaos run, a rollout or an open incident is tagged with it, the rest
is unattributed, and an SLO excluding chaos-caused burn keeps that down time out of its budget but not out of its
alert windows. Chaos and incident windows are merged from events arriving in any order, more than once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ballast.events.contracts.chaos import (
    ChaosTarget,
    ExperimentCompleted,
    ExperimentRef,
    ExperimentStarted,
    FaultKind,
    Verdict,
)
from ballast.events.contracts.incident import IncidentSource, IncidentStatus, IncidentTransition, Severity
from ballast.events.contracts.slo import BudgetCause, CauseConsumption
from ballast.slo import ErrorBudgetPolicy, RollingWindow, ServiceLevelObjective, Timeslices, WebAppAvailabilitySli
from ballast.slo.intervals import intersect, normalise, subtract, total
from ballast.slo_engine.availability import Availability, WebAppRecord
from ballast.slo_engine.causes import CauseWindow, chaos_window, incident_window, merged
from ballast.slo_engine.measure import alert_windows, availability_measurement

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
SETTLE = 5 * MINUTE
LONG_AGO = T0 - 400 * 24 * HOUR


def slo(*, exclude_chaos: bool = False, service: str = "web") -> ServiceLevelObjective:
    return ServiceLevelObjective(
        service=service,
        name="web-availability",
        objective=99.0,  # 1 % of 60 observed minutes: 36 seconds of budget
        window=RollingWindow(length=timedelta(days=30)),
        sli=WebAppAvailabilitySli(namespace="shop", webapp="web"),
        policy=ErrorBudgetPolicy(exclude_chaos_burn=exclude_chaos),
    )


def down_between(start: datetime, end: datetime) -> WebAppRecord:
    """Observed from T0 - 1h; down over [start, end)."""
    record = WebAppRecord(namespace="shop", name="web")
    for at, state in ((T0 - HOUR, Availability.UP), (start, Availability.DOWN), (end, Availability.UP)):
        record = record.observe(at, state, LONG_AGO)
    return record


def chaos(start: datetime, end: datetime | None, *, webapp: str | None = "web", namespace: str = "shop") -> CauseWindow:
    return CauseWindow(cause=BudgetCause.CHAOS, ref="run-1", namespace=namespace, webapp=webapp, start=start, end=end)


def by_cause(consumption: tuple[CauseConsumption, ...]) -> dict[BudgetCause, CauseConsumption]:
    return {part.cause: part for part in consumption}


def test_intervals_merge_intersect_and_subtract() -> None:
    a = [(T0, T0 + 10 * MINUTE), (T0 + 5 * MINUTE, T0 + 20 * MINUTE), (T0 + HOUR, T0 + HOUR)]
    assert normalise(a) == [(T0, T0 + 20 * MINUTE)]
    b = [(T0 + 15 * MINUTE, T0 + 30 * MINUTE)]
    assert intersect(a, b) == [(T0 + 15 * MINUTE, T0 + 20 * MINUTE)]
    assert subtract(a, b) == [(T0, T0 + 15 * MINUTE)]
    assert total(subtract(b, a)) == 10 * MINUTE


def test_down_time_during_a_chaos_run_is_tagged_with_it_and_the_rest_is_unattributed() -> None:
    record = down_between(T0 - 30 * MINUTE, T0 - 20 * MINUTE)  # 10 minutes down of 60 observed
    run = chaos(T0 - 25 * MINUTE, T0 - 15 * MINUTE)  # overlaps the last 5 minutes of it
    measured = availability_measurement(slo(), "shop", record, [run], alert_windows(slo(), T0), T0, SETTLE)
    parts = by_cause(measured.consumption)
    budget_minutes = 60 * 0.01
    assert parts[BudgetCause.CHAOS].budget_consumed == pytest.approx(5 / budget_minutes)
    assert parts[BudgetCause.CHAOS].refs == ("run-1",)
    assert not parts[BudgetCause.CHAOS].excluded
    assert parts[BudgetCause.UNATTRIBUTED].budget_consumed == pytest.approx(5 / budget_minutes)
    assert measured.period == pytest.approx(10 / 60)  # all of it counts


def test_an_slo_excluding_chaos_burn_keeps_it_out_of_the_budget_but_not_out_of_its_alert_windows() -> None:
    record = down_between(T0 - 30 * MINUTE, T0 - 20 * MINUTE)
    run = chaos(T0 - 25 * MINUTE, T0 - 15 * MINUTE)
    excluding = slo(exclude_chaos=True)
    measured = availability_measurement(excluding, "shop", record, [run], alert_windows(excluding, T0), T0, SETTLE)
    assert measured.period == pytest.approx(5 / 60)  # only the 5 minutes outside the run
    assert by_cause(measured.consumption)[BudgetCause.CHAOS].excluded
    assert measured.windows[HOUR] == pytest.approx(10 / 60)  # the burn the page tier sees is the real one


def test_a_timeslices_budget_counts_bad_minutes_and_shares_each_among_its_causes() -> None:
    # Down from 30.5 to 20 minutes before T0, of 60 observed: half a minute and nine whole ones, ten bad minutes of
    # sixty (Occurrences would count 9.5 minutes of down time).
    record = down_between(T0 - 30 * MINUTE + 30 * SECOND, T0 - 20 * MINUTE)
    run = chaos(T0 - 30 * MINUTE + 45 * SECOND, T0 - 25 * MINUTE)  # a quarter of the first minute, then five more
    sliced = slo().model_copy(update={"budgeting": Timeslices(slice_window=MINUTE, slice_target=0.99)})
    measured = availability_measurement(sliced, "shop", record, [run], alert_windows(sliced, T0), T0, SETTLE)
    assert measured.period == pytest.approx(10 / 60)
    parts = by_cause(measured.consumption)
    budget_slices = 60 * 0.01
    # The first minute's down time was half during the run: half its cost is the run's.
    assert parts[BudgetCause.CHAOS].budget_consumed == pytest.approx(4.5 / budget_slices)
    assert parts[BudgetCause.UNATTRIBUTED].budget_consumed == pytest.approx(5.5 / budget_slices)
    assert measured.windows[HOUR] == pytest.approx(9.5 / 60)  # the alert windows burn on the error ratio itself

    excluding = sliced.model_copy(update={"policy": ErrorBudgetPolicy(exclude_chaos_burn=True)})
    measured = availability_measurement(excluding, "shop", record, [run], alert_windows(excluding, T0), T0, SETTLE)
    assert measured.period == pytest.approx(6 / 60)  # the first minute still a quarter down: still bad at 99 %
    assert by_cause(measured.consumption)[BudgetCause.CHAOS].excluded


def test_chaos_elsewhere_is_not_this_slos_and_a_selector_run_is_its_whole_namespaces() -> None:
    record = down_between(T0 - 30 * MINUTE, T0 - 20 * MINUTE)
    windows = alert_windows(slo(), T0)
    other_app = chaos(T0 - HOUR, None, webapp="cart")
    other_namespace = chaos(T0 - HOUR, None, namespace="cart")
    measured = availability_measurement(slo(), "shop", record, [other_app, other_namespace], windows, T0, SETTLE)
    assert set(by_cause(measured.consumption)) == {BudgetCause.UNATTRIBUTED}
    selector = chaos(T0 - HOUR, None, webapp=None)  # still running: counts up to now
    measured = availability_measurement(slo(), "shop", record, [selector], windows, T0, SETTLE)
    assert set(by_cause(measured.consumption)) == {BudgetCause.CHAOS}


def test_a_rollout_lasts_until_the_webapp_is_up_again_after_settling() -> None:
    record = down_between(T0 - 30 * MINUTE, T0 - 20 * MINUTE).rolled_out(7, T0 - 32 * MINUTE, LONG_AGO)
    measured = availability_measurement(slo(), "shop", record, [], alert_windows(slo(), T0), T0, SETTLE)
    rollout = by_cause(measured.consumption)[BudgetCause.ROLLOUT]
    assert rollout.refs == ("web@7",)
    assert rollout.budget_consumed == pytest.approx(10 / (60 * 0.01))  # the whole outage fell in it
    assert BudgetCause.UNATTRIBUTED not in by_cause(measured.consumption)


def test_an_open_incident_of_the_service_tags_what_burns_while_it_is_open() -> None:
    record = down_between(T0 - 30 * MINUTE, T0 - 20 * MINUTE)
    incident = CauseWindow(
        cause=BudgetCause.INCIDENT, ref="INC-1", namespace="shop", service="web", start=T0 - 22 * MINUTE
    )
    other_service = incident.model_copy(update={"service": "cart", "ref": "INC-2"})
    windows = alert_windows(slo(), T0)
    parts = by_cause(
        availability_measurement(slo(), "shop", record, [incident, other_service], windows, T0, SETTLE).consumption
    )
    assert parts[BudgetCause.INCIDENT].refs == ("INC-1",)
    assert parts[BudgetCause.INCIDENT].budget_consumed == pytest.approx(2 / (60 * 0.01))


def run_fact(
    kind: type[ExperimentStarted] | type[ExperimentCompleted], at: datetime
) -> ExperimentStarted | ExperimentCompleted:
    common: dict[str, Any] = {
        "cluster": "local",
        "experiment": ExperimentRef(namespace="shop", name="kill-pods"),
        "run_id": "uid-1:2026-12-01T12:00:00Z",
        "target": ChaosTarget(namespace="shop", webapp="web"),
        "fault": FaultKind.POD_DELETE,
        "at": at,
    }
    if kind is ExperimentStarted:
        return ExperimentStarted(**common)
    return ExperimentCompleted(**common, verdict=Verdict.PASS, injections=1, budget_consumed=0.01)


def test_a_chaos_window_is_the_same_whatever_order_its_events_arrive_in_and_however_often() -> None:
    key, started = chaos_window(run_fact(ExperimentStarted, T0))
    same_key, completed = chaos_window(run_fact(ExperimentCompleted, T0 + 10 * MINUTE))
    assert key == same_key
    assert key.startswith("cause.chaos.shop.")
    forwards = merged(merged(None, started), completed)
    backwards = merged(merged(merged(None, completed), started), completed)
    assert forwards == backwards
    assert forwards.interval(T0 + HOUR) == (T0, T0 + 10 * MINUTE)
    assert merged(None, started).interval(T0 + HOUR) == (T0, T0 + HOUR)  # still running


def incident_fact(status: IncidentStatus, at: datetime) -> IncidentTransition:
    times: dict[str, Any] = {"opened_at": T0}
    if status is IncidentStatus.MITIGATED:
        times["mitigated_at"] = at
    return IncidentTransition(
        cluster="local",
        incident_id="INC-1",
        service="web",
        namespace="shop",
        severity=Severity.HIGH,
        title="web down",
        status=status,
        source=IncidentSource.SLO,
        fingerprint="shop/web",
        **times,
    )


def test_an_incident_ends_when_mitigated_and_an_old_transition_arriving_late_does_not_reopen_it() -> None:
    _, opened = incident_window(incident_fact(IncidentStatus.OPEN, T0))
    _, mitigated = incident_window(incident_fact(IncidentStatus.MITIGATED, T0 + 20 * MINUTE))
    window = merged(merged(None, opened), mitigated)
    assert window.interval(T0 + HOUR) == (T0, T0 + 20 * MINUTE)
    assert merged(window, opened) == window  # the redelivered opening is older than what is stored
