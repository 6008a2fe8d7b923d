"""Pure changes to a stored incident: a signal joining it, a status entered, a level escalated, a hold ending.

Each returns the stored incident after the change, with the events it causes appended as unpublished (the store
publishes them once the state is written), or None when nothing changes: a repeated signal, a repeated button.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from pydantic import BaseModel

from ballast.events.contracts.chaos import ChaosCommand, PauseChaos, chaos_command_subject, chaos_command_type
from ballast.events.contracts.incident import (
    IncidentEscalated,
    IncidentEvent,
    IncidentRole,
    IncidentSource,
    IncidentStatus,
    IncidentTransition,
    IncidentUpdated,
    Severity,
    incident_event_type,
    incident_subject,
    transition_event,
)
from ballast.incident_bot.escalation import EscalationPolicy, due_escalation
from ballast.incident_bot.lifecycle import advance, is_active, raised, transition_id
from ballast.incident_bot.records import AlertMark, Outgoing, StoredIncident
from ballast.incident_bot.signals import Signal, SignalState

BOT = "incident-bot"


class Outcome(enum.StrEnum):
    """What a signal did."""

    OPENED = "opened"
    JOINED = "joined"  # a new alert joined an active incident
    DUPLICATE = "duplicate"  # nothing new: a repeat
    REFIRED = "refired"  # an alert fired again while its incident waited to resolve: the resolution is off (flap)
    RESOLVING = "resolving"  # its last alert resolved: the incident resolves after the hold
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    IGNORED = "ignored"  # a resolution or acknowledgement for no active incident


def incident_out(record: IncidentTransition, event: IncidentEvent, event_id: str, data: BaseModel) -> Outgoing:
    """An `evt.incident` event about the incident, on its cluster and namespace's subject."""
    return Outgoing(
        subject=incident_subject(record.cluster, record.namespace, event),
        ce_type=incident_event_type(event),
        id=event_id,
        ce_subject=record.incident_id,
        data=data.model_dump(mode="json"),
    )


def transition_out(record: IncidentTransition) -> Outgoing:
    return incident_out(record, transition_event(record.status), transition_id(record), record)


def chaos_pause_out(record: IncidentTransition, *, paused: bool) -> Outgoing:
    """`cmd.chaos.pause` for the incident's service: hold chaos against it while it is open, release it after."""
    word = "pause" if paused else "resume"
    command = PauseChaos(
        request_id=f"{record.incident_id}:{word}",
        requested_by=BOT,
        namespace=record.namespace,
        service=record.service,
        paused=paused,
        reason=f"{record.incident_id} {'opened' if paused else 'resolved'}: {record.title}",
    )
    return Outgoing(
        subject=chaos_command_subject(ChaosCommand.PAUSE),
        ce_type=chaos_command_type(ChaosCommand.PAUSE),
        id=command.request_id,
        ce_subject=record.incident_id,
        data=command.model_dump(mode="json"),
    )


def updated(
    stored: StoredIncident,
    *,
    at: datetime,
    by: str | None,
    severity: Severity | None = None,
    commander: str | None = None,
    role: tuple[IncidentRole, str] | None = None,
) -> StoredIncident | None:
    """`stored` with a new severity, commander or holder of another role, told as an `updated` event; None when none
    of them changes."""
    record = stored.record
    changes: dict[str, object] = {}
    if role is not None:
        if role[0] is IncidentRole.COMMANDER:
            commander = role[1]
        elif record.roles.get(role[0]) != role[1]:
            changes["roles"] = {**record.roles, role[0]: role[1]}
    if severity is not None and severity is not record.severity:
        changes["severity"] = severity
    if commander is not None and commander != record.commander:
        changes["commander"] = commander
    if not changes:
        return None
    record = record.model_copy(update=changes | {"changed_by": by})
    event = IncidentUpdated(
        cluster=record.cluster,
        incident_id=record.incident_id,
        service=record.service,
        namespace=record.namespace,
        severity=record.severity,
        commander=record.commander,
        roles=record.roles,
        changed_by=by,
        at=at,
    )
    out = incident_out(record, IncidentEvent.UPDATED, f"{record.incident_id}:updated:{at.isoformat()}", event)
    return stored.model_copy(update={"record": record, "unpublished": (*stored.unpublished, out)})


def opened(
    cluster: str, incident_id: str, signal: Signal, *, at: datetime, policy: str, claims: tuple[str, ...]
) -> StoredIncident:
    record = IncidentTransition(
        cluster=cluster,
        incident_id=incident_id,
        service=signal.service,
        namespace=signal.namespace,
        severity=signal.severity,
        title=signal.title,
        status=IncidentStatus.OPEN,
        source=signal.source,
        fingerprint=signal.fingerprint,
        group_key=signal.group_key,
        commander=signal.by if signal.source is IncidentSource.SLACK else None,
        changed_by=signal.by,
        opened_at=at,
    )
    return StoredIncident(
        record=record,
        alerts={
            signal.fingerprint: AlertMark(
                source=signal.source, title=signal.title, firing=True, since=at, ends=signal.ends
            )
        },
        claims=claims,
        policy=policy,
        unpublished=(transition_out(record), chaos_pause_out(record, paused=True)),
    )


