"""Observed cluster facts on `evt.k8s.<cluster>.<ns|_>.<Kind>.<verb>`, published by the reconciler from its watches."""

from __future__ import annotations

import enum

from pydantic import Field

from ballast.events.contracts.common import CLUSTER_SCOPED, ObjectRef, Payload
from ballast.events.registry import EventSpec

K8S_VERBS = ("created", "updated", "deleted")
OBSERVED_KINDS = ("WebApp", "Deployment", "Pod")


class ObservedObject(Payload):
    """A fact seen on the Kubernetes watch: an object was added, updated or deleted.

    Event id: `<uid>:<resourceVersion>:<verb>`.
    """

    cluster: str = Field(description="the cluster's name")
    object: ObjectRef = Field(description="the object concerned")
    resource_version: str = Field(description="metadata.resourceVersion of the object as seen")
    generation: int | None = Field(default=None, description="metadata.generation, where the kind has one")
    labels: dict[str, str] = Field(default_factory=dict, description="metadata.labels")
    owner: ObjectRef | None = Field(default=None, description="the controller owner reference, if any")
    replicas: int | None = Field(default=None, description="desired replicas (WebApp, Deployment)")
    ready_replicas: int | None = Field(default=None, description="ready replicas (WebApp, Deployment)")
    image: str | None = Field(default=None, description="the (first) container image")
    phase: str | None = Field(default=None, description="Pod phase or WebApp Ready condition status")


class PodProblem(enum.StrEnum):
    CRASH_LOOP = "crash_loop"
    OOM_KILLED = "oom_killed"
    IMAGE_PULL = "image_pull"


class PodIssue(Payload):
    """A Pod of a workload in trouble; `reason` is the kubelet's own word (CrashLoopBackOff, OOMKilled, ...).

    Event id: `<pod uid>:<restart count>:<problem>`, so each crash is told once.
    """

    cluster: str = Field(description="the cluster's name")
    pod: ObjectRef = Field(description="the Pod in trouble")
    owner: ObjectRef | None = Field(default=None, description="the Pod's controller owner reference, if any")
    problem: PodProblem = Field(description="what kind of trouble")
    reason: str = Field(description="the kubelet's reason, e.g. CrashLoopBackOff")
    message: str = Field(default="", description="the kubelet's message")
    restart_count: int = Field(default=0, ge=0, description="restarts of the Pod's containers, summed")
    resource_version: str = Field(description="metadata.resourceVersion of the Pod as seen")


def k8s_subject(cluster: str, namespace: str | None, kind: str, verb: str) -> str:
    return f"evt.k8s.{cluster}.{namespace or CLUSTER_SCOPED}.{kind}.{verb}"


def k8s_event_type(kind: str, verb: str) -> str:
    return f"io.k8s.{kind.lower()}.{verb}.v1"


def pod_issue_event_type(problem: PodProblem) -> str:
    return f"io.k8s.pod.{problem.value}.v1"


K8S_EVENT_TYPES: tuple[EventSpec, ...] = (
    *(
        EventSpec(
            ce_type=k8s_event_type(kind, verb),
            model=ObservedObject,
            subject=f"evt.k8s.{{cluster}}.{{namespace}}.{kind}.{verb}",
            description=f"A {kind} was {verb} in the cluster (seen on the watch).",
        )
        for kind in OBSERVED_KINDS
        for verb in K8S_VERBS
    ),
    *(
        EventSpec(
            ce_type=pod_issue_event_type(problem),
            model=PodIssue,
            subject=f"evt.k8s.{{cluster}}.{{namespace}}.Pod.{problem.value}",
            description=f"A Pod of a workload is in trouble: {problem.value.replace('_', ' ')}.",
        )
        for problem in PodProblem
    ),
)
