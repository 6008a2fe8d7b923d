"""Payload models carried in the `data` of Ballast events and request/reply messages.

Field names are the JSON names on the wire; every model forbids unknown fields so that a producer's typo is caught
by the consumer's schema check instead of being silently dropped.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectRef(Payload):
    api_version: str = Field(description="apiVersion of the object, e.g. apps/v1")
    kind: str
    namespace: str | None = Field(default=None, description="None for cluster-scoped objects")
    name: str
    uid: str


class ObservedObject(Payload):
    """A fact seen on the Kubernetes watch: an object was added, updated or deleted."""

    cluster: str
    object: ObjectRef
    resource_version: str
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    owner: ObjectRef | None = Field(default=None, description="the controller owner reference, if any")
    replicas: int | None = None
    ready_replicas: int | None = None
    image: str | None = None
    phase: str | None = Field(default=None, description="Pod phase or WebApp Ready condition status")


class PodProblem(enum.StrEnum):
    CRASH_LOOP = "crash_loop"
    RESTARTED = "restarted"
    OOM_KILLED = "oom_killed"
    NOT_READY = "not_ready"
    IMAGE_PULL = "image_pull"


class PodIssue(Payload):
    """A Pod of a workload in trouble; `reason` is the kubelet's own word (CrashLoopBackOff, OOMKilled, ...)."""

    cluster: str
    pod: ObjectRef
    owner: ObjectRef | None = None
    problem: PodProblem
    container: str | None = None
    reason: str
    message: str = ""
    restart_count: int = 0
    resource_version: str


class ReconcileOutcome(Payload):
    """What the reconciler did to make a WebApp's children match its spec."""

    cluster: str
    webapp: ObjectRef
    generation: int
    observed_generation: int
    applied: list[str] = Field(default_factory=list, description="children applied, as Kind/name")
    repaired: list[str] = Field(default_factory=list, description="children found drifted and put back")
    reason: str = ""
    message: str = ""


class PolicyCheckRequest(Payload):
    """Rendered manifests to be judged before they are applied."""

    cluster: str
    namespace: str
    operation: str = Field(default="apply", description="apply | delete")
    manifests: list[dict[str, Any]]
    requested_by: str = Field(description="the service or user asking, e.g. reconciler")


class PolicyViolation(Payload):
    policy: str
    object: str = Field(description="Kind/name of the offending manifest")
    message: str


class PolicyCheckResponse(Payload):
    allowed: bool
    violations: list[PolicyViolation] = Field(default_factory=list)
