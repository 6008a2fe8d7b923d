"""The operator against the real control plane: create, status, drift repair, scale, update, delete, tenants."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from reconciler_fixtures import (  # noqa: F401
    IMAGE,
    condition,
    create_webapp,
    idle,
    matches,
    operator_running,
    platform_api,
    ready,
)

from ballast.kube.apply import get
from ballast.kube.resource import (
    DEPLOYMENT,
    NETWORK_POLICY,
    POD_DISRUPTION_BUDGET,
    RESOURCE_QUOTA,
    SERVICE,
    SERVICE_ACCOUNT,
    WEBAPP,
)
from ballast.reconciler.api import WebApp
from ballast.reconciler.operator import OperatorMetrics, WebAppOperator
from ballast.reconciler.reconcile import Repair
from ballast.reconciler.status import Problem
from ballast.testing.kube import absent, fake_node_deployment
from ballast.testing.waiting import eventually
from ballast.testing.webhook import AdmissionWebhook, Verdict

pytestmark = pytest.mark.cluster
MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}


class Running:
    def __init__(self, operator: WebAppOperator, registry: CollectorRegistry) -> None:
        self.operator = operator
        self.registry = registry
        # (outcome, "namespace/name", repaired kinds, problem): the operator watches every namespace, and WebApps of
        # earlier tests (same names, their namespaces still terminating) report outcomes here too.
        self.outcomes: list[tuple[str, str, list[str], Problem | None]] = []

    async def record(
        self, outcome: str, webapp: WebApp, repaired: list[Repair], problem: Problem | None, _applied: list[str]
    ) -> None:
        where = f"{webapp.metadata.namespace}/{webapp.metadata.name}"
        self.outcomes.append((outcome, where, [r.kind for r in repaired], problem))


@pytest.fixture
async def operator(kube_api: Any, platform_api: None) -> AsyncIterator[Running]:
    registry = CollectorRegistry()
    running: Running
    instance = WebAppOperator(kube_api, OperatorMetrics(registry), on_outcome=lambda *a: running.record(*a))
    running = Running(instance, registry)
    stop = asyncio.Event()
    task = asyncio.create_task(instance.run(stop))
    yield running
    stop.set()
    await asyncio.wait_for(task, 15)


async def read_webapp(kube_api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    return await get(kube_api, WEBAPP, namespace, name)


async def test_a_new_webapp_gets_its_children_and_becomes_ready(
    operator: Running, kube_api: Any, namespace: str
) -> None:
    await create_webapp(kube_api, namespace, "web", replicas=2)
    await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="WebApp Ready")
    for resource in [SERVICE_ACCOUNT, DEPLOYMENT, SERVICE, POD_DISRUPTION_BUDGET, NETWORK_POLICY]:
        child = await get(kube_api, resource, namespace, "web")
        assert child is not None, resource.kind
        assert child["metadata"]["ownerReferences"][0]["name"] == "web"
    status = (await read_webapp(kube_api, namespace, "web") or {})["status"]
    assert status["readyReplicas"] == 2
    assert status["observedGeneration"] == 1
    assert ("reconciled", f"{namespace}/web", [], None) in operator.outcomes


async def test_no_status_write_when_nothing_changed(operator: Running, kube_api: Any, namespace: str) -> None:
    await create_webapp(kube_api, namespace, "calm")
    await eventually(lambda: ready(kube_api, namespace, "calm"), timeout=60, what="WebApp Ready")
    labels = {"controller": "webapp", "result": "success"}

    async def forced_reconcile_changes_nothing() -> bool:
        before = (await read_webapp(kube_api, namespace, "calm") or {})["metadata"]["resourceVersion"]
        done = operator.registry.get_sample_value("controller_runtime_reconcile_total", labels) or 0
        operator.operator.webapps_controller.enqueue((namespace, "calm"))
        await eventually(
            lambda: (operator.registry.get_sample_value("controller_runtime_reconcile_total", labels) or 0) > done,
            what="the forced reconcile",
        )
        return bool((await read_webapp(kube_api, namespace, "calm") or {})["metadata"]["resourceVersion"] == before)

    # The Deployment settles a moment after it turns ready (its own status writes may still move ours). Once settled,
    # reconciling again must not write: an operator writing status every time never gets here.
    await eventually(forced_reconcile_changes_nothing, timeout=30, what="a settled WebApp")
    for _ in range(3):
        assert await forced_reconcile_changes_nothing()


class HeldWatch:
    """Holds back an informer's watch events, as a watch running late under load does, until released."""

    def __init__(self, informer: Any) -> None:
        self.informer = informer
        self.held: list[dict[str, Any]] = []
        self._dispatch = informer._dispatch
        informer._dispatch = self.held.append

    def release(self) -> None:
        self.informer._dispatch = self._dispatch
        for event in self.held:
            self._dispatch(event)


