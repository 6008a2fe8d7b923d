"""Escalation for the incident-bot: when the next level of an incident's policy is due.

The policies themselves (levels, routes, the file format and its loading) are data shared with the replay tooling:
`ballast.events.contracts.escalation`. `BALLAST_INCIDENT_ESCALATION_FILE` (YAML or JSON) is read once at start; a bad
one stops the service naming the field.
"""

from __future__ import annotations

from datetime import datetime

from ballast.events.contracts.escalation import (
    DEFAULT_ESCALATION,
    DEFAULT_POLICY,
    EscalationConfig,
    EscalationConfigError,
    EscalationLevel,
    EscalationPolicy,
    EscalationRoute,
    load_escalation,
)
from ballast.events.contracts.incident import IncidentTransition
from ballast.incident_bot.lifecycle import is_active

__all__ = [
    "DEFAULT_ESCALATION",
    "DEFAULT_POLICY",
    "EscalationConfig",
    "EscalationConfigError",
    "EscalationLevel",
    "EscalationPolicy",
    "EscalationRoute",
    "due_escalation",
    "load_escalation",
]


def due_escalation(
    record: IncidentTransition, level_reached: int, policy: EscalationPolicy
) -> tuple[int, datetime, tuple[str, ...]] | None:
    """The next level to notify and when, or None: acknowledged (or past it), or every level notified."""
    if record.acknowledged_at is not None or record.mitigated_at is not None or not is_active(record.status):
        return None
    schedule = policy.schedule()
    if level_reached >= len(schedule):
        return None
    after, targets = schedule[level_reached]
    return level_reached + 1, record.opened_at + after, targets
