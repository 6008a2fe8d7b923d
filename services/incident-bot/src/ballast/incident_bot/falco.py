"""Falco events in falcosidekick's webhook shape, as security incidents.

One incident per rule and workload: the same rule hitting the same pod again joins it; security incidents never
join a service's burn incident (they are a different kind of trouble, with other people to call) and never resolve
by themselves (Falco reports what happened, not that it stopped): a person resolves them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from ballast.events.contracts.incident import IncidentSource, Severity
from ballast.incident_bot.signals import Signal, SignalState

_PRIORITY = {
    "emergency": Severity.CRITICAL,
    "alert": Severity.CRITICAL,
    "critical": Severity.CRITICAL,
    "error": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "notice": Severity.LOW,
    "informational": Severity.LOW,
    "info": Severity.LOW,
    "debug": Severity.LOW,
}


class FalcoEvent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    uuid: str | None = None
    output: str = Field(min_length=1)
    priority: str
    rule: str = Field(min_length=1)
    time: AwareDatetime
    source: str = "syscall"
    tags: list[str] = Field(default_factory=list)
    hostname: str | None = None
    output_fields: dict[str, Any] = Field(default_factory=dict)

    @field_validator("priority")
    @classmethod
    def _known_priority(cls, value: str) -> str:
        if value.strip().lower() not in _PRIORITY:
            raise ValueError(f"unknown Falco priority {value!r}; one of {', '.join(sorted(_PRIORITY))}")
        return value


def falco_signal(event: FalcoEvent, at: datetime) -> Signal:
    fields = event.output_fields
    namespace = fields.get("k8s.ns.name")
    pod = fields.get("k8s.pod.name")
    where = f"{namespace}/{pod}" if namespace and pod else (event.hostname or "unknown host")
    return Signal(
        source=IncidentSource.FALCO,
        state=SignalState.FIRING,
        fingerprint=f"falco:{event.rule}:{where}",
        service=str(pod) if pod else (event.hostname or "unknown host"),
        namespace=str(namespace) if namespace else None,
        joins_service=False,
        severity=_PRIORITY[event.priority.strip().lower()],
        title=f"security: {event.rule} on {where}",
        at=at,
        ends=False,
    )
