"""Native faults through the Kubernetes API: what each does, how it is undone, and how the undoing is checked.

A fault is recorded in the bucket before `apply` runs (the runner's job); objects a fault leaves changed (a cordoned
node, a scaled-down Deployment) also carry its expiry and run as annotations, so `kubectl` shows who did it and until
when, and a runner sweeping expired faults finds them. A deleted or evicted pod needs no undoing: its controller
replaces it; "reverted" then means the pod we hit is gone, and recovery is the target Ready again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from ballast.chaos_runner.api import Experiment, FaultType
from ballast.chaos_runner.selection import Candidate
from ballast.chaos_runner.state import FaultRecord, FaultState, Touched
from ballast.kube.apply import get
from ballast.kube.errors import ApiError, NotFound
from ballast.kube.resource import DEPLOYMENT, NAMESPACE, POD, Resource
from ballast.kube.rest import KubeApi, send_json

log = logging.getLogger(__name__)

NODE = Resource("", "v1", "nodes", "Node", namespaced=False)
EXPIRES_ANNOTATION = "chaos.platform.example.com/expires-at"
RUN_ANNOTATION = "chaos.platform.example.com/run"
RESTORE_ANNOTATION = "chaos.platform.example.com/restore-replicas"
WEBAPP_POD_LABEL = "app.kubernetes.io/instance"  # the reconciler's selector label, its value the WebApp's name
_MERGE = {"Content-Type": "application/merge-patch+json"}


class FaultRefused(Exception):
    """The API server refused the fault (a PDB blocking an eviction, say): nothing was changed."""


def target_labels(experiment: Experiment) -> dict[str, str]:
    target = experiment.spec.target
    if target.web_app is not None:
        return {WEBAPP_POD_LABEL: target.web_app, "app.kubernetes.io/name": target.web_app}
    assert target.selector is not None  # the CRD requires one of the two
    return dict(target.selector.match_labels)


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def pod_ready(pod: Mapping[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def namespace_labels(api: KubeApi, namespace: str) -> dict[str, str] | None:
    found = await get(api, NAMESPACE, None, namespace)
    return None if found is None else dict(found["metadata"].get("labels") or {})


async def target_pods(api: KubeApi, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    listed = await send_json(api, "GET", POD.collection(namespace), query=[("labelSelector", label_selector(labels))])
    return list(listed.get("items") or [])


def candidates(pods: Sequence[Mapping[str, Any]]) -> list[Candidate]:
    """The pods a fault may count: those not being deleted already (a terminating pod is on its way out, its
    replacement is what counts)."""
    return [
        Candidate(pod["metadata"]["name"], pod_ready(pod), (pod.get("spec") or {}).get("nodeName"))
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp")
    ]


async def deployment_of(api: KubeApi, experiment: Experiment) -> dict[str, Any] | None:
    """The Deployment a ScaleDown scales: the WebApp's, or the one whose pods the selector picks."""
    namespace = experiment.target_namespace
    if experiment.spec.target.web_app is not None:
        return await get(api, DEPLOYMENT, namespace, experiment.spec.target.web_app)
    labels = target_labels(experiment)
    listed = await send_json(api, "GET", DEPLOYMENT.collection(namespace))
    for deployment in listed.get("items") or []:
        template = ((deployment["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        if all(template.get(k) == v for k, v in labels.items()):
            return dict(deployment)
    return None


def _marks(run_id: str, expires_at: datetime) -> dict[str, str]:
    return {RUN_ANNOTATION: run_id, EXPIRES_ANNOTATION: expires_at.isoformat()}


class NativeFaults:
    """Applies, reverts and verifies native faults; each call is idempotent, so a sweep may repeat one."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    # --- what a fault will touch, decided before it is recorded ---------------------------------------------------

    async def plan_objects(
        self, experiment: Experiment, pods: Sequence[Candidate], nodes: Sequence[str]
    ) -> tuple[tuple[Touched, ...], dict[str, int]]:
        namespace = experiment.target_namespace
        kind = experiment.spec.fault.kind
        if kind in (FaultType.NODE_CORDON, FaultType.NODE_DRAIN):
            return tuple(Touched(kind="Node", name=node) for node in nodes), {}
        if kind is FaultType.SCALE_DOWN:
            deployment = await deployment_of(self.api, experiment)
            if deployment is None:
                raise FaultRefused("no Deployment runs the target's pods")
            replicas = int(deployment["spec"].get("replicas", 1))
            restore = int(deployment["metadata"].get("annotations", {}).get(RESTORE_ANNOTATION, replicas))
            touched = Touched(
                kind="Deployment",
                namespace=namespace,
                name=deployment["metadata"]["name"],
                uid=deployment["metadata"]["uid"],
            )
            return (touched,), {"replicas": restore}
        found = {p["metadata"]["name"]: p for p in await target_pods(self.api, namespace, target_labels(experiment))}
        return (
            tuple(
                Touched(kind="Pod", namespace=namespace, name=c.name, uid=found[c.name]["metadata"]["uid"])
                for c in pods
                if c.name in found
            ),
            {},
        )

    # --- apply ----------------------------------------------------------------------------------------------------

    async def apply(self, experiment: Experiment, run_id: str, fault: FaultRecord) -> tuple[Touched, ...]:
        """Applies a recorded fault; returns the objects it really hit (an eviction a PDB refuses hits nothing)."""
        spec = experiment.spec.fault
        hit: list[Touched] = []
        for obj in fault.objects:
            try:
                match spec.kind:
                    case FaultType.POD_DELETE:
                        grace = 0 if spec.force else spec.grace_period_seconds
                        await self._delete_pod(obj, grace)
                    case FaultType.POD_EVICT:
                        await self._evict(obj.namespace or "", obj.name, spec.grace_period_seconds)
                    case FaultType.NODE_CORDON:
                        await self._cordon(obj.name, run_id, fault.expires_at)
                    case FaultType.NODE_DRAIN:
                        await self._cordon(obj.name, run_id, fault.expires_at)
                        await self._drain(obj.name)
                    case FaultType.SCALE_DOWN:
                        await self._scale(obj, spec.replicas or 0, run_id, fault)
            except FaultRefused as exc:
                log.info("fault on %s %s refused: %s", obj.kind, obj.name, exc)
                continue
            hit.append(obj)
        return tuple(hit)

    async def _delete_pod(self, obj: Touched, grace: int | None) -> None:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": obj.uid}}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        try:
            await send_json(self.api, "DELETE", POD.path(obj.namespace, obj.name), body=body)
        except NotFound:
            raise FaultRefused("the pod is gone already") from None
        except ApiError as exc:
            if exc.status == 409:  # the uid precondition: a new pod of that name is not the one we chose
                raise FaultRefused("the pod was replaced meanwhile") from None
            raise

    async def _evict(self, namespace: str, name: str, grace: int | None) -> None:
        body: dict[str, Any] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        if grace is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace}
        try:
            await send_json(self.api, "POST", POD.path(namespace, name, "eviction"), body=body)
        except NotFound:
            raise FaultRefused("the pod is gone already") from None
        except ApiError as exc:
            if exc.status == 429:  # a PodDisruptionBudget allows no disruption now
                raise FaultRefused(exc.message) from None
            raise

    async def _cordon(self, node: str, run_id: str, expires_at: datetime) -> None:
        current = await get(self.api, NODE, None, node)
        if current is None:
            raise FaultRefused("the node is gone")
        annotations = current["metadata"].get("annotations") or {}
        if current["spec"].get("unschedulable") and RUN_ANNOTATION not in annotations:
            raise FaultRefused("the node is cordoned by someone else; left alone")
        await send_json(
            self.api,
            "PATCH",
            NODE.path(None, node),
            headers=_MERGE,
            body={"metadata": {"annotations": _marks(run_id, expires_at)}, "spec": {"unschedulable": True}},
        )

    async def _drain(self, node: str) -> None:
        """Evicts what runs on the node, as `kubectl drain` does: not DaemonSet pods (they would come straight back)
        nor mirror pods; a PDB may refuse some, which then stay."""
        listed = await send_json(
            self.api, "GET", POD.collection(None), query=[("fieldSelector", f"spec.nodeName={quote(node)}")]
        )
        for pod in listed.get("items") or []:
            metadata = pod["metadata"]
            owners = metadata.get("ownerReferences") or []
            if any(o.get("kind") == "DaemonSet" for o in owners) or "kubernetes.io/config.mirror" in (
                metadata.get("annotations") or {}
            ):
                continue
            try:
                await self._evict(metadata["namespace"], metadata["name"], None)
            except FaultRefused as exc:
                log.info("drain of %s: %s/%s stays (%s)", node, metadata["namespace"], metadata["name"], exc)

    async def _scale(self, obj: Touched, replicas: int, run_id: str, fault: FaultRecord) -> None:
        marks = {**_marks(run_id, fault.expires_at), RESTORE_ANNOTATION: str(fault.undo["replicas"])}
        await send_json(
            self.api,
            "PATCH",
            DEPLOYMENT.path(obj.namespace, obj.name),
            headers=_MERGE,
            body={"metadata": {"annotations": marks}, "spec": {"replicas": replicas}},
        )

    # --- revert and verify ----------------------------------------------------------------------------------------

    async def revert(self, fault: FaultRecord) -> None:
        for obj in fault.objects:
            if obj.kind == "Node":
                node = await get(self.api, NODE, None, obj.name)
                if node is None or RUN_ANNOTATION not in (node["metadata"].get("annotations") or {}):
                    continue  # gone, or never cordoned by us (someone else's cordon stays)
                await send_json(
                    self.api,
                    "PATCH",
                    NODE.path(None, obj.name),
                    headers=_MERGE,
                    body={
                        "metadata": {"annotations": {RUN_ANNOTATION: None, EXPIRES_ANNOTATION: None}},
                        "spec": {"unschedulable": None},
                    },
                )
            elif obj.kind == "Deployment":
                unmark = {RUN_ANNOTATION: None, EXPIRES_ANNOTATION: None, RESTORE_ANNOTATION: None}
                try:
                    await send_json(
                        self.api,
                        "PATCH",
                        DEPLOYMENT.path(obj.namespace, obj.name),
                        headers=_MERGE,
                        body={"metadata": {"annotations": unmark}, "spec": {"replicas": fault.undo["replicas"]}},
                    )
                except NotFound:
                    continue

    async def verify_reverted(self, fault: FaultRecord) -> str | None:
        """What is still not undone, or None when the fault is over."""
        for obj in fault.objects:
            if obj.kind == "Node":
                node = await get(self.api, NODE, None, obj.name)
                if node is not None and RUN_ANNOTATION in (node["metadata"].get("annotations") or {}):
                    return f"node {obj.name} is still cordoned"
            elif obj.kind == "Deployment":
                deployment = await get(self.api, DEPLOYMENT, obj.namespace, obj.name)
                if deployment is not None and deployment["spec"].get("replicas") != fault.undo["replicas"]:
                    return f"Deployment {obj.namespace}/{obj.name} has {deployment['spec'].get('replicas')} replicas"
            elif fault.state is FaultState.APPLIED:  # a pod fault only recorded never removed anything
                pod = await get(self.api, POD, obj.namespace, obj.name)
                if (
                    pod is not None
                    and pod["metadata"]["uid"] == obj.uid
                    and not pod["metadata"].get("deletionTimestamp")
                ):
                    return f"pod {obj.namespace}/{obj.name} was not removed"
        return None
