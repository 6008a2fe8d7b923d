"""What the incident-bot keeps per incident in the `incidents` bucket, and the bucket's keys.

incident.<id>        StoredIncident: the record (the contract's IncidentTransition), its alerts, escalation
                     progress, a pending resolution, and the events written with it but not yet published
claim.<digest>       Claim: an active incident holds each of its match keys (fingerprint, group key, service), so
                     that replicas racing on the same new alert open one incident, not two
counter              IncidentCounter: the last incident number (INC-<n>)
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ballast.events.contracts.incident import IncidentSource, IncidentTransition

INCIDENT_PREFIX = "incident."
COUNTER_KEY = "counter"


def incident_key(incident_id: str) -> str:
    return f"{INCIDENT_PREFIX}{incident_id}"


def claim_key(digest: str) -> str:
    return f"claim.{digest}"


class Outgoing(BaseModel):
    """An event or command stored with the state that caused it, until it is known to be on the bus: a process
    stopped between the two leaves it for the next change (or start) to publish, under the same id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str
    ce_type: str
    id: str
    ce_subject: str | None = None
    data: dict[str, Any]  # the payload as JSON; its model is the catalogue's for ce_type


class AlertMark(BaseModel):
    """One alert (by fingerprint) that joined the incident, and whether it still fires."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: IncidentSource
    title: str
    firing: bool
    since: AwareDatetime  # when it last started firing, or stopped
    ends: bool = True  # the source says when it is over (Signal.ends)


class StoredIncident(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    record: IncidentTransition
    alerts: dict[str, AlertMark] = Field(default_factory=dict)
    claims: tuple[str, ...] = ()  # the match keys this incident holds while active
    policy: str = "default"
    escalation_level: int = 0  # the last level notified (0: none)
    resolve_due_at: AwareDatetime | None = None  # every alert resolved: resolve then, unless one fires again
    flaps_suppressed: int = 0
    unpublished: tuple[Outgoing, ...] = ()
    # Being opened: the record exists, its claims are still being taken. Other replicas wait rather than join or
    # announce it, so that an opening that loses a claim to another replica's incident can withdraw it unseen.
    opening: bool = False

    @property
    def incident_id(self) -> str:
        return self.record.incident_id

    def firing(self) -> bool:
        """Whether something still keeps the incident from resolving by itself: an alert that fires and will say when
        it is over. Signals that never say so (a chaos abort, a hotfix override, a Falco event) are context once such
        an alert joined; an incident with none of those alerts waits for people."""
        ending = [mark for mark in self.alerts.values() if mark.ends]
        return not ending or any(mark.firing for mark in ending)


class Claim(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    incident_id: str
    match_key: str


class IncidentCounter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    last: int = Field(ge=0)


def incident_number(incident_id: str) -> int | None:
    prefix, _, number = incident_id.partition("-")
    return int(number) if prefix == "INC" and number.isdigit() else None
