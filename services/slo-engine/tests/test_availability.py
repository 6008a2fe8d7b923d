"""The WebApp availability SLI from cluster facts: up while ready meets desired, downtime over the observed part of
each window, stale facts dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ballast.events.contracts.common import ObjectRef
from ballast.events.contracts.k8s import ObservedObject
from ballast.slo_engine.availability import AvailabilityHistory, is_available, webapp_of

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def fact(kind: str, replicas: int | None, ready: int | None, owner: str | None = None) -> ObservedObject:
    return ObservedObject(
        cluster="local",
        object=ObjectRef(api_version="v1", kind=kind, namespace="shop", name="web-x" if owner else "web", uid="u"),
        resource_version="1",
        owner=ObjectRef(api_version="platform.example.com/v1", kind="WebApp", namespace="shop", name=owner, uid="w")
        if owner
        else None,
        replicas=replicas,
        ready_replicas=ready,
    )


def test_a_webapp_is_up_while_ready_meets_desired() -> None:
    assert is_available(fact("WebApp", 3, 3))
    assert not is_available(fact("WebApp", 3, 2))
    assert not is_available(fact("WebApp", 1, None))  # nothing ready yet
    assert is_available(fact("WebApp", 0, None))  # scaled to zero: nothing missing
    assert is_available(fact("WebApp", None, None)) is None


def test_facts_name_the_webapp_they_are_about() -> None:
    assert webapp_of(fact("WebApp", 1, 1)) == ("shop", "web")
    assert webapp_of(fact("Deployment", 1, 1, owner="web")) == ("shop", "web")
    assert webapp_of(fact("Deployment", 1, 1)) is None  # not a WebApp's
    assert webapp_of(fact("Pod", None, None, owner="web")) is None


def test_the_error_ratio_is_the_downtime_over_the_observed_window() -> None:
    history = AvailabilityHistory()
    history.observe(T0, True)
    history.observe(T0 + 10 * MINUTE, False)  # down for 6 minutes
    history.observe(T0 + 16 * MINUTE, True)
    now = T0 + HOUR
    assert history.error_ratio(now - HOUR, now) == pytest.approx(0.1)
    assert history.error_ratio(now - 5 * MINUTE, now) == 0.0
    # Before the first fact nothing is known: 6 minutes down of the 60 observed, not of 1440.
    assert history.error_ratio(now - 24 * HOUR, now) == pytest.approx(0.1)
    assert AvailabilityHistory().error_ratio(now - HOUR, now) == 0.0


def test_a_stale_fact_is_dropped_and_a_repeat_changes_nothing() -> None:
    history = AvailabilityHistory()
    history.observe(T0, True)
    history.observe(T0 + MINUTE, False)
    history.observe(T0 + 30 * MINUTE, False)
    history.observe(T0 + 30 * MINUTE - timedelta(seconds=1), True)  # older than the last fact
    assert history.changes == [(T0, True), (T0 + MINUTE, False)]


def test_a_measurement_covers_every_window_and_the_period() -> None:
    history = AvailabilityHistory()
    history.observe(T0, False)
    history.observe(T0 + 30 * MINUTE, True)
    now = T0 + HOUR
    measured = history.measurement([5 * MINUTE, HOUR], period_start=T0 - 24 * HOUR, at=now)
    assert measured.windows == {5 * MINUTE: 0.0, HOUR: 0.5}
    assert measured.period == 0.5  # observed for one hour only
    assert measured.at == now


def test_forgetting_keeps_the_state_that_held_at_the_cutoff() -> None:
    history = AvailabilityHistory()
    history.observe(T0, True)
    history.observe(T0 + MINUTE, False)
    history.observe(T0 + HOUR, True)
    history.forget_before(T0 + 30 * MINUTE)
    assert history.changes == [(T0 + MINUTE, False), (T0 + HOUR, True)]
    assert history.error_ratio(T0 + 30 * MINUTE, T0 + 2 * HOUR) == pytest.approx(1 / 3)  # 30 of 90 minutes down
