"""What the reconciler tells the rest of the platform: reconcile outcomes and observed cluster facts as CloudEvents.

Event ids derive from the fact itself (uid, generation or resourceVersion, what happened), so a repeated reconcile or
a relist after a restart publishes the same id and JetStream keeps it once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from ballast.bus.publisher import Publisher
from ballast.events import Envelope, new_event
from ballast.events.contracts.common import ObjectRef, platform_subject
from ballast.events.contracts.k8s import (
    OBSERVED_KINDS,
    ObservedObject,
    PodIssue,
    PodProblem,
    k8s_event_type,
    k8s_subject,
    pod_issue_event_type,
)
from ballast.events.contracts.reconcile import ReconcileOutcome, WebAppOutcome, reconcile_event_type
from ballast.kube.informer import WatchEvent
from ballast.kube.resource import POD, WEBAPP, Resource
from ballast.reconciler.api import WebApp
from ballast.reconciler.reconcile import Repair
from ballast.reconciler.status import Problem, pod_problem
from ballast.runtime.outbox import Outbox

VERBS = {"ADDED": "created", "MODIFIED": "updated", "DELETED": "deleted"}
POD_PROBLEMS = {
    "CrashLoopBackOff": PodProblem.CRASH_LOOP,
    "OOMKilled": PodProblem.OOM_KILLED,
    "ImagePullBackOff": PodProblem.IMAGE_PULL,
    "ErrImagePull": PodProblem.IMAGE_PULL,
}


class ReconcilerEvents:
    """Buffers events from watch callbacks and reconciles, and publishes them in batches from one task."""

    def __init__(self, publisher: Publisher, cluster: str, *, capacity: int = 10_000) -> None:
        self.cluster = cluster
        self.source = f"/clusters/{cluster}/reconciler"
        # Observed facts can be rebuilt from the cluster; holding the operator back for them would be worse.
        self._outbox: Outbox[tuple[str, Envelope[BaseModel]]] = Outbox(
            "reconciler-events", publisher.publish_all, capacity=capacity, max_batch=500
        )
        # What the last event told of each object (by uid), as a hash: most updates of a Deployment or Pod (the
        # controllers' status bookkeeping, a pod being bound) change nothing an event carries, and an "updated" that
        # repeats the last one only costs its consumers. A restart forgets: the next update is told again.
        self._told: dict[str, int] = {}

    def _put(self, subject: str, event: Envelope[BaseModel]) -> None:
        self._outbox.offer((subject, event))

    async def run(self, stop: asyncio.Event) -> None:
        await self._outbox.run(stop)

    # -- reconcile outcomes ------------------------------------------------------------------------------------------

    async def outcome(
        self,
        outcome: WebAppOutcome,
        webapp: WebApp,
        repaired: list[Repair],
        problem: Problem | None,
        applied: list[str],
    ) -> None:
        metadata = webapp.metadata
        generation = metadata.generation or 0
        # Each repair is its own fact, told apart by the restored objects' versions.
        detail = ",".join(f"{r.kind}/{r.name}@{r.resource_version}" for r in repaired) or (
            problem.reason if problem else ""
        )
        payload = ReconcileOutcome(
            cluster=self.cluster,
            webapp=ObjectRef(
                api_version=WEBAPP.api_version,
                kind=WEBAPP.kind,
                namespace=metadata.namespace,
                name=metadata.name,
                uid=metadata.uid or "",
            ),
            generation=generation,
            observed_generation=generation,
            applied=applied,
            repaired=[f"{r.kind}/{r.name}" for r in repaired],
            reason=problem.reason if problem else "",
            message=problem.message if problem else "",
        )
        event = new_event(
            reconcile_event_type(outcome),
            self.source,
            payload,
            subject=f"{metadata.namespace}/{metadata.name}",
            event_id=f"{metadata.uid}:{generation}:{outcome}:{detail}",
        )
        self._put(platform_subject("reconcile", self.cluster, metadata.namespace, outcome), event)

    # -- observed facts ----------------------------------------------------------------------------------------------

    def observed(self, resource: Resource, event_type: WatchEvent, obj: dict[str, Any]) -> None:
        """A watched object changed (WebApps, Deployments and Pods are told)."""
        kind = resource.kind
        if kind not in OBSERVED_KINDS:
            return
        metadata = obj["metadata"]
        controller = next((r for r in metadata.get("ownerReferences", []) if r.get("controller")), None)
        facts = _facts(kind, obj)
        if self._changed(event_type, metadata.get("uid", ""), facts, controller):
            self._tell_observed(event_type, resource, obj, facts, controller)
        if kind == "Pod" and event_type != "DELETED":
            self._pod_issue(obj, controller)  # a crash shows in container statuses, which the facts leave out

    def _changed(self, event_type: WatchEvent, uid: str, facts: dict[str, Any], owner: dict[str, Any] | None) -> bool:
        """Whether the event would tell something new of the object: created, deleted, or one of its facts moved."""
        if event_type == "DELETED":
            self._told.pop(uid, None)
            return True
        labels = tuple(sorted(facts["labels"].items()))
        told = hash((owner["uid"] if owner else None, labels, *(v for k, v in facts.items() if k != "labels")))
        if event_type == "MODIFIED" and self._told.get(uid) == told:
            return False
        self._told[uid] = told
        return True

    def _tell_observed(
        self,
        event_type: WatchEvent,
        resource: Resource,
        obj: dict[str, Any],
        facts: dict[str, Any],
        owner: dict[str, Any] | None,
    ) -> None:
        verb = VERBS[event_type]
        kind = resource.kind
        ref = _object_ref(resource, obj)
        payload = ObservedObject(
            cluster=self.cluster,
            object=ref,
            resource_version=obj["metadata"].get("resourceVersion", ""),
            owner=_ref(owner, ref.namespace) if owner else None,
            **facts,
        )
        self._put(
            k8s_subject(self.cluster, ref.namespace, kind, verb),
            new_event(
                k8s_event_type(kind, verb),
                self.source,
                payload,
                subject=f"{ref.namespace}/{ref.name}",
                event_id=f"{ref.uid}:{payload.resource_version}:{verb}",
            ),
        )

    def _pod_issue(self, pod: dict[str, Any], owner: dict[str, Any] | None) -> None:
        problem = pod_problem([pod])
        if problem is None or problem.reason not in POD_PROBLEMS:
            return
        kind = POD_PROBLEMS[problem.reason]
        ref = _object_ref(POD, pod)
        restarts = sum(s.get("restartCount", 0) for s in pod.get("status", {}).get("containerStatuses", []) or [])
        issue = PodIssue(
            cluster=self.cluster,
            pod=ref,
            owner=_ref(owner, ref.namespace) if owner else None,
            problem=kind,
            reason=problem.reason,
            message=problem.message,
            restart_count=restarts,
            resource_version=pod["metadata"].get("resourceVersion", ""),
        )
        self._put(
            k8s_subject(self.cluster, ref.namespace, "Pod", kind.value),
            new_event(
                pod_issue_event_type(kind),
                self.source,
                issue,
                subject=f"{ref.namespace}/{ref.name}",
                event_id=f"{ref.uid}:{restarts}:{kind.value}",
            ),
        )


def _object_ref(resource: Resource, obj: dict[str, Any]) -> ObjectRef:
    metadata = obj["metadata"]
    return ObjectRef(
        api_version=resource.api_version,  # list items carry no apiVersion
        kind=resource.kind,
        namespace=metadata.get("namespace"),
        name=metadata["name"],
        uid=metadata.get("uid", ""),
    )


def _ref(owner: dict[str, Any], namespace: str | None) -> ObjectRef:
    return ObjectRef(
        api_version=owner["apiVersion"], kind=owner["kind"], namespace=namespace, name=owner["name"], uid=owner["uid"]
    )


def _facts(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What an observed event tells of an object besides who it is, its version and its owner."""
    metadata, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status", {}) or {}
    return {
        "generation": metadata.get("generation"),
        "labels": metadata.get("labels", {}),
        "replicas": spec.get("replicas") if kind != "Pod" else None,
        "ready_replicas": status.get("readyReplicas") if kind != "Pod" else None,
        "image": _image(kind, spec),
        "phase": _phase(kind, status),
    }


def _phase(kind: str, status: dict[str, Any]) -> str | None:
    """A Pod's phase; a WebApp's Ready condition status (True, False, Unknown), as the payload documents."""
    if kind == "Pod":
        phase: str | None = status.get("phase")
        return phase
    if kind == "WebApp":
        ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
        return ready.get("status") if ready else None
    return None


def _image(kind: str, spec: dict[str, Any]) -> str | None:
    if kind == "WebApp":
        image: str | None = spec.get("image")
        return image
    containers = (
        spec.get("template", {}).get("spec", {}).get("containers", [])
        if kind == "Deployment"
        else spec.get("containers", [])
    )
    return containers[0].get("image") if containers else None
