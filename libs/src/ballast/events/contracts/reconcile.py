"""What the reconciler did to a WebApp, on `evt.reconcile.<cluster>.<ns>.<outcome>`."""

from __future__ import annotations

import enum

from pydantic import Field

from ballast.events.contracts.common import ObjectRef, Payload
from ballast.events.registry import EventSpec


class WebAppOutcome(enum.StrEnum):
    RECONCILED = "reconciled"
    DRIFT_REPAIRED = "drift_repaired"
    DEGRADED = "degraded"
    POLICY_DENIED = "policy_denied"
    DELETED = "deleted"


_DESCRIPTIONS = {
    WebAppOutcome.RECONCILED: "A WebApp's children match its spec.",
    WebAppOutcome.DRIFT_REPAIRED: "A child changed or deleted by someone else was put back.",
    WebAppOutcome.DEGRADED: "A WebApp cannot reach its desired state; the message says why.",
    WebAppOutcome.POLICY_DENIED: "The policy gate refused the WebApp's rendered manifests.",
    WebAppOutcome.DELETED: "A WebApp and its children are gone.",
}


class ReconcileOutcome(Payload):
    """What the reconciler did to make a WebApp's children match its spec.

    Event id: `<webapp uid>:<generation>:<outcome>:<detail>`, the detail being the repaired children with their
    restored resourceVersions (each repair is its own fact) or the Degraded reason.
    """

    cluster: str = Field(description="the cluster's name")
    webapp: ObjectRef = Field(description="the WebApp")
    generation: int = Field(description="metadata.generation of the WebApp reconciled")
    observed_generation: int = Field(description="the generation the status now reports")
    applied: list[str] = Field(default_factory=list, description="children applied, as Kind/name")
    repaired: list[str] = Field(default_factory=list, description="children found drifted and put back")
    reason: str = Field(default="", description="the Degraded reason, e.g. PolicyDenied")
    message: str = Field(default="", description="what went wrong, for people")


def reconcile_event_type(outcome: WebAppOutcome) -> str:
    return f"io.ballast.webapp.{outcome}.v1"


RECONCILE_EVENT_TYPES: tuple[EventSpec, ...] = tuple(
    EventSpec(
        ce_type=reconcile_event_type(outcome),
        model=ReconcileOutcome,
        subject=f"evt.reconcile.{{cluster}}.{{namespace}}.{outcome.value}",
        description=_DESCRIPTIONS[outcome],
    )
    for outcome in WebAppOutcome
)
