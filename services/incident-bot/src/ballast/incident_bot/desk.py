"""The incident desk: what people can do to incidents, whichever door they come through (Slack, the CLI, the bus).

One seam between the doors and the lifecycle: the Slack bot's buttons and `/incident` commands call it, and the
incident store implements it. Every call returns the record as it stands after the change.
"""

from __future__ import annotations

from typing import Protocol

from ballast.events.contracts.incident import IncidentRole, IncidentTransition, Severity


class IncidentNotFound(LookupError):
    """No incident has that id."""


class IncidentDesk(Protocol):
    async def declare(self, *, title: str, service: str, severity: Severity, by: str) -> IncidentTransition:
        """Opens an incident a person declared (source `slack`)."""
        ...

    async def acknowledge(self, incident_id: str, *, by: str) -> IncidentTransition: ...

    async def mitigate(self, incident_id: str, *, by: str) -> IncidentTransition: ...

    async def resolve(self, incident_id: str, *, by: str) -> IncidentTransition: ...

    async def set_severity(self, incident_id: str, severity: Severity, *, by: str) -> IncidentTransition: ...

    async def assign_role(self, incident_id: str, role: IncidentRole, to: str, *, by: str) -> IncidentTransition:
        """Gives `to` the role (the commander's, or another: communications, operations, scribe)."""
        ...

    async def get(self, incident_id: str) -> IncidentTransition:
        """The incident's record; `IncidentNotFound` for an unknown id."""
        ...

    async def open_incidents(self) -> list[IncidentTransition]:
        """Every incident not yet resolved, oldest first."""
        ...
