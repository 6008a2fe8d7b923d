"""The lifecycle and the changes to a stored incident, as pure functions: transitions, dedup of repeated signals,
the resolve hold against flapping, escalation levels and their deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ballast.events.contracts.chaos import PauseChaos
from ballast.events.contracts.incident import (
    IncidentEscalated,
    IncidentSource,
    IncidentStatus,
    IncidentTransition,
    Severity,
)
from ballast.incident_bot.app import IncidentBotSettings
from ballast.incident_bot.changes import Outcome, entered, escalated, hold_ended, joined, next_deadline, opened
from ballast.incident_bot.escalation import (
    EscalationConfig,
    EscalationLevel,
    EscalationPolicy,
    due_escalation,
    load_escalation,
)
from ballast.incident_bot.lifecycle import InvalidTransition, advance, transition_id
from ballast.incident_bot.signals import Signal, SignalState
from ballast.runtime import ConfigError, load_settings

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def burn(state: SignalState = SignalState.FIRING, *, fingerprint: str = "slo:shop/avail:page", **kw: object) -> Signal:
    fields: dict[str, object] = {
        "source": IncidentSource.SLO,
        "state": state,
        "fingerprint": fingerprint,
        "service": "checkout",
        "namespace": "shop",
        "severity": Severity.HIGH,
        "title": "checkout burning",
        "at": T0,
    } | kw
    return Signal.model_validate(fields)


def record() -> IncidentTransition:
    return opened("local", "INC-1", burn(), at=T0, policy="default", claims=()).record


def test_the_lifecycle_goes_forward_with_each_status_time_and_mtta_mttr() -> None:
    acked = advance(record(), IncidentStatus.ACKNOWLEDGED, at=T0 + 3 * MINUTE, by="ana")
    assert acked is not None
    assert acked.acknowledged_at == T0 + 3 * MINUTE
    assert acked.time_to_acknowledge == 3 * MINUTE
    assert acked.commander == "ana"  # the first to acknowledge leads
    mitigated = advance(acked, IncidentStatus.MITIGATED, at=T0 + 10 * MINUTE, by="bo")
    assert mitigated is not None
    assert mitigated.commander == "ana"
    assert mitigated.changed_by == "bo"
    resolved = advance(mitigated, IncidentStatus.RESOLVED, at=T0 + 30 * MINUTE, by="bo")
    assert resolved is not None
    assert resolved.time_to_resolve == 30 * MINUTE
    closed = advance(resolved, IncidentStatus.CLOSED, at=T0 + 60 * MINUTE, by="ana")
    assert closed is not None
    assert closed.status is IncidentStatus.CLOSED
    # each status has its time, so the record still validates against the contract
    IncidentTransition.model_validate(closed.model_dump())
    assert transition_id(closed) == f"INC-1:closed:{(T0 + 60 * MINUTE).isoformat()}"


def test_a_step_may_skip_ahead_but_never_back_and_a_repeat_is_no_change() -> None:
    resolved = advance(record(), IncidentStatus.RESOLVED, at=T0 + MINUTE, by=None)
    assert resolved is not None
    assert resolved.acknowledged_at is None
    assert resolved.time_to_acknowledge is None
    assert advance(resolved, IncidentStatus.RESOLVED, at=T0 + 2 * MINUTE, by="x") is None
    with pytest.raises(InvalidTransition, match="INC-1 is resolved: it can go to closed, not back to acknowledged"):
        advance(resolved, IncidentStatus.ACKNOWLEDGED, at=T0 + 2 * MINUTE, by="x")
    with pytest.raises(InvalidTransition, match="resolve it before closing"):
        advance(record(), IncidentStatus.CLOSED, at=T0 + MINUTE, by="x")


def test_opening_publishes_the_opened_transition_and_pauses_chaos_and_resolving_resumes_it() -> None:
    stored = opened("local", "INC-7", burn(), at=T0, policy="default", claims=())
    (event, pause) = stored.unpublished
    assert event.subject == "evt.incident.local.shop.opened"
    assert event.id == f"INC-7:open:{T0.isoformat()}"
    command = PauseChaos.model_validate(pause.data)
    assert (pause.subject, pause.id) == ("cmd.chaos.pause", "INC-7:pause")
    assert (command.service, command.namespace, command.paused) == ("checkout", "shop", True)
    done = entered(stored, IncidentStatus.RESOLVED, at=T0 + MINUTE, by="ana")
    assert done is not None
    resume = PauseChaos.model_validate(done.unpublished[-1].data)
    assert done.unpublished[-1].id == "INC-7:resume"
    assert resume.paused is False
    assert done.unpublished[-2].subject == "evt.incident.local.shop.resolved"
    closed = entered(done, IncidentStatus.CLOSED, at=T0 + 2 * MINUTE, by="ana")
    assert closed is not None
    assert [o.id for o in closed.unpublished].count("INC-7:resume") == 1


def test_repeated_firing_is_a_duplicate_and_a_new_alert_joins_raising_severity() -> None:
    stored = opened("local", "INC-1", burn(), at=T0, policy="default", claims=())
    assert joined(stored, burn(), at=T0 + MINUTE, hold=MINUTE) == (None, Outcome.DUPLICATE)
    worse, outcome = joined(stored, burn(fingerprint="am:abc", severity=Severity.CRITICAL), at=T0 + MINUTE, hold=MINUTE)
    assert outcome is Outcome.JOINED
    assert worse is not None
    assert worse.record.severity is Severity.CRITICAL
    milder, _ = joined(worse, burn(fingerprint="am:def", severity=Severity.LOW), at=T0 + MINUTE, hold=MINUTE)
    assert milder is not None
    assert milder.record.severity is Severity.CRITICAL


def test_resolution_waits_for_every_alert_and_the_hold_and_a_refire_within_the_hold_keeps_it_open() -> None:
    stored = opened("local", "INC-1", burn(), at=T0, policy="default", claims=())
    two, _ = joined(stored, burn(fingerprint="am:abc"), at=T0, hold=MINUTE)
    assert two is not None
    one_left, outcome = joined(two, burn(SignalState.RESOLVED), at=T0 + MINUTE, hold=MINUTE)
    assert outcome is Outcome.JOINED
    assert one_left is not None
    assert one_left.resolve_due_at is None
    quiet, outcome = joined(one_left, burn(SignalState.RESOLVED, fingerprint="am:abc"), at=T0 + 2 * MINUTE, hold=MINUTE)
    assert outcome is Outcome.RESOLVING
    assert quiet is not None
    assert quiet.resolve_due_at == T0 + 3 * MINUTE
    assert quiet.record.status is IncidentStatus.OPEN
    assert hold_ended(quiet, at=T0 + 2 * MINUTE + 30 * timedelta(seconds=1)) is None  # not yet
    refired, outcome = joined(quiet, burn(), at=T0 + 2 * MINUTE + timedelta(seconds=40), hold=MINUTE)
    assert outcome is Outcome.REFIRED
    assert refired is not None
    assert refired.resolve_due_at is None
    assert refired.flaps_suppressed == 1
    assert hold_ended(refired, at=T0 + 10 * MINUTE) is None
    resolved = hold_ended(quiet, at=T0 + 3 * MINUTE)
    assert resolved is not None
    assert resolved.record.status is IncidentStatus.RESOLVED


def test_without_a_hold_the_last_resolution_resolves_at_once() -> None:
    stored = opened("local", "INC-1", burn(), at=T0, policy="default", claims=())
    resolved, outcome = joined(stored, burn(SignalState.RESOLVED), at=T0 + MINUTE, hold=timedelta(0))
    assert outcome is Outcome.RESOLVED
    assert resolved is not None
    assert resolved.record.status is IncidentStatus.RESOLVED
    assert resolved.record.changed_by is None


def test_signals_that_never_end_are_context_once_an_alert_that_ends_joined() -> None:
    """A chaos abort or a hotfix override does not keep an incident open once the burn it came with is over, whichever
    of them came first; an incident with nothing that will say "over" waits for people."""

    def abort(state: SignalState = SignalState.FIRING) -> Signal:
        return burn(state, fingerprint="chaos:run-1", source=IncidentSource.CHAOS, ends=False)

    for first, then in ((burn(), abort()), (abort(), burn())):
        stored = opened("local", "INC-1", first, at=T0, policy="default", claims=())
        both, outcome = joined(stored, then, at=T0, hold=timedelta(0))
        assert outcome is Outcome.JOINED
        assert both is not None
        resolved, outcome = joined(both, burn(SignalState.RESOLVED), at=T0 + MINUTE, hold=timedelta(0))
        assert outcome is Outcome.RESOLVED, f"opened by {first.source}"
        assert resolved is not None
        assert resolved.record.status is IncidentStatus.RESOLVED

    only_chaos = opened("local", "INC-2", abort(), at=T0, policy="default", claims=())
    assert only_chaos.firing(), "nothing will say it is over: people resolve it"


POLICY = EscalationPolicy(
    levels=(
        EscalationLevel(after=5 * MINUTE, notify=("secondary",)),
        EscalationLevel(after=15 * MINUTE, notify=("manager",), repeat_every=10 * MINUTE, repeats=2),
    )
)


def test_escalation_levels_come_due_in_order_repeat_and_stop_at_acknowledgement() -> None:
    stored = opened("local", "INC-3", burn(), at=T0, policy="default", claims=())
    assert next_deadline(stored, POLICY) == T0 + 5 * MINUTE
    assert escalated(stored, POLICY, at=T0 + 4 * MINUTE) is None
    levels = []
    at = T0
    while (due := next_deadline(stored, POLICY)) is not None:
        at = due
        changed = escalated(stored, POLICY, at=at)
        assert changed is not None
        out = changed.unpublished[-1]
        levels.append((out.id, IncidentEscalated.model_validate(out.data).notified, at - T0))
        stored = changed
    assert levels == [
        ("INC-3:escalated:1", ("secondary",), 5 * MINUTE),
        ("INC-3:escalated:2", ("manager",), 15 * MINUTE),
        ("INC-3:escalated:3", ("manager",), 25 * MINUTE),
        ("INC-3:escalated:4", ("manager",), 35 * MINUTE),
    ]
    acked = entered(
        opened("local", "INC-4", burn(), at=T0, policy="default", claims=()),
        IncidentStatus.ACKNOWLEDGED,
        at=T0 + MINUTE,
        by="ana",
    )
    assert acked is not None
    assert next_deadline(acked, POLICY) is None
    assert due_escalation(acked.record, 0, POLICY) is None


def test_escalation_config_is_checked_when_loaded() -> None:
    with pytest.raises(ValueError, match="increasing"):
        EscalationPolicy(
            levels=(EscalationLevel(after=MINUTE, notify=("a",)), EscalationLevel(after=MINUTE, notify=("b",)))
        )
    with pytest.raises(ValueError, match=r"routes\.0\.policy: no policy named 'nope'"):
        EscalationConfig.model_validate({"policies": {"default": POLICY}, "routes": [{"policy": "nope"}]})
    config = EscalationConfig.model_validate(
        {
            "policies": {"default": POLICY, "db": POLICY},
            "routes": [{"severity": ["critical"], "service": ["postgres"], "policy": "db"}],
        }
    )
    assert config.policy_for(Severity.CRITICAL, "postgres") == "db"
    assert config.policy_for(Severity.HIGH, "postgres") == "default"


def test_a_bad_escalation_file_stops_the_service_naming_the_variable_and_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "escalation.yaml"
    good.write_text("policies:\n  default:\n    levels:\n      - {after: 5m, notify: [secondary]}\n")
    assert load_escalation(good).policies["default"].levels[0].after == 5 * MINUTE
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies:\n  default:\n    levels:\n      - {after: 5 minutes, notify: [secondary]}\n")
    monkeypatch.setenv("BALLAST_ESCALATION_FILE", str(bad))
    with pytest.raises(ConfigError, match=r"BALLAST_ESCALATION_FILE: .*policies\.default\.levels\.0\.after"):
        load_settings(IncidentBotSettings)
