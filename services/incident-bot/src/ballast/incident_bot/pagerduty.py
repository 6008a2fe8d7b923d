"""A PagerDuty Events API v2-compatible endpoint: anything that can page PagerDuty can page Ballast.

`trigger` opens an incident or joins the one open for its `dedup_key` (one is made when the event has none, and
returned), `acknowledge` and `resolve` act on it. The integration's `routing_key` is the credential, as at PagerDuty.
Answers are PagerDuty's: 202 `{"status": "success", "message": "Event processed", "dedup_key": ...}`, 400
`{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}` naming the fields.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from ballast.events.contracts.incident import IncidentSource, Severity
from ballast.incident_bot.signals import Signal, SignalState

_SEVERITY = {
    "critical": Severity.CRITICAL,
    "error": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "info": Severity.LOW,
}


class PdPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    summary: str = Field(min_length=1, max_length=1024)
    source: str = Field(min_length=1)
    severity: Literal["critical", "error", "warning", "info"]
    timestamp: AwareDatetime | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(default=None, alias="class")
    custom_details: dict[str, Any] | str | None = None


class PdLink(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    href: str = Field(min_length=1)
    text: str | None = None


class PdImage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    src: str = Field(min_length=1)
    href: str | None = None
    alt: str | None = None


class PdEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routing_key: str = Field(min_length=1)
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(default=None, min_length=1, max_length=255)
    payload: PdPayload | None = None
    client: str | None = None
    client_url: str | None = None
    links: list[PdLink] = Field(default_factory=list)
    images: list[PdImage] = Field(default_factory=list)

    @model_validator(mode="after")
    def _action_needs(self) -> Self:
        if self.event_action == "trigger" and self.payload is None:
            raise ValueError("payload is required for event_action trigger")
        if self.event_action != "trigger" and self.dedup_key is None:
            raise ValueError(f"dedup_key is required for event_action {self.event_action}")
        return self


def pagerduty_signal(event: PdEvent, at: datetime) -> tuple[Signal, str]:
    """The signal, and the dedup key the answer names (made up for a trigger that has none)."""
    dedup_key = event.dedup_key or uuid.uuid4().hex
    payload = event.payload
    if payload is None:  # acknowledge or resolve: they name the incident by dedup key alone
        state = SignalState.ACKNOWLEDGED if event.event_action == "acknowledge" else SignalState.RESOLVED
        signal = Signal(
            source=IncidentSource.PAGERDUTY,
            state=state,
            fingerprint=f"pd:{dedup_key}",
            service="unknown",
            joins_service=False,
            title=f"{event.event_action} {dedup_key}",
            at=at,
            by=event.client,
        )
        return signal, dedup_key
    details = payload.custom_details if isinstance(payload.custom_details, dict) else {}
    namespace = details.get("namespace")
    service = payload.component or payload.source
    signal = Signal(
        source=IncidentSource.PAGERDUTY,
        state={"trigger": SignalState.FIRING, "acknowledge": SignalState.ACKNOWLEDGED}.get(
            event.event_action, SignalState.RESOLVED
        ),
        fingerprint=f"pd:{dedup_key}",
        service=service,
        namespace=namespace if isinstance(namespace, str) and namespace else None,
        joins_service=payload.component is not None,
        severity=_SEVERITY[payload.severity],
        title=f"{service}: {payload.summary}",
        at=at,
        by=event.client,
    )
    return signal, dedup_key