def entered(stored: StoredIncident, to: IncidentStatus, *, at: datetime, by: str | None) -> StoredIncident | None:
    """`stored` after its incident enters `to` (raises `InvalidTransition` for a step back)."""
    record = advance(stored.record, to, at=at, by=by)
    if record is None:
        return None
    out = [transition_out(record)]
    update: dict[str, object] = {"record": record}
    if not is_active(record.status) and is_active(stored.record.status):
        out.append(chaos_pause_out(record, paused=False))
        update["resolve_due_at"] = None
    update["unpublished"] = stored.unpublished + tuple(out)
    return stored.model_copy(update=update)


def joined(
    stored: StoredIncident, signal: Signal, *, at: datetime, hold: timedelta
) -> tuple[StoredIncident | None, Outcome]:
    """`stored` after `signal` (which matched it) arrives; `hold` is how long every alert must stay resolved before
    the incident resolves (the flapping guard; zero resolves at once)."""
    mark = stored.alerts.get(signal.fingerprint)
    if signal.state is SignalState.ACKNOWLEDGED:
        acknowledged = stored.record.acknowledged_at is not None
        changed = None if acknowledged else entered(stored, IncidentStatus.ACKNOWLEDGED, at=at, by=signal.by)
        return changed, Outcome.ACKNOWLEDGED if changed is not None else Outcome.DUPLICATE
    alerts = dict(stored.alerts)
    if signal.state is SignalState.FIRING:
        severity = raised(stored.record.severity, signal.severity)
        if mark is not None and mark.firing and severity is stored.record.severity:
            return None, Outcome.DUPLICATE
        alerts[signal.fingerprint] = AlertMark(
            source=signal.source,
            title=signal.title,
            firing=True,
            since=mark.since if mark and mark.firing else at,
            ends=signal.ends,
        )
        base = updated(stored, at=at, by=None, severity=severity) or stored  # a worse alert raises the severity
        update: dict[str, object] = {"alerts": alerts}
        outcome = Outcome.JOINED if mark is None or not mark.firing else Outcome.DUPLICATE
        if stored.resolve_due_at is not None:
            update["resolve_due_at"] = None
            update["flaps_suppressed"] = stored.flaps_suppressed + 1
            outcome = Outcome.REFIRED
        return base.model_copy(update=update), outcome
    if mark is None or not mark.firing:
        return None, Outcome.DUPLICATE
    alerts[signal.fingerprint] = mark.model_copy(update={"firing": False, "since": at})
    quiet = stored.model_copy(update={"alerts": alerts})
    if quiet.firing():
        return quiet, Outcome.JOINED  # others still fire: one alert of several resolved
    if hold <= timedelta(0):
        resolved = entered(quiet, IncidentStatus.RESOLVED, at=at, by=None)
        return (resolved or quiet), Outcome.RESOLVED
    return quiet.model_copy(update={"resolve_due_at": at + hold}), Outcome.RESOLVING


def hold_ended(stored: StoredIncident, *, at: datetime) -> StoredIncident | None:
    """Every alert stayed resolved through the hold: the incident resolves."""
    due = stored.resolve_due_at
    if due is None or at < due or stored.firing() or not is_active(stored.record.status):
        return None
    return entered(stored, IncidentStatus.RESOLVED, at=at, by=None)


def escalated(stored: StoredIncident, policy: EscalationPolicy, *, at: datetime) -> StoredIncident | None:
    """The next level of `policy`, if it is due and nobody acknowledged: notified, as an `escalated` event."""
    due = due_escalation(stored.record, stored.escalation_level, policy)
    if due is None or at < due[1]:
        return None
    level, _, targets = due
    record = stored.record
    event = IncidentEscalated(
        cluster=record.cluster,
        incident_id=record.incident_id,
        service=record.service,
        namespace=record.namespace,
        severity=record.severity,
        level=level,
        notified=targets,
        unacknowledged_for=max(at - record.opened_at, timedelta(microseconds=1)),
        at=at,
    )
    out = incident_out(record, IncidentEvent.ESCALATED, f"{record.incident_id}:escalated:{level}", event)
    return stored.model_copy(update={"escalation_level": level, "unpublished": (*stored.unpublished, out)})


def next_deadline(stored: StoredIncident, policy: EscalationPolicy) -> datetime | None:
    """When this incident next needs the timer: its next escalation level or the end of its resolve hold."""
    if not is_active(stored.record.status):
        return None
    times = []
    due = due_escalation(stored.record, stored.escalation_level, policy)
    if due is not None:
        times.append(due[1])
    if stored.resolve_due_at is not None:
        times.append(stored.resolve_due_at)
    return min(times) if times else None
