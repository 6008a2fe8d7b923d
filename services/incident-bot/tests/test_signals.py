"""Every source turned into signals (pure): bus events, Alertmanager v4, PagerDuty Events v2, falcosidekick."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ballast.events.contracts.chaos import (
    AbortReason,
    ChaosTarget,
    ExperimentAborted,
    ExperimentRef,
    FaultKind,
)
from ballast.events.contracts.common import ManifestRef, ObjectRef
from ballast.events.contracts.incident import IncidentSource, Severity
from ballast.events.contracts.policy import (
    ConstraintResult,
    Decision,
    DecisionSource,
    EnforcementAction,
    Operation,
    PolicyDecision,
)
from ballast.events.contracts.reconcile import ReconcileOutcome, WebAppOutcome, reconcile_event_type
from ballast.events.contracts.slo import AlertState, BurnAlert, BurnTier
from ballast.incident_bot.alertmanager import AmWebhook, alert_signals
from ballast.incident_bot.detection import burn_signal, signal_of
from ballast.incident_bot.falco import FalcoEvent, falco_signal
from ballast.incident_bot.pagerduty import PdEvent, pagerduty_signal
from ballast.incident_bot.signals import SignalState, service_key
from ballast.testing import slo as slo_alerts

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def burn_alert(tier: BurnTier = BurnTier.PAGE, state: AlertState = AlertState.FIRING, left: float = 0.4) -> BurnAlert:
    return slo_alerts.burn_alert(tier=tier, state=state, since=T0, budget_remaining=left)


def test_burn_tiers_are_signals_of_the_slo_service_with_severity_from_the_tier() -> None:
    page = signal_of(burn_alert(), "io.ballast.slo.page_burn_firing.v1", T0)
    assert page is not None
    assert page.severity is Severity.HIGH
    assert page.state is SignalState.FIRING
    assert page.match_keys() == ("fp:slo:shop/availability:page", service_key("shop", "checkout"))
    spent = signal_of(burn_alert(left=-0.1), "io.ballast.slo.page_burn_firing.v1", T0)
    assert spent is not None
    assert spent.severity is Severity.CRITICAL
    ticket = signal_of(burn_alert(BurnTier.TICKET, AlertState.RESOLVED), "io.ballast.slo.ticket_burn_resolved.v1", T0)
    assert ticket is not None
    assert ticket.severity is Severity.MEDIUM
    assert ticket.state is SignalState.RESOLVED


def test_degraded_opens_reconciled_resolves_aborted_chaos_and_hotfix_overrides_fire() -> None:
    webapp = ObjectRef(api_version="platform.example.com/v1", kind="WebApp", namespace="shop", name="checkout", uid="u")
    outcome = ReconcileOutcome(cluster="local", webapp=webapp, generation=2, observed_generation=2, reason="Crash")
    degraded = signal_of(outcome, reconcile_event_type(WebAppOutcome.DEGRADED), T0)
    recovered = signal_of(outcome, reconcile_event_type(WebAppOutcome.RECONCILED), T0)
    assert degraded is not None
    assert recovered is not None
    assert degraded.state is SignalState.FIRING
    assert recovered.state is SignalState.RESOLVED
    assert degraded.fingerprint == recovered.fingerprint
    assert signal_of(outcome, reconcile_event_type(WebAppOutcome.DRIFT_REPAIRED), T0) is None

    def aborted(reason: AbortReason) -> ExperimentAborted:
        return ExperimentAborted(
            cluster="local",
            experiment=ExperimentRef(namespace="shop", name="kill-pods"),
            run_id="r1",
            target=ChaosTarget(namespace="shop", webapp="checkout"),
            fault=FaultKind.POD_DELETE,
            at=T0,
            reason=reason,
            detail="ready replicas 0/3",
            faults_reverted=True,
            budget_consumed=0.01,
        )

    chaos = signal_of(aborted(AbortReason.STEADY_STATE_FAILED), "io.ballast.chaos.aborted.v1", T0)
    assert chaos is not None
    assert chaos.source is IncidentSource.CHAOS
    assert chaos.service == "checkout"
    assert signal_of(aborted(AbortReason.INCIDENT_OPEN), "io.ballast.chaos.aborted.v1", T0) is None  # our own pause

    def decision(override: str | None) -> PolicyDecision:
        return PolicyDecision(
            cluster="local",
            source=DecisionSource.ADMISSION,
            request_uid="uid-1",
            operation=Operation.UPDATE,
            object=ManifestRef(api_version="platform.example.com/v1", kind="WebApp", namespace="shop", name="checkout"),
            requested_by="ana",
            decision=Decision.ALLOWED,
            constraints=(
                ConstraintResult(
                    kind="ErrorBudgetFreeze", name="shop/availability", enforcement_action=EnforcementAction.DENY,
                    message="budget exhausted",
                ),
            )
            if override
            else (),
            override_reason=override,
            latency_ms=1,
            at=T0,
        )  # fmt: skip

    hotfix = signal_of(decision("rollback of a bad release"), "io.ballast.policy.allowed.v1", T0)
    assert hotfix is not None
    assert hotfix.severity is Severity.LOW
    assert "rollback of a bad release" in hotfix.title
    assert signal_of(decision(None), "io.ballast.policy.allowed.v1", T0) is None


AM_PAYLOAD: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}/{severity="page"}:{alertname="CheckoutErrors"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "incident-bot",
    "groupLabels": {"alertname": "CheckoutErrors"},
    "commonLabels": {"alertname": "CheckoutErrors", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "notification_reason": "new",  # newer Alertmanagers add fields: accepted
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "CheckoutErrors",
                "severity": "critical",
                "service": "checkout",
                "namespace": "shop",
            },
            "annotations": {"summary": "5xx above 5%"},
            "startsAt": "2026-12-01T11:59:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": "c0ffee",
        }
    ],
}


def test_alertmanager_alerts_are_signals_by_fingerprint_group_key_and_service() -> None:
    (signal,) = alert_signals(AmWebhook.model_validate(AM_PAYLOAD), T0)
    assert signal.severity is Severity.CRITICAL
    assert signal.title == "checkout: CheckoutErrors: 5xx above 5%"
    assert signal.match_keys() == (
        "fp:am:c0ffee",
        'group:{}/{severity="page"}:{alertname="CheckoutErrors"}',
        service_key("shop", "checkout"),
    )
    with pytest.raises(ValueError, match="version"):
        AmWebhook.model_validate(AM_PAYLOAD | {"version": "3"})


def test_slo_burn_alerts_from_the_slo_engines_rules_join_the_slos_incident_at_its_tier_severity() -> None:
    alert = AM_PAYLOAD["alerts"][0] | {
        "labels": {
            "alertname": "WebAvailability",
            "sloth_id": "web-availability",
            "sloth_service": "web",
            "sloth_slo": "availability",
            "sloth_severity": "page",
            "namespace": "shop",
        }
    }
    (signal,) = alert_signals(AmWebhook.model_validate(AM_PAYLOAD | {"alerts": [alert]}), T0)
    burn = burn_signal(
        slo_alerts.burn_alert(namespace="shop", service="web", name="availability", tier=BurnTier.PAGE, since=T0)
    )
    assert signal.match_keys()[-1] == burn.match_keys()[-1] == service_key("shop", "web")
    assert signal.severity is burn.severity is Severity.HIGH
    ticket = alert | {"labels": alert["labels"] | {"sloth_severity": "ticket"}}
    (signal,) = alert_signals(AmWebhook.model_validate(AM_PAYLOAD | {"alerts": [ticket]}), T0)
    assert signal.severity is Severity.MEDIUM
    labelled = alert | {"labels": alert["labels"] | {"severity": "critical"}}  # a label of the SLO's own wins
    (signal,) = alert_signals(AmWebhook.model_validate(AM_PAYLOAD | {"alerts": [labelled]}), T0)
    assert signal.severity is Severity.CRITICAL


def test_pagerduty_events_need_what_their_action_needs() -> None:
    trigger = PdEvent.model_validate(
        {
            "routing_key": "k" * 32,
            "event_action": "trigger",
            "payload": {"summary": "disk full", "source": "db-1", "severity": "error", "component": "postgres"},
        }
    )
    signal, dedup_key = pagerduty_signal(trigger, T0)
    assert len(dedup_key) == 32
    assert signal.fingerprint == f"pd:{dedup_key}"
    assert signal.severity is Severity.HIGH
    with pytest.raises(ValueError, match="dedup_key is required for event_action resolve"):
        PdEvent.model_validate({"routing_key": "k", "event_action": "resolve"})
    with pytest.raises(ValueError, match="payload is required"):
        PdEvent.model_validate({"routing_key": "k", "event_action": "trigger"})


def test_falco_events_are_security_incidents_per_rule_and_pod() -> None:
    event = FalcoEvent.model_validate(
        {
            "uuid": "u-1",
            "output": "File below a known binary directory opened for writing",
            "priority": "Error",
            "rule": "Write below binary dir",
            "time": "2026-12-01T12:00:00.123456789Z",
            "source": "syscall",
            "hostname": "node-1",
            "output_fields": {"k8s.ns.name": "shop", "k8s.pod.name": "checkout-7d9", "fd.name": "/bin/x"},
        }
    )
    signal = falco_signal(event, T0)
    assert signal.source is IncidentSource.FALCO
    assert signal.severity is Severity.HIGH
    assert signal.match_keys() == ("fp:falco:Write below binary dir:shop/checkout-7d9",)
    with pytest.raises(ValueError, match="unknown Falco priority"):
        FalcoEvent.model_validate(event.model_dump() | {"priority": "Loud"})
