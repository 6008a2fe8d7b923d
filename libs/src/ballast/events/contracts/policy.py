"""The policy-gate's contract: `svc.policy.check`, and the decision log and audit findings on `evt.policy`.

Decisions go out on `evt.policy.<cluster>.<ns>.<allowed|denied|warned>` whether they were asked at the admission
webhook or on the bus, so that replay tooling can run a candidate policy against them.
"""

from __future__ import annotations

import enum
from typing import Any, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from ballast.events.contracts.common import (
    ManifestRef,
    ObjectRef,
    Payload,
    platform_event,
    platform_event_type,
    platform_subject,
)
from ballast.events.registry import EndpointSpec, EventSpec

AREA = "policy"
ERROR_BUDGET_FREEZE = "ErrorBudgetFreeze"  # the constraint kind of a change refused by an exhausted error budget


class EnforcementAction(enum.StrEnum):
    """Gatekeeper's `spec.enforcementAction`."""

    DENY = "deny"
    DRYRUN = "dryrun"  # recorded only
    WARN = "warn"  # allowed, with a warning to the requester


class Decision(enum.StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    WARNED = "warned"


class DecisionSource(enum.StrEnum):
    ADMISSION = "admission"  # the API server's validating webhook
    BUS = "bus"  # svc.policy.check


class Operation(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    CONNECT = "connect"
    APPLY = "apply"  # server-side apply of rendered manifests (create or update), asked on the bus


class AuditTrigger(enum.StrEnum):
    PERIODIC = "periodic"
    OUTAGE_GAP = "outage_gap"  # the gate was away: what was admitted meanwhile is audited at once


class PolicyEvent(enum.StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    WARNED = "warned"
    AUDIT_VIOLATION = "audit_violation"


def decision_event(decision: Decision) -> PolicyEvent:
    return PolicyEvent(decision.value)


def policy_event_type(event: PolicyEvent) -> str:
    return platform_event_type(AREA, event)


def policy_subject(cluster: str, namespace: str | None, event: PolicyEvent) -> str:
    return platform_subject(AREA, cluster, namespace, event)


class ConstraintResult(Payload):
    """A constraint the object violates, as its template's `violation` rule put it."""

    kind: str = Field(
        min_length=1,
        description="the constraint kind, e.g. K8sAllowedRepos; ErrorBudgetFreeze for a "
        "change refused because the service's error budget is exhausted",
    )
    name: str = Field(min_length=1, description="the constraint's name (for ErrorBudgetFreeze: <ns>/<slo>)")
    enforcement_action: EnforcementAction = Field(description="what the constraint does about a violation")
    message: str = Field(description="the violation's msg")


class PolicyDecision(Payload):
    """What the gate decided about one object, with why and how fast.

    Event id: `<source>:<request_uid>:<kind>/<namespace>/<name>:<decision>`; a repeated identical bus check with the
    same verdict is logged once, and one whose verdict changed (a freeze began or ended) is logged again.
    """

    cluster: str = Field(description="the cluster's name")
    source: DecisionSource = Field(description="where the gate was asked")
    request_uid: str = Field(
        min_length=1, description="the AdmissionReview request uid; for a bus check, the SHA-256 of the request body"
    )
    operation: Operation = Field(description="what was asked to be done to the object")
    object: ManifestRef = Field(description="the object judged")
    manifest: dict[str, Any] | None = Field(
        default=None,
        description="the object as it was judged (the admission request's object, or the rendered manifest), so "
        "that replay tooling can judge it again under a candidate policy; None when not recorded",
    )
    requested_by: str = Field(description="the user (admission) or the service (bus) asking")
    decision: Decision = Field(description="the verdict")
    constraints: tuple[ConstraintResult, ...] = Field(default=(), description="the constraints violated")
    override_reason: str | None = Field(
        default=None,
        min_length=1,
        description="the hotfix annotation's reason that let the change through an exhausted error budget",
    )
    latency_ms: float = Field(ge=0, description="time the gate took to decide")
    at: AwareDatetime = Field(description="when the decision was made")

    @model_validator(mode="after")
    def _decision_follows_constraints(self) -> Self:
        # A hotfix overrides the error-budget freeze only, never another policy's denial.
        actions = {c.enforcement_action for c in self.constraints}
        denials = [c for c in self.constraints if c.enforcement_action is EnforcementAction.DENY]
        if any(c.kind != ERROR_BUDGET_FREEZE or self.override_reason is None for c in denials):
            expected = Decision.DENIED
        elif EnforcementAction.WARN in actions:
            expected = Decision.WARNED
        else:
            expected = Decision.ALLOWED
        if self.decision is not expected:
            raise ValueError(f"decision {self.decision} contradicts the constraints, which make it {expected}")
        return self


class AuditViolation(Payload):
    """An existing object found violating a constraint by an audit.

    Event id: `<audit_started_at>:<constraint kind>/<constraint name>:<object uid>:<resource_version>`.
    """

    cluster: str = Field(description="the cluster's name")
    trigger: AuditTrigger = Field(description="why this audit ran")
    audit_started_at: AwareDatetime = Field(description="when the audit run began; names the run")
    constraint: ConstraintResult = Field(description="the constraint violated")
    object: ObjectRef = Field(description="the object in violation")
    resource_version: str = Field(description="metadata.resourceVersion of the object audited")


POLICY_EVENT_TYPES: tuple[EventSpec, ...] = (
    platform_event(AREA, PolicyEvent.ALLOWED, PolicyDecision, "The gate allowed an object (dryrun findings aside)."),
    platform_event(AREA, PolicyEvent.DENIED, PolicyDecision, "The gate refused an object; the constraints say why."),
    platform_event(AREA, PolicyEvent.WARNED, PolicyDecision, "The gate allowed an object with warnings."),
    platform_event(AREA, PolicyEvent.AUDIT_VIOLATION, AuditViolation, "An audit found an object violating a policy."),
)


# --- svc.policy.check ----------------------------------------------------------------------------------------------


class PolicyCheckRequest(Payload):
    """Rendered manifests to be judged before they are applied."""

    cluster: str = Field(description="the cluster's name")
    namespace: str = Field(description="the namespace the manifests go to")
    operation: Literal[Operation.APPLY, Operation.DELETE] = Field(
        default=Operation.APPLY, description="what the requester is about to do with the manifests"
    )
    manifests: list[dict[str, Any]] = Field(description="the objects, as they would be sent to the API server")
    requested_by: str = Field(description="the service or user asking, e.g. reconciler")


class PolicyViolation(Payload):
    """A policy a rendered manifest violates."""

    policy: str = Field(description="the policy (constraint) violated")
    object: str = Field(description="Kind/name of the offending manifest")
    message: str = Field(description="the violation's msg")
    enforcement_action: EnforcementAction = Field(
        default=EnforcementAction.DENY, description="deny refuses; warn and dryrun are reported only"
    )


class PolicyCheckResponse(Payload):
    """The verdict on a check: allowed unless a violation's action is deny."""

    allowed: bool = Field(description="whether the manifests may be applied")
    violations: list[PolicyViolation] = Field(default_factory=list, description="what each manifest violates")


POLICY_CHECK = EndpointSpec(
    service="policy",
    name="check",
    request=PolicyCheckRequest,
    response=PolicyCheckResponse,
    description="Judge rendered manifests against the active policies before they are applied.",
)