async def test_a_status_written_before_the_cache_shows_it_is_not_lost(
    operator: Running, kube_api: Any, namespace: str
) -> None:
    """The WebApp cache lags our own status writes. A change and its undoing that both land in that lag must still
    reach the API server: compared with the stale cache, the undoing looks like nothing to write, and the late watch
    event of our first write (same generation) wakes nobody, which would leave the WebApp wrong for good."""
    await create_webapp(kube_api, namespace, "lag")
    await eventually(lambda: ready(kube_api, namespace, "lag"), timeout=60, what="WebApp Ready")
    key = (namespace, "lag")
    deployments = operator.operator.sources.deployments
    await eventually(lambda: deployments.store[key]["status"].get("readyReplicas") == 1, what="Deployment cached")
    webapp_watch, deployment_watch = HeldWatch(operator.operator.sources.webapps), HeldWatch(deployments)

    try:
        # No reconcile in flight that could write over ours.
        await eventually(lambda: idle(operator.registry), what="the operator idle")
        healthy = deployments.store[key]
        deployments.store[key] = healthy | {"status": healthy["status"] | {"readyReplicas": 0}}
        await operator.operator.reconcile_webapp(key)
        assert await condition(kube_api, namespace, "lag", "Ready") == ("False", "ReplicasNotReady")
        deployments.store[key] = healthy
        await operator.operator.reconcile_webapp(key)
        assert await ready(kube_api, namespace, "lag")
    finally:
        webapp_watch.release()
        deployment_watch.release()
    told = [o for o, where, _, _ in operator.outcomes if o == "reconciled" and where == f"{namespace}/lag"]
    assert len(told) == 2  # Ready at creation, Ready again after the dip: once per transition


async def test_drift_is_repaired_and_counted(operator: Running, kube_api: Any, namespace: str) -> None:
    from kubernetes_asyncio import client

    await create_webapp(kube_api, namespace, "web", replicas=2)
    await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="WebApp Ready")
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    old_uid = (await core.read_namespaced_service("web", namespace)).metadata.uid
    await core.delete_namespaced_service("web", namespace)

    async def service_back() -> bool:
        service = await get(kube_api, SERVICE, namespace, "web")
        return service is not None and service["metadata"]["uid"] != old_uid

    await eventually(service_back, timeout=30, what="the deleted Service put back")
    await apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 5}}, **MERGE_PATCH)

    async def replicas_back() -> bool:
        return bool((await apps.read_namespaced_deployment("web", namespace)).spec.replicas == 2)

    await eventually(replicas_back, timeout=30, what="the edited replicas put back")

    def repairs() -> dict[str, float | None]:
        return {
            kind: operator.registry.get_sample_value("ballast_reconciler_drift_repairs_total", {"kind": kind})
            for kind in ("Service", "Deployment")
        }

    # The API server has the repair before the operator has counted it: wait for the count, then check it exactly.
    await eventually(lambda: repairs()["Deployment"], what="the Deployment repair counted")
    assert repairs() == {"Service": 1.0, "Deployment": 1.0}

    def reported() -> list[list[str]]:
        return [r for o, where, r, _ in operator.outcomes if o == "drift_repaired" and where == f"{namespace}/web"]

    await eventually(lambda: len(reported()) >= 2, what="both repairs reported")
    assert reported() == [["Service"], ["Deployment"]], "each repair reported once, in order"


