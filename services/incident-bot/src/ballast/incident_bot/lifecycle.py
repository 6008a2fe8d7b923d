"""An incident's lifecycle as pure transitions: open → acknowledged → mitigated → resolved → closed.

A step may skip ahead (an alert that resolves an incident nobody acknowledged takes it from open to resolved), never
back. Asking for the status an incident is already in changes nothing (`None`): a repeated button press or webhook is
no news. Each transition returns the record as it stands after it, with the time of the status entered, and its
event id is `<incident_id>:<status>:<that time>` (the contract's), so telling it again stores it once.
"""

from __future__ import annotations

from datetime import datetime

from ballast.events.contracts.incident import IncidentStatus, IncidentTransition, Severity

ORDER: tuple[IncidentStatus, ...] = (
    IncidentStatus.OPEN,
    IncidentStatus.ACKNOWLEDGED,
    IncidentStatus.MITIGATED,
    IncidentStatus.RESOLVED,
    IncidentStatus.CLOSED,
)
_RANK = {status: rank for rank, status in enumerate(ORDER)}
_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class InvalidTransition(ValueError):
    """The incident cannot go to that status from where it is; the message says where it is and what it may do."""


def is_active(status: IncidentStatus) -> bool:
    """Still being worked on: signals join it, escalation may run."""
    return _RANK[status] < _RANK[IncidentStatus.RESOLVED]


def next_statuses(status: IncidentStatus) -> tuple[IncidentStatus, ...]:
    return ORDER[_RANK[status] + 1 :]


def advance(
    record: IncidentTransition, to: IncidentStatus, *, at: datetime, by: str | None
) -> IncidentTransition | None:
    """The record after `record` enters `to` at `at`; None when it is already there. Raises `InvalidTransition`
    for a step back (reopening is not supported: a new signal opens a new incident)."""
    if to is record.status:
        return None
    if _RANK[to] < _RANK[record.status]:
        allowed = ", ".join(next_statuses(record.status)) or "nothing (it is closed)"
        raise InvalidTransition(f"{record.incident_id} is {record.status}: it can go to {allowed}, not back to {to}")
    at = max(at, record.opened_at)  # a clock behind the opener's must not give a negative MTTA
    changes: dict[str, object] = {"status": to, "changed_by": by, f"{to.value}_at": at}
    if to is IncidentStatus.ACKNOWLEDGED:
        changes["time_to_acknowledge"] = at - record.opened_at
        if record.commander is None and by is not None:
            changes["commander"] = by  # whoever acknowledges first leads until someone takes the role
    if to is IncidentStatus.RESOLVED:
        changes["time_to_resolve"] = at - record.opened_at
    if to is IncidentStatus.CLOSED and record.resolved_at is None:
        raise InvalidTransition(f"{record.incident_id} is {record.status}: resolve it before closing it")
    return record.model_copy(update=changes)


def transition_id(record: IncidentTransition) -> str:
    """The event id of the transition that gave `record` its status."""
    entered = {
        IncidentStatus.OPEN: record.opened_at,
        IncidentStatus.ACKNOWLEDGED: record.acknowledged_at,
        IncidentStatus.MITIGATED: record.mitigated_at,
        IncidentStatus.RESOLVED: record.resolved_at,
        IncidentStatus.CLOSED: record.closed_at,
    }[record.status]
    assert entered is not None  # the contract's validator holds every status to its time
    return f"{record.incident_id}:{record.status.value}:{entered.isoformat()}"


def raised(current: Severity, seen: Severity) -> Severity:
    """An incident's severity rises with the worst signal that joined it and never falls by itself."""
    return seen if _SEVERITY_RANK[seen] > _SEVERITY_RANK[current] else current


def severity_rank(severity: Severity) -> int:
    return _SEVERITY_RANK[severity]
