"""The WebApp operator: watches feed per-key work queues; each reconcile renders, applies, prunes and reports.

    WebApp/Tenant/children/Pod watches ──▶ owner key ──▶ work queue ──▶ reconcile(key)
                                                                         ├─ render (pure) ─▶ policy check (bus)
                                                                         ├─ server-side apply, prune, drift count
                                                                         └─ status (only when changed), events

Level-triggered: a reconcile reads the current state from the watch caches, never from the event that woke it, so
missed, repeated or reordered events cannot leave a WebApp wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from ballast.kube.apply import apply, delete
from ballast.kube.controller import Controller, ControllerMetrics, Result
from ballast.kube.informer import EventType, Informer, strip_managed_fields
from ballast.kube.leader import default_identity
from ballast.kube.recorder import EventRecorder, Regarding
from ballast.kube.rest import error_message
from ballast.reconciler.api import Tenant, WebApp, WebAppStatus
from ballast.reconciler.render import (
    CHILD_KINDS,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    namespace_labels,
    render,
    render_tenant_namespace,
)
from ballast.reconciler.status import Problem, same_status, webapp_status
from ballast.reconciler.writes import ChildWrites

log = logging.getLogger(__name__)

FIELD_MANAGER = MANAGED_BY
REPORTING_CONTROLLER = "platform.example.com/reconciler"  # who wrote an Event, as `kubectl events` shows it
WebAppKey = tuple[str, str]
# Child kinds watched for drift, by their list path across all namespaces.
CHILD_PATHS = {
    ("v1", "ServiceAccount"): "/api/v1/serviceaccounts",
    ("apps/v1", "Deployment"): "/apis/apps/v1/deployments",
    ("v1", "Service"): "/api/v1/services",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "/apis/autoscaling/v2/horizontalpodautoscalers",
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/poddisruptionbudgets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "/apis/networking.k8s.io/v1/networkpolicies",
}


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.controller = ControllerMetrics(registry)
        self.drift_repairs = Counter(
            "ballast_reconciler_drift_repairs_total",
            "Children found changed or deleted by someone else and put back, by kind.",
            ["kind"],
            registry=registry,
        )
        self.writes_under_way = Gauge(
            "ballast_reconciler_child_writes_under_way",
            "Child applies under way, including those a reconcile left to finish on their own.",
            registry=registry,
        )
        self.writes_waiting = Gauge(
            "ballast_reconciler_child_writes_waiting",
            "Child applies not started because their kind's lane was full; the WebApp is reconciled when room comes.",
            registry=registry,
        )


@dataclass(frozen=True)
class Repair:
    """A child put back after someone else changed or deleted it; the version is the restored object's."""

    kind: str
    name: str
    resource_version: str


@dataclass(frozen=True)
class _Written:
    """A status we wrote, and the WebApp version it was computed from: until the watch brings a newer version, the
    cache still holds the old status, and comparing with it would write (and tell Ready) twice."""

    based_on: str
    status: WebAppStatus


@dataclass
class _Children:
    """What applying a WebApp's children came to: the repairs made, the first refusal (the WebApp is Degraded) and the
    first transient failure (the reconcile is retried)."""

    repaired: list[Repair] = field(default_factory=list)
    refused: Problem | None = None
    retry: BaseException | None = None
    under_way: bool = False  # a write left to finish on its own: its end queues the WebApp again


# How long a reconcile waits for its child writes before leaving the slow ones under way (writes.py says why): far
# above an apply's time on an API server with room, far below a Service's wait for its cluster IP in a burst.
PATIENCE = 0.25
# Writes of one child kind at once (whatever the workers): the rest wait their turn here rather than as open requests.
LANE = 16
# Writes of one kind a lane holds, open or waiting: past it, a WebApp waits for room by its key alone and is rendered
# again when room comes, so a burst's memory is bounded (~4 KB per held write) whatever the number of WebApps. 1024
# Services are close to a minute of the API server's cluster-IP line in a burst: the lane does not run dry while the
# WebApps woken for its room come back through the work queue.
LANE_CAPACITY = 1024
# API answers worth retrying with backoff; any other refusal is reported as Degraded until the WebApp changes.
TRANSIENT = (409, 429, 500, 503, 504)
Outcome = Callable[[str, WebApp, list[Repair], Problem | None], Awaitable[None]]