async def test_scale_and_image_update_roll_through(operator: Running, kube_api: Any, namespace: str) -> None:
    from kubernetes_asyncio import client

    await create_webapp(kube_api, namespace, "web", replicas=1)
    await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="WebApp Ready")
    custom, apps = client.CustomObjectsApi(kube_api), client.AppsV1Api(kube_api)
    await custom.patch_namespaced_custom_object_scale(
        "platform.example.com", "v1", namespace, "webapps", "web", {"spec": {"replicas": 3}}, **MERGE_PATCH
    )

    async def scaled() -> bool:
        status = ((await read_webapp(kube_api, namespace, "web")) or {}).get("status", {})
        return bool(status.get("readyReplicas") == 3 and status.get("observedGeneration") == 2)

    await eventually(scaled, timeout=60, what="3 replicas ready")
    assert await get(kube_api, POD_DISRUPTION_BUDGET, namespace, "web") is not None
    new_image = "registry.example.com/shop/web:2.0.0"
    await custom.patch_namespaced_custom_object(
        "platform.example.com",
        "v1",
        namespace,
        "webapps",
        "web",
        {"spec": {"image": new_image, "replicas": 1}},
        **MERGE_PATCH,
    )

    async def rolled() -> bool:
        deployment = await apps.read_namespaced_deployment("web", namespace)
        return bool(
            deployment.spec.template.spec.containers[0].image == new_image and await ready(kube_api, namespace, "web")
        )

    await eventually(rolled, timeout=60, what="new image rolled out")
    assert await eventually(lambda: _pdb_gone(kube_api, namespace), timeout=30, what="the PDB pruned at one replica")


async def _pdb_gone(kube_api: Any, namespace: str) -> bool:
    return await get(kube_api, POD_DISRUPTION_BUDGET, namespace, "web") is None


async def test_deleting_a_webapp_removes_its_children(operator: Running, kube_api: Any, namespace: str) -> None:
    from kubernetes_asyncio import client

    await create_webapp(kube_api, namespace, "web")
    await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="WebApp Ready")
    await client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
        "platform.example.com", "v1", namespace, "webapps", "web"
    )
    apps = client.AppsV1Api(kube_api)
    await eventually(
        lambda: absent(lambda: apps.read_namespaced_deployment("web", namespace)),
        timeout=60,
        what="the Deployment garbage-collected",
    )
    await eventually(lambda: _service_gone(kube_api, namespace), timeout=30, what="the Service garbage-collected")
    await eventually(
        lambda: ("deleted", f"{namespace}/web", [], None) in operator.outcomes, timeout=30, what="the deletion reported"
    )
    mine = [o for o in operator.outcomes if o[0] == "deleted" and o[1].startswith(f"{namespace}/")]
    assert mine == [("deleted", f"{namespace}/web", [], None)]


async def _service_gone(kube_api: Any, namespace: str) -> bool:
    return await get(kube_api, SERVICE, namespace, "web") is None


async def test_a_tenant_guards_its_namespaces_and_quota_shows_as_degraded(
    operator: Running, kube_api: Any, namespace: str
) -> None:
    from kubernetes_asyncio import client

    custom = client.CustomObjectsApi(kube_api)
    tenant_name = f"tenant-{namespace}"
    tenant = {
        "apiVersion": "platform.example.com/v1",
        "kind": "Tenant",
        "metadata": {"name": tenant_name},
        "spec": {"namespaces": [namespace], "maxPodSecurity": "baseline", "quota": {"hard": {"pods": "2"}}},
    }
    await custom.create_cluster_custom_object("platform.example.com", "v1", "tenants", tenant)
    try:

        async def guarded() -> bool:
            ns = await client.CoreV1Api(kube_api).read_namespace(namespace)
            quota = await get(kube_api, RESOURCE_QUOTA, namespace, "tenant-quota")
            return bool(ns.metadata.labels.get("pod-security.kubernetes.io/enforce") == "baseline" and quota)

        await eventually(guarded, timeout=30, what="namespace labelled and quota in place")
        assert await get(kube_api, NETWORK_POLICY, namespace, "default-deny") is not None
        await create_webapp(kube_api, namespace, "big", replicas=4)
        await eventually(
            lambda: matches(condition(kube_api, namespace, "big", "Degraded"), ("True", "QuotaExceeded")),
            timeout=60,
            what="Degraded with QuotaExceeded",
        )
    finally:
        await custom.delete_cluster_custom_object("platform.example.com", "v1", "tenants", tenant_name)


