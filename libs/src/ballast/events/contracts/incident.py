"""The incident-bot's contract: each incident's lifecycle and its postmortem, on `evt.incident`.

Events go out on `evt.incident.<cluster>.<ns|_>.<event>`, the namespace being the affected service's.
"""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Annotated, Self

from pydantic import AfterValidator, AwareDatetime, Field, model_validator

from ballast.events.contracts.common import Payload, platform_event, platform_event_type, platform_subject
from ballast.events.registry import EndpointSpec, EventSpec

AREA = "incident"


class IncidentStatus(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    CLOSED = "closed"


class IncidentEvent(enum.StrEnum):
    OPENED = "opened"
    ACKNOWLEDGED = "acknowledged"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    CLOSED = "closed"
    UPDATED = "updated"
    ESCALATED = "escalated"
    POSTMORTEM_PUBLISHED = "postmortem_published"


def transition_event(status: IncidentStatus) -> IncidentEvent:
    """The event telling that an incident entered `status`."""
    return IncidentEvent.OPENED if status is IncidentStatus.OPEN else IncidentEvent(status.value)


def incident_event_type(event: IncidentEvent) -> str:
    return platform_event_type(AREA, event)


def incident_subject(cluster: str, namespace: str | None, event: IncidentEvent) -> str:
    return platform_subject(AREA, cluster, namespace, event)


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class IncidentSource(enum.StrEnum):
    """Where the signal that opened the incident came from."""

    ALERTMANAGER = "alertmanager"
    PAGERDUTY = "pagerduty"  # the Events API v2-compatible endpoint
    SLO = "slo"  # a burn tier firing
    RECONCILE = "reconcile"  # a WebApp degraded
    CHAOS = "chaos"  # a chaos run aborted
    POLICY = "policy"  # a hotfix override of a frozen budget
    FALCO = "falco"  # a security event
    SLACK = "slack"  # declared by a person


class IncidentRole(enum.StrEnum):
    """The roles of an incident response, as the Incident Command System names them: the commander leads and decides,
    communications keeps the people affected told, operations works the fix, the scribe keeps the timeline."""

    COMMANDER = "commander"
    COMMUNICATIONS = "communications"
    OPERATIONS = "operations"
    SCRIBE = "scribe"


# The roles held in a record's `roles`: the commander has a field of its own.
SUPPORTING_ROLES: tuple[IncidentRole, ...] = tuple(r for r in IncidentRole if r is not IncidentRole.COMMANDER)


def _supporting_only(roles: dict[IncidentRole, str]) -> dict[IncidentRole, str]:
    if IncidentRole.COMMANDER in roles:
        raise ValueError("the commander is not one of `roles`: it is the record's `commander`")
    return roles


SupportingRoles = Annotated[dict[IncidentRole, Annotated[str, Field(min_length=1)]], AfterValidator(_supporting_only)]


class PostmortemFormat(enum.StrEnum):
    MARKDOWN = "markdown"
    JSON = "json"


class IncidentFacts(Payload):
    """Who an incident is, what it is about and how bad it is."""

    cluster: str = Field(description="the cluster's name")
    incident_id: str = Field(min_length=1, description="the incident's id, e.g. INC-42")
    service: str = Field(min_length=1, description="the service affected")
    namespace: str | None = Field(default=None, description="the service's namespace, when it has one")
    severity: Severity = Field(description="impact, from the burn tier and the alert's labels")


class IncidentTransition(IncidentFacts):
    """An incident entered a status of its lifecycle; the record as it stands after the change.

    Event id: `<incident_id>:<status>:<the status' timestamp>` (an incident resolved twice, reopened between, tells
    two resolutions).
    """

    title: str = Field(min_length=1, description="what is wrong, for people")
    status: IncidentStatus = Field(description="the status entered")
    source: IncidentSource = Field(description="where the signal that opened it came from")
    fingerprint: str = Field(min_length=1, description="the dedup key: signals with the same one join this incident")
    group_key: str | None = Field(default=None, description="the Alertmanager group key, when it came from one")
    commander: str | None = Field(default=None, description="the incident commander, once someone took the role")
    roles: SupportingRoles = Field(
        default_factory=dict, description="who holds the other roles (communications, operations, scribe), if anyone"
    )
    changed_by: str | None = Field(default=None, description="who made the change; None when the bot did")
    opened_at: AwareDatetime = Field(description="when the incident was opened")
    acknowledged_at: AwareDatetime | None = Field(default=None, description="when someone acknowledged it")
    mitigated_at: AwareDatetime | None = Field(default=None, description="when the impact stopped")
    resolved_at: AwareDatetime | None = Field(default=None, description="when the cause was fixed")
    closed_at: AwareDatetime | None = Field(default=None, description="when the follow-up was done")
    time_to_acknowledge: timedelta | None = Field(
        default=None, ge=timedelta(0), description="acknowledged_at - opened_at (this incident's share of MTTA)"
    )
    time_to_resolve: timedelta | None = Field(
        default=None, ge=timedelta(0), description="resolved_at - opened_at (this incident's share of MTTR)"
    )

    @model_validator(mode="after")
    def _status_has_its_time(self) -> Self:
        entered = {
            IncidentStatus.ACKNOWLEDGED: self.acknowledged_at,
            IncidentStatus.MITIGATED: self.mitigated_at,
            IncidentStatus.RESOLVED: self.resolved_at,
            IncidentStatus.CLOSED: self.closed_at,
        }
        if entered.get(self.status, self.opened_at) is None:
            raise ValueError(f"status {self.status} needs {self.status}_at")
        return self


class IncidentUpdated(IncidentFacts):
    """An incident's severity, commander or another role changed while its status did not (the facts as they stand
    after).

    Event id: `<incident_id>:updated:<at>`.
    """

    commander: str | None = Field(default=None, description="the incident commander after the change")
    roles: SupportingRoles = Field(default_factory=dict, description="who holds the other roles after the change")
    changed_by: str | None = Field(default=None, description="who made the change; None when the bot did")
    at: AwareDatetime = Field(description="when the change was made")


class IncidentEscalated(IncidentFacts):
    """Nobody acknowledged an incident in time: the next level of its escalation policy was notified.

    Event id: `<incident_id>:escalated:<level>`.
    """

    level: int = Field(ge=1, description="the escalation level reached (1 is the first after the on-call)")
    notified: tuple[str, ...] = Field(min_length=1, description="who this level notified")
    unacknowledged_for: timedelta = Field(gt=timedelta(0), description="how long the incident waited for an ack")
    at: AwareDatetime = Field(description="when the level was notified")


class PostmortemPublished(Payload):
    """An incident's postmortem document was written and stored (regenerated from the same events, it is the same).

    Event id: `<incident_id>:postmortem:<format>:<digest>`.
    """

    cluster: str = Field(description="the cluster's name")
    incident_id: str = Field(min_length=1, description="the incident the postmortem is about")
    postmortem_id: str = Field(min_length=1, description="the document's id")
    format: PostmortemFormat = Field(description="the document's format")
    location: str = Field(min_length=1, description="where the document is: a URL, or an object store key")
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256:<hex> of the document's bytes")
    generated_at: AwareDatetime = Field(description="when the document was generated")


INCIDENT_EVENT_TYPES: tuple[EventSpec, ...] = (
    platform_event(AREA, IncidentEvent.OPENED, IncidentTransition, "An incident was opened."),
    platform_event(AREA, IncidentEvent.ACKNOWLEDGED, IncidentTransition, "Someone acknowledged an incident."),
    platform_event(AREA, IncidentEvent.MITIGATED, IncidentTransition, "An incident's impact stopped."),
    platform_event(AREA, IncidentEvent.RESOLVED, IncidentTransition, "An incident's cause was fixed."),
    platform_event(AREA, IncidentEvent.CLOSED, IncidentTransition, "An incident's follow-up is done."),
    platform_event(
        AREA, IncidentEvent.UPDATED, IncidentUpdated, "An incident's severity, commander or another role changed."
    ),
    platform_event(AREA, IncidentEvent.ESCALATED, IncidentEscalated, "An unacknowledged incident was escalated."),
    platform_event(
        AREA, IncidentEvent.POSTMORTEM_PUBLISHED, PostmortemPublished, "An incident's postmortem was published."
    ),
)


# --- svc.incident.* ------------------------------------------------------------------------------------------------


class IncidentQuery(Payload):
    """Which incidents to list; every filter left out matches all."""

    include_resolved: bool = Field(default=False, description="also resolved and closed incidents")
    service: str | None = Field(default=None, description="only incidents about this service")
    status: IncidentStatus | None = Field(default=None, description="only incidents in this status")


class IncidentList(Payload):
    """The incidents a query names, oldest first."""

    incidents: tuple[IncidentTransition, ...] = Field(description="each incident's record as it stands")


class IncidentRef(Payload):
    """One incident by its id."""

    incident_id: str = Field(min_length=1, description="the incident's id, e.g. INC-42")


class IncidentAction(IncidentRef):
    """A person moving an incident along its lifecycle."""

    by: str = Field(min_length=1, description="who acts (a user name); recorded as changed_by")


class RoleAssignment(IncidentAction):
    """A person giving someone a role in an incident (taking it over from whoever held it)."""

    role: IncidentRole = Field(description="the role given")
    to: str = Field(min_length=1, description="who takes it (a user name, or slack:<user id>)")


class PostmortemRequest(IncidentRef):
    """Write an incident's postmortem from the event log now."""

    format: PostmortemFormat = Field(default=PostmortemFormat.MARKDOWN, description="the document to answer with")


class PostmortemDocument(Payload):
    """An incident's postmortem as written and stored (both formats are stored; `content` is the one asked for)."""

    incident_id: str = Field(min_length=1, description="the incident the postmortem is about")
    postmortem_id: str = Field(min_length=1, description="the document's id")
    format: PostmortemFormat = Field(description="the format of `content`")
    content: str = Field(description="the document")
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256:<hex> of the document's bytes")
    location: str = Field(min_length=1, description="where this format is stored (object store bucket/key)")
    events_read: int = Field(ge=0, description="events read from the log to write it")
    posted_to: str | None = Field(default=None, description="the Slack channel it was posted in; None without Slack")


def _endpoint(name: str, request: type[Payload], response: type[Payload], description: str) -> EndpointSpec:
    return EndpointSpec(service="incident", name=name, request=request, response=response, description=description)


INCIDENT_LIST = _endpoint("list", IncidentQuery, IncidentList, "The incidents a query names, oldest first.")
INCIDENT_SHOW = _endpoint("show", IncidentRef, IncidentTransition, "One incident's record; 404 for an unknown id.")
INCIDENT_ACK = _endpoint("ack", IncidentAction, IncidentTransition, "Acknowledge an incident; 409 if it is past that.")
INCIDENT_MITIGATE = _endpoint(
    "mitigate", IncidentAction, IncidentTransition, "Mark an incident's impact stopped; 409 if it is past that."
)
INCIDENT_RESOLVE = _endpoint("resolve", IncidentAction, IncidentTransition, "Resolve an incident; 409 if it is closed.")
INCIDENT_ROLE = _endpoint(
    "role", RoleAssignment, IncidentTransition, "Give someone a role in an incident; 404 for an unknown id."
)
INCIDENT_POSTMORTEM = _endpoint(
    "postmortem",
    PostmortemRequest,
    PostmortemDocument,
    "Write, store (and post to Slack, when wired) an incident's postmortem; 404 for an unknown id.",
)
INCIDENT_ENDPOINTS: tuple[EndpointSpec, ...] = (
    INCIDENT_LIST,
    INCIDENT_SHOW,
    INCIDENT_ACK,
    INCIDENT_MITIGATE,
    INCIDENT_RESOLVE,
    INCIDENT_ROLE,
    INCIDENT_POSTMORTEM,
)