async def _no_outcome(_: str, __: WebApp, ___: list[Repair], ____: Problem | None) -> None:
    return None


@dataclass
class _Applied:
    """What the last successful reconcile of a WebApp applied: the render's fingerprint and the children's versions."""

    fingerprint: str
    # (generation, resourceVersion) of each child right after we applied it.
    versions: dict[tuple[str, str], tuple[int | None, str]] = field(default_factory=dict)


class WebAppOperator:
    def __init__(
        self,
        api: Any,  # kubernetes_asyncio ApiClient
        metrics: OperatorMetrics,
        *,
        on_outcome: Outcome = _no_outcome,
        policy_check: Callable[[WebApp, list[dict[str, Any]]], Awaitable[Problem | None]] | None = None,
        on_observed: Callable[[EventType, dict[str, Any]], None] | None = None,
        workers: int = 8,
        service_monitors: bool = False,
        identity: str = "",
        lane_capacity: int = LANE_CAPACITY,
    ) -> None:
        self.api = api
        self.metrics = metrics
        self._on_outcome = on_outcome
        self._policy_check = policy_check
        self._on_observed = on_observed or (lambda _event, _obj: None)
        self._service_monitors = service_monitors
        self.recorder = EventRecorder(api, controller=REPORTING_CONTROLLER, instance=identity or default_identity())
        self.webapps_controller: Controller[WebAppKey] = Controller(
            "webapp", self.reconcile_webapp, metrics.controller, workers=workers
        )
        self._writes: ChildWrites[WebAppKey] = ChildWrites(
            self._apply_child,
            self.webapps_controller.enqueue,
            lane_size=min(LANE, lane_capacity),
            lane_capacity=lane_capacity,
            patience=PATIENCE,
        )
        metrics.writes_under_way.set_function(self._writes.under_way)
        metrics.writes_waiting.set_function(self._writes.waiting)
        self.tenants_controller: Controller[str] = Controller(
            "tenant", self.reconcile_tenant, metrics.controller, workers=2
        )
        self.webapps = Informer(api, "/apis/platform.example.com/v1/webapps", self._on_webapp)
        self.tenants = Informer(api, "/apis/platform.example.com/v1/tenants", self._on_tenant)
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
        self.children = {
            kind: Informer(
                api, path, self._on_child, label_selector=selector, transform=SLIM.get(kind, strip_managed_fields)
            )
            for kind, path in CHILD_PATHS.items()
        }
        self.pods = Informer(api, "/api/v1/pods", self._on_pod, label_selector=selector, transform=_slim_pod)
        # Pods by (namespace, instance label): a status computed from a scan of every pod would cost O(pods) per
        # reconcile, O(pods²) across a cluster.
        self._pods_of: dict[WebAppKey, dict[str, dict[str, Any]]] = {}
        self._pod_owner: dict[tuple[str, str], WebAppKey] = {}
        self._generations: dict[WebAppKey, int | None] = {}
        self._gone: dict[WebAppKey, dict[str, Any]] = {}
        self._applied: dict[WebAppKey, _Applied] = {}
        self._written: dict[WebAppKey, _Written] = {}
        # The cached child as the reconcile that left its write under way saw it: the one that takes up the write's
        # end judges the repair (deleted, or changed by someone else) against that, not against our own result.
        self._seen_before_write: dict[tuple[WebAppKey, tuple[str, str]], dict[str, Any] | None] = {}
        self._left_at: dict[WebAppKey, int | None] = {}  # the generation whose writes a reconcile left under way

    # -- watch events -> keys ----------------------------------------------------------------------------------------

    def _on_webapp(self, event: EventType, obj: dict[str, Any]) -> None:
        self._on_observed(event, obj)
        metadata = obj["metadata"]
        key = (metadata["namespace"], metadata["name"])
        generation = metadata.get("generation")
        written = self._written.get(key)
        if written is not None and written.based_on != metadata.get("resourceVersion"):
            del self._written[key]  # the cache has moved past the version our last status write started from
        if event == "MODIFIED" and self._generations.get(key) == generation and not metadata.get("deletionTimestamp"):
            return  # only status or metadata bookkeeping changed (often our own status write): nothing to do
        if event == "DELETED":
            self._generations.pop(key, None)
            self._applied.pop(key, None)
            self._written.pop(key, None)
            self._writes.forget(key)
            self._left_at.pop(key, None)
            for child in [child for child in self._seen_before_write if child[0] == key]:
                del self._seen_before_write[child]
            self._gone[key] = obj  # reported as deleted once its children are gone too
        else:
            self._gone.pop(key, None)  # deleted and created again under the same name
            self._generations[key] = generation
        self.webapps_controller.enqueue(key)

    def _on_child(self, event: EventType, obj: dict[str, Any]) -> None:
        self._on_observed(event, obj)
        metadata = obj["metadata"]
        owner = next(
            (ref for ref in metadata.get("ownerReferences", []) if ref.get("controller") and ref["kind"] == "WebApp"),
            None,
        )
        name = owner["name"] if owner else metadata.get("labels", {}).get(INSTANCE_LABEL)
        if name:
            self.webapps_controller.enqueue((metadata["namespace"], name))

    def _on_pod(self, event: EventType, obj: dict[str, Any]) -> None:
        metadata = obj["metadata"]
        pod = (metadata["namespace"], metadata["name"])
        instance = metadata.get("labels", {}).get(INSTANCE_LABEL)
        owner = (pod[0], instance) if instance and event != "DELETED" else None
        before = self._pod_owner.pop(pod, None)
        if before is not None and before != owner:  # gone, or relabelled away from its WebApp
            pods = self._pods_of.get(before, {})
            pods.pop(pod[1], None)
            if not pods:
                self._pods_of.pop(before, None)
        if owner is not None:
            self._pod_owner[pod] = owner
            self._pods_of.setdefault(owner, {})[pod[1]] = obj
        self._on_child(event, obj)

    def _on_tenant(self, _: EventType, obj: dict[str, Any]) -> None:
        self.tenants_controller.enqueue(obj["metadata"]["name"])

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        informers = [self.webapps, self.tenants, self.pods, *self.children.values()]
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.recorder.run(stop))
            tasks.create_task(self._writes.run(stop))
            for informer in informers:
                tasks.create_task(informer.run(stop))
            # Reconcile from complete caches only: a half-filled child cache would look like deleted children.
            synced: asyncio.Future[Any] = asyncio.ensure_future(
                asyncio.gather(*(informer.synced.wait() for informer in informers))
            )
            stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
            await asyncio.wait([synced, stopped], return_when=asyncio.FIRST_COMPLETED)
            if not synced.done():
                synced.cancel()  # stopped before the caches filled (e.g. the CRDs are not installed yet)
                with contextlib.suppress(asyncio.CancelledError):
                    await synced
                return
            stopped.cancel()
            log.info("caches synced", extra={"webapps": len(self.webapps.store), "tenants": len(self.tenants.store)})
            tasks.create_task(self.webapps_controller.run(stop))
            tasks.create_task(self.tenants_controller.run(stop))

    # -- WebApps -----------------------------------------------------------------------------------------------------

    async def reconcile_webapp(self, key: WebAppKey) -> Result:
        try:
            return await self._reconcile_webapp(key)
        finally:
            self._writes.settle(key)  # room a full lane held for this reconcile is free for the next WebApp waiting

    async def _reconcile_webapp(self, key: WebAppKey) -> Result:
        namespace, name = key
        obj = self.webapps.store.get(key)
        if obj is None:
            # Deleted: the garbage collector removes the children by their owner references, and each child's
            # deletion brings the key back here; the last one lets the deletion be reported.
            gone = self._gone.get(key)
            if gone is not None and not self._has_children(key):
                del self._gone[key]
                await self._on_outcome("deleted", WebApp.model_validate(gone), [], None)
            return Result()
        if obj["metadata"].get("deletionTimestamp"):
            return Result()
        if self._writes.will_queue(key) and self._left_at.get(key) == obj["metadata"].get("generation"):
            # Same intent, writes still under way or waiting for room in a lane: the last write's end, or the room,
            # queues a reconcile that reads everything then (in a burst, pods and Deployments change many times
            # before a Service's cluster IP comes).
            return Result()
        try:
            webapp = WebApp.model_validate(obj)
        except ValidationError as exc:
            log.error("WebApp %s/%s does not parse: %s", namespace, name, exc)
            return Result()  # the API server validated it; a newer schema than ours: wait for the next change
        manifests = render(webapp, service_monitors=self._service_monitors)
        problem = await self._policy_check(webapp, manifests) if self._policy_check else None
        children = _Children()
        if problem is None:
            children = await self._apply_children(key, webapp, manifests)
            problem = children.refused
        if children.retry is None and not children.under_way:
            # The status also sees what the reconcile cannot: pods that do not start, a quota the ReplicaSet ran into.
            problem = await self._write_status(webapp, problem)
        if children.repaired:
            await self._tell("drift_repaired", webapp, children.repaired, None)
        if children.retry is not None:
            raise children.retry  # transient (a conflict, an overloaded API server): retried with backoff
        if children.under_way:
            return Result()  # the status waits for every child: the reconcile the last write's end brings writes it
        if problem is not None:
            await self._tell("policy_denied" if problem.reason == "PolicyDenied" else "degraded", webapp, [], problem)
        return Result()

    async def _tell(self, outcome: str, webapp: WebApp, repaired: list[Repair], problem: Problem | None) -> None:
        """An outcome for the platform (the bus) and for the WebApp's users (a Kubernetes Event on it)."""
        await self._on_outcome(outcome, webapp, repaired, problem)
        metadata = webapp.metadata
        regarding = Regarding(webapp.api_version, "WebApp", metadata.namespace or "", metadata.name, metadata.uid or "")
        if outcome == "reconciled":
            note = f"{webapp.spec.replicas} of {webapp.spec.replicas} replicas of {webapp.spec.image} ready"
            if webapp.spec.autoscaling.enabled:
                note = f"ready with {webapp.spec.image}, replicas managed by the autoscaler"
            self.recorder.record(regarding, "Normal", "Ready", "Reconcile", note)
        elif outcome == "drift_repaired":
            what = ", ".join(f"{r.kind}/{r.name}" for r in repaired)
            self.recorder.record(regarding, "Normal", "DriftRepaired", "Repair",
                                 f"put back {what}, changed or deleted outside the WebApp")  # fmt: skip
        elif problem is not None:
            self.recorder.record(regarding, "Warning", problem.reason, "Reconcile", problem.message)

    async def _apply_children(self, key: WebAppKey, webapp: WebApp, manifests: list[dict[str, Any]]) -> _Children:
        fingerprint = hashlib.sha256(orjson.dumps(manifests, option=orjson.OPT_SORT_KEYS)).hexdigest()
        previous = self._applied.get(key)
        same_intent = previous is not None and previous.fingerprint == fingerprint
        stale = []
        for manifest in manifests:
            kind = (manifest["apiVersion"], manifest["kind"])
            cached = self._cached_child(kind, key)
            # Same intent as last time and the child as we left it: applying again would change nothing.
            if (
                same_intent
                and cached is not None
                and previous is not None
                and _as_left(cached, previous.versions.get(kind))
            ):
                continue
            stale.append((manifest, cached))
        results = await self._writes.apply(key, [manifest for manifest, _ in stale])
        versions = dict(previous.versions) if same_intent and previous is not None else {}
        outcome = _Children()
        for (manifest, cached), result in zip(stale, results, strict=True):
            child = (key, (manifest["apiVersion"], manifest["kind"]))
            if result is None:
                outcome.under_way = True
                self._left_at[key] = webapp.metadata.generation
                self._seen_before_write.setdefault(child, cached)
                continue
            cached = self._seen_before_write.pop(child, cached)
            if isinstance(result, ApiException) and result.status not in TRANSIENT:
                where = f"{manifest['kind']}/{manifest['metadata']['name']}"
                outcome.refused = outcome.refused or Problem("ApplyFailed", f"{where}: {error_message(result)}")
                continue
            if isinstance(result, BaseException):
                outcome.retry = outcome.retry or result
                continue
            kind = (manifest["apiVersion"], manifest["kind"])
            versions[kind] = _version(result)
            # Same intent, yet the child had to change or come back: someone else touched it. (A child missing from
            # a cache that has not caught up with our own create comes back unchanged: that is no repair.)
            left = previous.versions.get(kind) if same_intent and previous is not None else None
            recreated = left is not None and cached is None and versions[kind][1] != left[1]
            edited = left is not None and cached is not None and _spec_changed(cached, result)
            if recreated or edited:
                outcome.repaired.append(Repair(manifest["kind"], manifest["metadata"]["name"], versions[kind][1]))
                self.metrics.drift_repairs.labels(manifest["kind"]).inc()
        if outcome.refused is None and outcome.retry is None and not outcome.under_way:
            rendered = {(m["apiVersion"], m["kind"]) for m in manifests}
            for kind in CHILD_KINDS:
                if kind not in rendered and self._cached_child(kind, key) is not None:
                    # No longer wanted (autoscaling off, one replica, policy none): remove what we made earlier.
                    try:
                        await delete(self.api, kind[0], kind[1], key[0], key[1])
                    except Exception as exc:  # retried with backoff, as before, once the repairs are told
                        outcome.retry = exc
                        break
                    versions.pop(kind, None)
        # What did apply is as we left it, whatever became of the rest: its repair is told now, and the retry of the
        # rest finds it in place instead of repairing (and counting) it again or not at all.
        self._applied[key] = _Applied(fingerprint, versions)
        return outcome

    async def _apply_child(self, manifest: dict[str, Any]) -> dict[str, Any]:
        # The result is read for its version and spec only; in a burst thousands wait to be taken up, and managed
        # fields are most of each.
        return strip_managed_fields(await apply(self.api, manifest, field_manager=FIELD_MANAGER))

    def _has_children(self, key: WebAppKey) -> bool:
        return key in self._pods_of or any(key in informer.store for informer in self.children.values())

    def _cached_child(self, kind: tuple[str, str], key: WebAppKey) -> dict[str, Any] | None:
        informer = self.children.get(kind)
        return informer.store.get(key) if informer is not None else None

    async def _write_status(self, webapp: WebApp, problem: Problem | None) -> Problem | None:
        """Writes the status if it changed; returns what makes the WebApp Degraded, if anything."""
        key = (webapp.metadata.namespace or "", webapp.metadata.name)
        written = self._written.get(key)
        if written is not None and written.based_on == webapp.metadata.resource_version:
            webapp = webapp.model_copy(update={"status": written.status})  # our write, not yet in the cache
        pods = list(self._pods_of.get(key, {}).values())
        deployment = self._cached_child(("apps/v1", "Deployment"), key)
        status = webapp_status(webapp, deployment, pods, problem=problem, now=datetime.now(UTC).replace(microsecond=0))
        degraded = next((c for c in status.conditions if c.type == "Degraded" and c.status == "True"), None)
        found = Problem(degraded.reason, degraded.message) if degraded is not None else None
        if same_status(webapp.status, status):
            return found
        body = {
            "apiVersion": webapp.api_version,
            "kind": "WebApp",
            "metadata": {"name": webapp.metadata.name, "namespace": webapp.metadata.namespace},
            "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        await apply(self.api, body, field_manager=FIELD_MANAGER, subresource="status")
        if webapp.metadata.resource_version:
            self._written[key] = _Written(webapp.metadata.resource_version, status)
        ready = next((c for c in status.conditions if c.type == "Ready"), None)
        was_ready = next((c for c in (webapp.status.conditions if webapp.status else []) if c.type == "Ready"), None)
        if ready is not None and ready.status == "True" and (was_ready is None or was_ready.status != "True"):
            await self._tell("reconciled", webapp, [], None)
        return found

    # -- Tenants -----------------------------------------------------------------------------------------------------

    async def reconcile_tenant(self, name: str) -> Result:
        obj = self.tenants.store.get(("", name))
        if obj is None:
            return Result()  # namespaces outlive their tenant; their guardrails stay until someone decides
        tenant = Tenant.model_validate(obj)
        for namespace in tenant.spec.namespaces:
            await apply(
                self.api,
                {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": namespace, "labels": namespace_labels(tenant)}},
                field_manager=FIELD_MANAGER,
            )  # fmt: skip
            for manifest in render_tenant_namespace(tenant, namespace):
                await apply(self.api, manifest, field_manager=FIELD_MANAGER)
        return Result()


def _slim(obj: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata", {})
    metadata.pop("managedFields", None)
    slim = {"metadata": metadata, "spec": spec, "status": obj.get("status", {})}
    slim.update({key: obj[key] for key in ("apiVersion", "kind") if key in obj})
    return slim


def _images(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": c.get("name"), "image": c.get("image")} for c in pod_spec.get("containers", [])]


def _slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What status and pod events read of a pod: its metadata, status and container images. Pods are the largest
    part of the cache (one per replica), and most of a pod is spec nobody here reads."""
    spec = pod.get("spec", {})
    return _slim(pod, {"containers": _images(spec), "nodeName": spec.get("nodeName")})


def _slim_deployment(deployment: dict[str, Any]) -> dict[str, Any]:
    """What status, drift detection (by generation) and Deployment events read of a Deployment: the pod template is
    most of it and is compared by generation only."""
    spec = deployment.get("spec", {})
    slim_spec: dict[str, Any] = {
        "template": {"spec": {"containers": _images(spec.get("template", {}).get("spec", {}))}}
    }
    if "replicas" in spec:
        slim_spec["replicas"] = spec["replicas"]
    return _slim(deployment, slim_spec)


SLIM = {("apps/v1", "Deployment"): _slim_deployment}


def _version(obj: dict[str, Any]) -> tuple[int | None, str]:
    metadata = obj["metadata"]
    return metadata.get("generation"), metadata["resourceVersion"]


def _as_left(cached: dict[str, Any], left: tuple[int | None, str] | None) -> bool:
    """Whether a child is as our last apply left it: same generation (status may move), or same version."""
    if left is None:
        return False
    generation, version = _version(cached)
    if left[0] is not None:
        return generation == left[0]
    return version == left[1]


def _spec_changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether an apply changed the object itself, not only its status or bookkeeping."""
    if "generation" in before.get("metadata", {}):
        return bool(before["metadata"]["generation"] != after["metadata"].get("generation"))
    strip = ("metadata", "status")
    return {k: v for k, v in before.items() if k not in strip} != {k: v for k, v in after.items() if k not in strip}
