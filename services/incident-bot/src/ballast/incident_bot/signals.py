"""A signal: one source's word that something is wrong (firing) or right again (resolved), whatever the door.

Every source (the bus, Alertmanager, PagerDuty, Falco) is turned into signals; the incident store decides from them
alone. Dedup and grouping work on three keys, tried in this order against the incidents still active:

- `fingerprint`: the same alert again (Alertmanager's fingerprint, a PagerDuty dedup_key, an SLO's tier). A repeat
  of a firing alert that is already firing changes nothing.
- `group_key`: alerts Alertmanager's route grouped together (its groupKey) land in one incident.
- the service (`<namespace>/<service>`): everything about one service while it burns is one incident, so an
  Alertmanager alert and the bus's burn event for the same service are told once.
"""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ballast.events.contracts.incident import IncidentSource, Severity


class SignalState(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"  # PagerDuty's acknowledge: a person saw it, elsewhere


class Signal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: IncidentSource
    state: SignalState
    fingerprint: str = Field(min_length=1, description="the alert's own identity: repeats share it")
    group_key: str | None = None
    service: str = Field(min_length=1)
    namespace: str | None = None
    joins_service: bool = True  # False: only the fingerprint and group key match (e.g. a person's declaration)
    severity: Severity = Severity.MEDIUM
    title: str = Field(min_length=1)
    at: AwareDatetime
    by: str | None = None  # who sent it, when a person did (a PagerDuty acknowledge names no one)
    # False: the source never says "over" (a chaos abort, a hotfix override, a Falco event). Joining an incident,
    # such a signal is context for it and does not keep it from resolving when its alerts do.
    ends: bool = True

    def match_keys(self) -> tuple[str, ...]:
        """The keys an active incident is found by, most specific first."""
        keys = [f"fp:{self.fingerprint}"]
        if self.group_key:
            keys.append(f"group:{self.group_key}")
        if self.joins_service:
            keys.append(service_key(self.namespace, self.service))
        return tuple(keys)


def service_key(namespace: str | None, service: str) -> str:
    return f"svc:{namespace or '_'}/{service}"


def key_digest(match_key: str) -> str:
    """A KV-safe name for a match key (group keys hold braces, quotes and colons)."""
    return hashlib.sha256(match_key.encode()).hexdigest()[:40]


# --- severity from labels --------------------------------------------------------------------------------------------

_LABEL_SEVERITY = {
    "critical": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "high": Severity.HIGH,
    "error": Severity.HIGH,
    "major": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "warn": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "ticket": Severity.MEDIUM,
    "minor": Severity.LOW,
    "low": Severity.LOW,
    "info": Severity.LOW,
    "informational": Severity.LOW,
    "none": Severity.LOW,
}


def severity_from_label(value: str | None, default: Severity = Severity.MEDIUM) -> Severity:
    """Alertmanager's `severity` label (or PagerDuty's severity) as an incident severity; unknown values keep the
    default rather than fail: labels are free text."""
    if value is None:
        return default
    return _LABEL_SEVERITY.get(value.strip().lower(), default)


def utc_iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
