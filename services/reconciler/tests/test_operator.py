"""The operator against the real control plane: create, status, drift repair, scale, update, delete, tenants."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from reconciler_fixtures import IMAGE, condition, platform_api  # noqa: F401

from ballast.kube.apply import get
from ballast.reconciler.api import WebApp
from ballast.reconciler.operator import OperatorMetrics, Repair, WebAppOperator
from ballast.reconciler.status import Problem
from ballast.testing.kube import absent
from ballast.testing.waiting import eventually

pytestmark = pytest.mark.cluster
MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}


class Running:
    def __init__(self, operator: WebAppOperator, registry: CollectorRegistry) -> None:
        self.operator = operator
        self.registry = registry
        self.outcomes: list[tuple[str, str, list[str], Problem | None]] = []

    async def record(self, outcome: str, webapp: WebApp, repaired: list[Repair], problem: Problem | None) -> None:
        self.outcomes.append((outcome, webapp.metadata.name, [r.kind for r in repaired], problem))


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


async def create_webapp(kube_api: Any, namespace: str, name: str, **spec: Any) -> None:
    from kubernetes_asyncio import client

    body = {
        "apiVersion": "platform.example.com/v1",
        "kind": "WebApp",
        "metadata": {"name": name},
        "spec": {"image": IMAGE} | spec,
    }
    await client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        "platform.example.com", "v1", namespace, "webapps", body
    )


async def read_webapp(kube_api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    return await get(kube_api, "platform.example.com/v1", "WebApp", namespace, name)


async def ready(kube_api: Any, namespace: str, name: str) -> bool:
    return await condition(kube_api, namespace, name, "Ready") == ("True", "AllReplicasReady")


async def test_a_new_webapp_gets_its_children_and_becomes_ready(
    operator: Running, kube_api: Any, namespace: str
) -> None:
    await create_webapp(kube_api, namespace, "web", replicas=2)
    await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="WebApp Ready")
    for api_version, kind in [
        ("v1", "ServiceAccount"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    ]:
        child = await get(kube_api, api_version, kind, namespace, "web")
        assert child is not None, kind
        assert child["metadata"]["ownerReferences"][0]["name"] == "web"
    status = (await read_webapp(kube_api, namespace, "web") or {})["status"]
    assert status["readyReplicas"] == 2
    assert status["observedGeneration"] == 1
    assert ("reconciled", "web", [], None) in operator.outcomes


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


async def test_drift_is_repaired_and_counted(operator: Running, kube_api: Any, namespace: str) -> None:
    from kubernetes_asyncio import client

    await create_webapp(kube_api, namespace, "web", replicas=2)
    await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="WebApp Ready")
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    old_uid = (await core.read_namespaced_service("web", namespace)).metadata.uid
    await core.delete_namespaced_service("web", namespace)

    async def service_back() -> bool:
        service = await get(kube_api, "v1", "Service", namespace, "web")
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
        return [r for o, name, r, _ in operator.outcomes if o == "drift_repaired" and name == "web"]

    await eventually(lambda: reported() == [["Service"], ["Deployment"]], what="each repair reported once")


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
    assert await get(kube_api, "policy/v1", "PodDisruptionBudget", namespace, "web") is not None
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
    return await get(kube_api, "policy/v1", "PodDisruptionBudget", namespace, "web") is None


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


async def _service_gone(kube_api: Any, namespace: str) -> bool:
    return await get(kube_api, "v1", "Service", namespace, "web") is None


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
            quota = await get(kube_api, "v1", "ResourceQuota", namespace, "tenant-quota")
            return bool(ns.metadata.labels.get("pod-security.kubernetes.io/enforce") == "baseline" and quota)

        await eventually(guarded, timeout=30, what="namespace labelled and quota in place")
        assert await get(kube_api, "networking.k8s.io/v1", "NetworkPolicy", namespace, "default-deny") is not None
        await create_webapp(kube_api, namespace, "big", replicas=4)
        await eventually(
            lambda: _is(condition(kube_api, namespace, "big", "Degraded"), ("True", "QuotaExceeded")),
            timeout=60,
            what="Degraded with QuotaExceeded",
        )
    finally:
        await custom.delete_cluster_custom_object("platform.example.com", "v1", "tenants", tenant_name)


async def _is(probe: Any, expected: Any) -> bool:
    return bool(await probe == expected)
