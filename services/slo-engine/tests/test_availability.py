"""The WebApp availability SLI from cluster facts: up while ready meets desired, downtime over the observed part of
each window, stale facts dropped, the record bounded, rollouts kept once per generation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from ballast.events.contracts.common import ObjectRef
from ballast.events.contracts.k8s import ObservedObject
from ballast.slo.webapp_availability import webapp_of
from ballast.slo_engine.availability import (
    MAX_CHANGES,
    RECENT_FACTS,
    Availability,
    Fact,
    WebAppRecord,
    availability_of,
)

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


UP, DOWN, UNKNOWN = Availability.UP, Availability.DOWN, Availability.UNKNOWN
LONG_AGO = T0 - 400 * 24 * HOUR


def record(*changes: tuple[datetime, Availability]) -> WebAppRecord:
    built = WebAppRecord(namespace="shop", name="web")
    for at, state in changes:
        built = built.observe(at, state, LONG_AGO)
    return built


def test_a_webapp_is_up_while_ready_meets_desired() -> None:
    assert availability_of(fact("WebApp", 3, 3), "updated") is UP
    assert availability_of(fact("WebApp", 3, 2), "updated") is DOWN
    assert availability_of(fact("WebApp", 1, None), "created") is DOWN  # nothing ready yet
    assert availability_of(fact("WebApp", 0, None), "updated") is UP  # scaled to zero: nothing missing
    assert availability_of(fact("WebApp", None, None), "updated") is None  # autoscaled: the Deployment tells


def test_a_deleted_webapp_is_unknown_from_then_and_a_deleted_deployment_is_down() -> None:
    assert availability_of(fact("WebApp", 3, 3), "deleted") is UNKNOWN
    assert availability_of(fact("Deployment", 3, 3, owner="web"), "deleted") is DOWN
    gone = record((T0, UP), (T0 + 10 * MINUTE, DOWN), (T0 + 20 * MINUTE, UNKNOWN))
    # Unknown time counts neither way: 10 minutes down of the 20 observed.
    assert gone.error_ratio(T0, T0 + 2 * HOUR) == pytest.approx(0.5)


def test_facts_name_the_webapp_they_are_about() -> None:
    assert webapp_of(fact("WebApp", 1, 1)) == ("shop", "web")
    assert webapp_of(fact("Deployment", 1, 1, owner="web")) == ("shop", "web")
    assert webapp_of(fact("Deployment", 1, 1)) is None  # not a WebApp's
    assert webapp_of(fact("Pod", None, None, owner="web")) is None


def test_the_error_ratio_is_the_downtime_over_the_observed_window() -> None:
    history = record((T0, UP), (T0 + 10 * MINUTE, DOWN), (T0 + 16 * MINUTE, UP))  # down for 6 minutes
    now = T0 + HOUR
    assert history.error_ratio(now - HOUR, now) == pytest.approx(0.1)
    assert history.error_ratio(now - 5 * MINUTE, now) == 0.0
    # Before the first fact nothing is known: 6 minutes down of the 60 observed, not of 1440.
    assert history.error_ratio(now - 24 * HOUR, now) == pytest.approx(0.1)
    assert record().error_ratio(now - HOUR, now) == 0.0


def test_a_repeated_fact_changes_nothing() -> None:
    history = record((T0, UP), (T0 + MINUTE, DOWN), (T0 + 30 * MINUTE, DOWN))
    assert history.observe(T0 + 30 * MINUTE, DOWN, LONG_AGO) is history  # redelivered
    assert [(c.at, c.state) for c in history.changes] == [(T0, UP), (T0 + MINUTE, DOWN)]
    assert history.last_fact == T0 + 30 * MINUTE


def test_a_fact_handled_after_later_ones_lands_at_its_own_time() -> None:
    # Handled concurrently (or redelivered), an earlier fact may land after later ones.
    late = record((T0, UP), (T0 + 3 * MINUTE, UP), (T0 + MINUTE, DOWN), (T0 + 2 * MINUTE, DOWN))
    in_order = record((T0, UP), (T0 + MINUTE, DOWN), (T0 + 2 * MINUTE, DOWN), (T0 + 3 * MINUTE, UP))
    assert late.changes == in_order.changes
    assert [(c.at, c.state) for c in late.changes] == [(T0, UP), (T0 + MINUTE, DOWN), (T0 + 3 * MINUTE, UP)]
    assert late.last_fact == T0 + 3 * MINUTE


def test_past_the_recent_facts_a_fact_is_too_late_to_place() -> None:
    history = record(*((T0 + index * MINUTE, UP if index % 2 else DOWN) for index in range(1, RECENT_FACTS + 5)))
    assert len(history.recent) == RECENT_FACTS
    assert history.observe(T0, UP, LONG_AGO) is history  # older than every fact kept as it came


def test_old_changes_go_but_the_state_at_the_cutoff_stays() -> None:
    history = record((T0, UP), (T0 + MINUTE, DOWN), (T0 + HOUR, UP))
    trimmed = history.observe(T0 + 2 * HOUR, UP, keep_after=T0 + 30 * MINUTE)
    assert [(c.at, c.state) for c in trimmed.changes] == [(T0 + MINUTE, DOWN), (T0 + HOUR, UP)]
    assert trimmed.error_ratio(T0 + 30 * MINUTE, T0 + 2 * HOUR) == pytest.approx(1 / 3)  # 30 of 90 minutes down


def test_a_flapping_webapp_keeps_a_bounded_record_and_counts_what_it_dropped() -> None:
    history = WebAppRecord(namespace="shop", name="web")
    flaps = MAX_CHANGES + RECENT_FACTS + 10
    for index in range(flaps):
        history = history.observe(T0 + index * MINUTE, DOWN if index % 2 else UP, LONG_AGO)
    assert len(history.changes) == MAX_CHANGES + RECENT_FACTS
    assert history.truncated == 10
    assert history.changes[0].at == T0 + 10 * MINUTE


def test_a_generation_rolls_out_once_and_ends_when_the_webapp_is_up_again() -> None:
    history = record((T0, UP), (T0 + 10 * MINUTE, DOWN), (T0 + 20 * MINUTE, UP))
    rolled = history.rolled_out(2, T0 + 9 * MINUTE, LONG_AGO)
    assert rolled.rolled_out(2, T0 + 15 * MINUTE, LONG_AGO) is rolled  # reported again by a later outcome
    assert [(r.generation, r.at) for r in rolled.rollouts] == [(2, T0 + 9 * MINUTE)]
    assert rolled.up_again(T0 + 5 * MINUTE) == T0 + 5 * MINUTE  # up then
    assert rolled.up_again(T0 + 12 * MINUTE) == T0 + 20 * MINUTE
    assert record((T0, DOWN)).up_again(T0 + MINUTE) is None


@pytest.mark.parametrize("seed", range(5))
def test_a_batch_of_facts_gives_the_record_they_give_one_by_one(seed: int) -> None:
    # Out of order, repeated, at the same instant, older than the retention, deletions collected: a batch of them
    # (the ingest applies a WebApp's facts of one batch together) ends where applying each in turn does.
    picks = random.Random(seed)
    keep_after = T0 + 20 * MINUTE
    facts = [
        Fact(
            T0 + picks.randrange(0, 400) * MINUTE,
            picks.choice((UP, DOWN, UNKNOWN)),
            collected=picks.random() < 0.1,
        )
        for _ in range(RECENT_FACTS + 200)
    ]
    start = record((T0, UP), (T0 + 5 * MINUTE, DOWN))
    one_by_one = start
    for single in facts:
        one_by_one = one_by_one.observe_all((single,), keep_after)
    batched = start
    for at in range(0, len(facts), 37):
        batched = batched.observe_all(facts[at : at + 37], keep_after)
    assert batched == one_by_one
    assert start.observe_all(facts, keep_after) == one_by_one
    kept = [change.at for change in (*one_by_one.settled, *one_by_one.recent)]
    assert one_by_one.settled, "facts were settled (more than RECENT_FACTS, some older than the retention)"
    assert kept == sorted(kept)
