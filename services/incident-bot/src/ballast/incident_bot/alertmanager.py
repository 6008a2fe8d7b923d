"""Alertmanager's webhook payload (version 4) and the signals in it.

Alertmanager sends a whole group each time (every `group_interval` while it changes, every `repeat_interval`
otherwise): each alert is upserted by its fingerprint, and alerts of one group (its `groupKey`, which names the route
and the group's labels) land in one incident. `status` is trusted, not `endsAt` (a firing alert carries a zero or
future `endsAt`). Fields Alertmanager adds in later versions are accepted and ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ballast.events.contracts.incident import IncidentSource, Severity
from ballast.incident_bot.signals import Signal, SignalState, severity_from_label

# Labels that name the service an alert is about, in the order they are trusted. `sloth_service` is on the burn
# alerts of the SLO rules the slo-engine writes (Sloth's spelling): they join the SLO's incident from the bus.
SERVICE_LABELS = ("service", "sloth_service", "app_kubernetes_io_name", "app", "webapp", "job")
# Those burn alerts' tier, when no `severity` label says otherwise: as the bus's burn events (detection.burn_signal).
SLOTH_SEVERITY = {"page": Severity.HIGH, "ticket": Severity.MEDIUM}


class AmAlert(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: AwareDatetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")  # 0001-01-01T00:00:00Z while firing
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1)


class AmWebhook(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    version: Literal["4"]
    group_key: str = Field(min_length=1, alias="groupKey")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[AmAlert] = Field(min_length=1)


def _severity(labels: dict[str, str]) -> Severity:
    if "severity" not in labels and labels.get("sloth_severity") in SLOTH_SEVERITY:
        return SLOTH_SEVERITY[labels["sloth_severity"]]
    return severity_from_label(labels.get("severity"))


def alert_signals(webhook: AmWebhook, at: datetime) -> list[Signal]:
    """One signal per alert of the group, in the order sent."""
    signals = []
    for alert in webhook.alerts:
        labels = alert.labels
        service = next((labels[name] for name in SERVICE_LABELS if labels.get(name)), None)
        name = labels.get("alertname", "alert")
        summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
        signals.append(
            Signal(
                source=IncidentSource.ALERTMANAGER,
                state=SignalState.FIRING if alert.status == "firing" else SignalState.RESOLVED,
                fingerprint=f"am:{alert.fingerprint}",
                group_key=webhook.group_key,
                service=service or name,
                namespace=labels.get("namespace"),
                joins_service=service is not None,
                severity=_severity(labels),
                title=f"{service or name}: {name}" + (f": {summary}" if summary else ""),
                at=at,
            )
        )
    return signals