async def webapp_events(kube_api: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Kubernetes Events about one WebApp, as `kubectl describe webapp` lists them."""
    from kubernetes_asyncio import client

    found = await client.EventsV1Api(kube_api).list_namespaced_event(
        namespace, field_selector=f"regarding.kind=WebApp,regarding.name={name}"
    )
    return [
        {
            "type": e.type,
            "reason": e.reason,
            "note": e.note,
            "count": e.series.count if e.series else 1,
            "controller": e.reporting_controller,
        }
        for e in found.items
    ]


async def test_outcomes_are_kubernetes_events_on_the_webapp(operator: Running, kube_api: Any, namespace: str) -> None:
    from kubernetes_asyncio import client

    await create_webapp(kube_api, namespace, "web")
    await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="WebApp Ready")
    (became_ready,) = await eventually(
        lambda: _with_reason(webapp_events(kube_api, namespace, "web"), "Ready"), what="a Ready event"
    )
    assert became_ready["type"] == "Normal"
    assert became_ready["controller"] == "platform.example.com/reconciler"
    assert IMAGE in became_ready["note"]
    await client.CoreV1Api(kube_api).delete_namespaced_service("web", namespace)
    (repaired,) = await eventually(
        lambda: _with_reason(webapp_events(kube_api, namespace, "web"), "DriftRepaired"), what="a DriftRepaired event"
    )
    assert repaired["type"] == "Normal"
    assert "Service/web" in repaired["note"]


async def test_pods_that_cannot_start_make_it_degraded_with_their_reason_until_fixed(
    operator: Running, kube_api: Any, namespace: str
) -> None:
    from kubernetes_asyncio import client

    # The local control plane's fake nodes fail images from registry.invalid and tags ending in -crashloop.
    await create_webapp(kube_api, namespace, "web", image="registry.invalid/shop/web:1.0")
    await eventually(
        lambda: matches(condition(kube_api, namespace, "web", "Degraded"), ("True", "ImagePullBackOff")),
        timeout=60,
        what="Degraded with the pod's ImagePullBackOff",
    )
    degraded = next(c for c in (await read_webapp(kube_api, namespace, "web") or {})["status"]["conditions"]
                    if c["type"] == "Degraded")  # fmt: skip
    assert "registry.invalid/shop/web:1.0" in degraded["message"], degraded
    assert await condition(kube_api, namespace, "web", "Ready") == ("False", "ImagePullBackOff")

    # A problem that persists is one Warning whose series counts the repeats, not an Event per reconcile.
    async def counted_twice() -> bool:
        operator.operator.webapps_controller.enqueue((namespace, "web"))
        warnings = await _with_reason(webapp_events(kube_api, namespace, "web"), "ImagePullBackOff")
        return bool(warnings and warnings[0]["count"] >= 2)

    await eventually(counted_twice, timeout=30, what="the repeated warning counted")
    (warning,) = await _with_reason(webapp_events(kube_api, namespace, "web"), "ImagePullBackOff")
    assert warning["type"] == "Warning"

    custom = client.CustomObjectsApi(kube_api)

    async def set_image(image: str) -> None:
        await custom.patch_namespaced_custom_object(
            "platform.example.com", "v1", namespace, "webapps", "web", {"spec": {"image": image}}, **MERGE_PATCH
        )

    await set_image(IMAGE)
    await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="Ready once the image is fixed")
    assert await condition(kube_api, namespace, "web", "Degraded") == ("False", "AsExpected")

    await set_image("registry.example.com/shop/web:2.0-crashloop")
    await eventually(
        lambda: matches(condition(kube_api, namespace, "web", "Degraded"), ("True", "CrashLoopBackOff")),
        timeout=60,
        what="Degraded with the pod's CrashLoopBackOff",
    )
    await set_image(IMAGE)
    await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="Ready again once the crash is fixed")
    assert await condition(kube_api, namespace, "web", "Degraded") == ("False", "AsExpected")


async def _with_reason(events: Any, reason: str) -> list[dict[str, Any]]:
    return [e for e in await events if e["reason"] == reason]


async def test_a_conflict_from_the_api_server_is_retried_with_backoff(
    operator: Running, kube_api: Any, namespace: str, tmp_path: Path
) -> None:
    from kubernetes_asyncio import client

    conflicts_left = 2

    def decide(request: dict[str, Any]) -> Verdict:
        nonlocal conflicts_left
        if request.get("dryRun") or request["name"] != "web" or conflicts_left == 0:
            return Verdict()
        conflicts_left -= 1
        return Verdict(False, 409, "Operation cannot be fulfilled: the object has been modified; try again")

    rules = [{"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"],
              "operations": ["CREATE", "UPDATE"]}]  # fmt: skip
    async with AdmissionWebhook(kube_api, tmp_path, namespace, rules, decide) as hook:
        apps = client.AppsV1Api(kube_api)

        async def hook_in_the_path() -> bool:  # the API server loads webhook configurations from an informer
            await apps.create_namespaced_deployment(namespace, fake_node_deployment("probe", 1), dry_run="All")
            return bool(hook.requests)

        await eventually(hook_in_the_path, timeout=30, what="the webhook called")
        await create_webapp(kube_api, namespace, "web")
        await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="Ready despite two conflicts")
    assert conflicts_left == 0

    def sample(name: str, labels: dict[str, str]) -> float | None:
        return operator.registry.get_sample_value(name, labels)

    assert sample("controller_runtime_reconcile_errors_total", {"controller": "webapp"}) == 2
    assert sample("workqueue_retries_total", {"name": "webapp"}) == 2
    assert (sample("controller_runtime_reconcile_total", {"controller": "webapp", "result": "success"}) or 0) >= 1


class HeldService:
    """A webhook that holds the CREATE of the Service named `held` until `let_go` is set, as the API server's
    cluster-IP line holds Services in a burst."""

    def __init__(self, hook: AdmissionWebhook, let_go: asyncio.Event, held: str) -> None:
        self.hook, self.let_go, self.held = hook, let_go, held

    def holding(self) -> bool:
        return any(r["name"] == self.held and not r.get("dryRun") for r in self.hook.requests)


@contextlib.asynccontextmanager
async def holding_service(kube_api: Any, tmp_path: Path, namespace: str, held: str) -> AsyncIterator[HeldService]:
    from kubernetes_asyncio import client

    let_go = asyncio.Event()

    async def decide(request: dict[str, Any]) -> Verdict:
        if request["name"] == held and not request.get("dryRun"):
            await let_go.wait()
        return Verdict()

    rules = [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["services"], "operations": ["CREATE"]}]
    core = client.CoreV1Api(kube_api)
    async with AdmissionWebhook(kube_api, tmp_path, namespace, rules, decide, timeout_seconds=30) as hook:
        probe = client.V1Service(metadata=client.V1ObjectMeta(name="probe"), spec=client.V1ServiceSpec(ports=[
            client.V1ServicePort(port=80)]))  # fmt: skip

        async def hook_in_the_path() -> bool:  # the API server loads webhook configurations from an informer
            await core.create_namespaced_service(namespace, probe, dry_run="All")
            return bool(hook.requests)

        await eventually(hook_in_the_path, timeout=30, what="the webhook called")
        try:
            yield HeldService(hook, let_go, held)
        finally:
            let_go.set()


async def let_go_and_both_ready(kube_api: Any, namespace: str, service: HeldService) -> None:
    service.let_go.set()
    for name in ("first", "second"):
        await eventually(functools.partial(ready, kube_api, namespace, name), timeout=60, what=f"{name} Ready")
        assert await get(kube_api, SERVICE, namespace, name) is not None


async def test_a_child_write_the_api_server_holds_does_not_hold_the_worker(
    kube_api: Any, platform_api: None, namespace: str, tmp_path: Path
) -> None:
    """One worker. While the API server holds the first WebApp's Service (a webhook answering only when the test lets
    it, as the cluster-IP line holds Services in a burst), the worker goes on to the second WebApp and applies its
    children; the first is not reported Ready before its Service is written, and is once it is."""
    async with holding_service(kube_api, tmp_path, namespace, "first") as service:
        registry = CollectorRegistry()
        async with operator_running(kube_api, registry, workers=1):
            await create_webapp(kube_api, namespace, "first")
            await eventually(service.holding, timeout=60, what="the first Service's write held")
            await create_webapp(kube_api, namespace, "second")
            await eventually(
                lambda: ready(kube_api, namespace, "second"),
                timeout=25,  # the hold lasts up to 30s: a worker waiting in it would reconcile nothing else before
                what="the second WebApp Ready while the first's Service is held",
            )
            assert await get(kube_api, SERVICE, namespace, "first") is None
            assert await get(kube_api, DEPLOYMENT, namespace, "first") is not None
            # At least the held one (the operator sees the WebApps other tests leave behind too).
            assert (registry.get_sample_value("ballast_reconciler_child_writes_under_way") or 0) >= 1
            assert not await ready(kube_api, namespace, "first")
            await let_go_and_both_ready(kube_api, namespace, service)


async def test_a_webapp_whose_lane_is_full_waits_for_room_and_is_written_then(
    kube_api: Any, platform_api: None, namespace: str, tmp_path: Path
) -> None:
    """Lanes of one write. While the API server holds the first WebApp's Service, the second's Service finds its lane
    full: it is not started (the WebApp waits by its key), its other children are written, and once the first
    Service is let go the second WebApp is rendered again, its Service written, and both become Ready."""
    async with holding_service(kube_api, tmp_path, namespace, "first") as service:
        registry = CollectorRegistry()
        async with operator_running(kube_api, registry, workers=2, lane_capacity=1) as narrow:
            # The WebApps other tests left behind are reconciled first, their writes one at a time in each lane: done
            # with them before the first Service is held, so the hold's 30 s are this test's alone.
            settled = lambda: narrow.sources.webapps.synced.is_set() and idle(registry)  # noqa: E731
            await eventually(settled, timeout=120, what="the WebApps already there reconciled")
            await create_webapp(kube_api, namespace, "first")
            await eventually(service.holding, timeout=60, what="the first Service's write held")
            await create_webapp(kube_api, namespace, "second")
            waiting = lambda: (registry.get_sample_value("ballast_reconciler_child_writes_waiting") or 0) >= 1  # noqa: E731
            await eventually(waiting, timeout=20, what="the second WebApp waiting for room")
            await eventually(
                lambda: get(kube_api, DEPLOYMENT, namespace, "second"),
                timeout=20,
                what="the second WebApp's Deployment written beside the full Service lane",
            )
            assert await get(kube_api, SERVICE, namespace, "second") is None
            assert not await ready(kube_api, namespace, "second")
            await let_go_and_both_ready(kube_api, namespace, service)


@pytest.mark.parametrize(("code", "repairs"), [(403, [["Service"]]), (500, [["Service"], ["NetworkPolicy"]])])
async def test_a_repair_is_told_even_when_another_child_fails(
    operator: Running, kube_api: Any, namespace: str, tmp_path: Path, code: int, repairs: list[list[str]]
) -> None:
    """A reconcile that puts a Service back while the API server refuses (403) or fails (500) the NetworkPolicy still
    reports the Service's repair, once: counted and applied, it must not be lost to the refusal nor repeated by the
    retry. A refusal leaves the WebApp Degraded; a failure is retried and the NetworkPolicy comes back."""
    from kubernetes_asyncio import client

    await create_webapp(kube_api, namespace, "web")
    await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="WebApp Ready")
    failing = True

    def decide(request: dict[str, Any]) -> Verdict:
        if failing and not request.get("dryRun") and request["name"] == "web":
            return Verdict(False, code, "the policy store is not answering")
        return Verdict()

    rules = [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"], "resources": ["networkpolicies"],
              "operations": ["CREATE", "UPDATE"]}]  # fmt: skip
    networking, core = client.NetworkingV1Api(kube_api), client.CoreV1Api(kube_api)
    async with AdmissionWebhook(kube_api, tmp_path, namespace, rules, decide) as hook:
        probe = client.V1NetworkPolicy(
            metadata=client.V1ObjectMeta(name="probe"),
            spec=client.V1NetworkPolicySpec(pod_selector=client.V1LabelSelector()),
        )

        async def hook_in_the_path() -> bool:  # the API server loads webhook configurations from an informer
            await networking.create_namespaced_network_policy(namespace, probe, dry_run="All")
            return bool(hook.requests)

        await eventually(hook_in_the_path, timeout=30, what="the webhook called")
        await networking.delete_namespaced_network_policy("web", namespace)
        refused = lambda: any(r["name"] == "web" and not r.get("dryRun") for r in hook.requests)  # noqa: E731
        await eventually(refused, what="the NetworkPolicy's return refused")
        await core.delete_namespaced_service("web", namespace)
        await eventually(lambda: get(kube_api, SERVICE, namespace, "web"), what="the Service put back")
        failing = code == 403  # a refusal stands; a failure passes

        def reported() -> list[list[str]]:
            return [r for o, where, r, _ in operator.outcomes if o == "drift_repaired" and where == f"{namespace}/web"]

        await eventually(lambda: len(reported()) >= len(repairs), timeout=60, what="the repairs reported")
        if code == 500:
            await eventually(lambda: get(kube_api, NETWORK_POLICY, namespace, "web"),
                             what="the NetworkPolicy back once the API server answers again")  # fmt: skip
        else:
            assert await condition(kube_api, namespace, "web", "Degraded") == ("True", "ApplyFailed")
        assert reported() == repairs
        counted = {
            kind: operator.registry.get_sample_value("ballast_reconciler_drift_repairs_total", {"kind": kind})
            for kind in ("Service", "NetworkPolicy")
        }
        assert counted == {"Service": 1.0, "NetworkPolicy": 1.0 if code == 500 else None}
