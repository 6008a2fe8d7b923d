"""Detection from the bus: the platform's own events as signals (pure), and the consumer handler around them.

- `evt.slo` page/ticket burn firing: firing; page → high (critical once the budget is spent), ticket → medium.
- `evt.slo` page/ticket burn resolved: resolved (the same fingerprint: the SLO's tier).
- `evt.reconcile` degraded: firing, medium (fingerprint: the WebApp); reconciled resolves it if it fires.
- `evt.chaos` aborted: firing, high; not for aborts that people or incidents caused (stop, kill switch, incident open).
- `evt.policy` allowed/warned with an override reason: firing, low (a hotfix went through a frozen budget).

Each signal joins the service's incident (`<namespace>/<service>`): the SLO's service, the WebApp, the chaos run's
target WebApp (or its namespace), the policy decision's object.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from pydantic import BaseModel

from ballast.bus.consumer import Delivery, Reject
from ballast.events.contracts.chaos import AbortReason, ExperimentAborted
from ballast.events.contracts.incident import IncidentSource, Severity
from ballast.events.contracts.policy import PolicyDecision
from ballast.events.contracts.reconcile import ReconcileOutcome, WebAppOutcome, reconcile_event_type
from ballast.events.contracts.slo import AlertState, BurnAlert, BurnTier
from ballast.incident_bot.changes import Outcome
from ballast.incident_bot.signals import Signal, SignalState

log = logging.getLogger(__name__)

_PEOPLE_OR_US = {AbortReason.STOPPED, AbortReason.KILL_SWITCH, AbortReason.INCIDENT_OPEN}


def burn_signal(alert: BurnAlert) -> Signal:
    slo = alert.slo
    if alert.tier is BurnTier.PAGE:
        severity = Severity.CRITICAL if alert.budget_remaining <= 0 else Severity.HIGH
    else:
        severity = Severity.MEDIUM
    return Signal(
        source=IncidentSource.SLO,
        state=SignalState.FIRING if alert.state is AlertState.FIRING else SignalState.RESOLVED,
        fingerprint=f"slo:{slo.namespace}/{slo.name}:{alert.tier.value}",
        service=slo.service,
        namespace=slo.namespace,
        severity=severity,
        title=f"{slo.service}: SLO {slo.name} burning its error budget ({alert.tier.value} tier, "
        f"{max(alert.budget_remaining, 0):.1%} left)",
        at=alert.since,
    )


def reconcile_signal(outcome: ReconcileOutcome, ce_type: str, at: datetime) -> Signal | None:
    webapp = outcome.webapp
    fingerprint = f"reconcile:{webapp.namespace}/{webapp.name}:degraded"
    if ce_type == reconcile_event_type(WebAppOutcome.RECONCILED):
        state = SignalState.RESOLVED
        title = f"{webapp.name}: reconciled"
    elif ce_type == reconcile_event_type(WebAppOutcome.DEGRADED):
        state = SignalState.FIRING
        title = f"{webapp.name}: degraded ({outcome.reason or 'unknown reason'}): {outcome.message}".rstrip(": ")
    else:
        return None
    return Signal(
        source=IncidentSource.RECONCILE,
        state=state,
        fingerprint=fingerprint,
        service=webapp.name,
        namespace=webapp.namespace,
        severity=Severity.MEDIUM,
        title=title,
        at=at,
    )


def chaos_signal(aborted: ExperimentAborted) -> Signal | None:
    if aborted.reason in _PEOPLE_OR_US:
        return None
    target = aborted.target
    service = target.webapp or f"namespace {target.namespace}"
    return Signal(
        source=IncidentSource.CHAOS,
        state=SignalState.FIRING,
        fingerprint=f"chaos:{aborted.run_id}",
        service=service,
        namespace=target.namespace,
        severity=Severity.HIGH,
        title=f"{service}: chaos run of {aborted.experiment.name} aborted ({aborted.reason.value}): {aborted.detail}",
        at=aborted.at,
        ends=False,
    )


def override_signal(decision: PolicyDecision) -> Signal | None:
    if decision.override_reason is None:
        return None
    obj = decision.object
    return Signal(
        source=IncidentSource.POLICY,
        state=SignalState.FIRING,
        fingerprint=f"policy:{decision.source.value}:{decision.request_uid}:{obj.kind}/{obj.name}",
        service=obj.name,
        namespace=obj.namespace,
        severity=Severity.LOW,
        title=f"{obj.name}: hotfix through a frozen error budget by {decision.requested_by or 'someone'}: "
        f"{decision.override_reason}",
        at=decision.at,
        ends=False,
    )


def signal_of(payload: BaseModel, ce_type: str, at: datetime) -> Signal | None:
    """The signal an event (of type `ce_type`, sent at `at`) carries, or None when it is no incident's business."""
    if isinstance(payload, BurnAlert):
        return burn_signal(payload)
    if isinstance(payload, ReconcileOutcome):
        return reconcile_signal(payload, ce_type, at)
    if isinstance(payload, ExperimentAborted):
        return chaos_signal(payload)
    if isinstance(payload, PolicyDecision):
        return override_signal(payload)
    return None


SignalSink = Callable[[Signal], Awaitable[tuple[Outcome, str | None]]]


def signal_handler(sink: SignalSink, cluster: str) -> Callable[[Delivery], Awaitable[None]]:
    """The consumer's handler for `cluster`'s events (a bus shared by clusters carries others', which their own bots
    handle); an event that is not one detection reads is dead-lettered with the reason."""

    async def handle(delivery: Delivery) -> None:
        event = delivery.event
        if getattr(event.data, "cluster", cluster) != cluster:
            return
        try:
            signal = signal_of(event.data, event.type, event.time)
        except ValueError as exc:  # a payload valid for its schema but not as a signal (e.g. an empty name)
            raise Reject(f"{event.type} {event.id} is not a usable incident signal: {exc}") from exc
        if signal is None:
            if not isinstance(event.data, BurnAlert | ReconcileOutcome | ExperimentAborted | PolicyDecision):
                raise Reject(f"{event.type} is not an event the incident-bot detects from")
            return
        outcome, incident_id = await sink(signal)
        if outcome is not Outcome.IGNORED:
            log.info(
                "signal %s", outcome.value, extra={"event": event.id, "incident": incident_id, "source": signal.source}
            )

    return handle
