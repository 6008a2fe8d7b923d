"""Rendered children against the real API server: accepted as rendered, admitted by Pod Security Admission at
their level, running on fake nodes, and unchanged by a second apply."""

from __future__ import annotations

from typing import Any

import pytest

from ballast.kube.apply import apply, get
from ballast.reconciler.api import Tenant, WebApp
from ballast.reconciler.render import namespace_labels, render, render_tenant_namespace
from ballast.testing import eventually

pytestmark = pytest.mark.cluster
MANAGER = "ballast-reconciler"


def webapp(namespace: str, **spec: Any) -> WebApp:
    return WebApp.model_validate(
        {
            # The uid of an owner that does not exist: the garbage collector would remove these children, but not
            # before the test is done with them (it waits for the owner's absence to be confirmed).
            "metadata": {"name": "web", "namespace": namespace, "uid": "00000000-0000-0000-0000-000000000001"},
            "spec": {"image": "registry.example.com/shop/web:1.2.3"} | spec,
        }
    )


async def enforce(kube_api: Any, namespace: str, level: str) -> None:
    tenant = Tenant.model_validate({"metadata": {"name": "t"}, "spec": {"namespaces": [namespace],
                                                                         "maxPodSecurity": level}})  # fmt: skip
    await apply(kube_api, {"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": namespace, "labels": namespace_labels(tenant)}},
                field_manager=MANAGER)  # fmt: skip


async def ready_pods(kube_api: Any, namespace: str) -> int:
    from kubernetes_asyncio import client

    pods = await client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=web")
    return sum(
        1
        for pod in pods.items
        if pod.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    )


@pytest.mark.parametrize("level", ["restricted", "baseline"])
async def test_rendered_children_are_accepted_and_pods_pass_pod_security_admission(
    kube_api: Any, namespace: str, level: str
) -> None:
    await enforce(kube_api, namespace, level)
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}
    app = webapp(namespace, replicas=2, security={"podSecurityStandard": level}, resources=resources)
    for manifest in render(app, service_monitors=False):
        stored = await apply(kube_api, manifest, field_manager=MANAGER)
        assert stored["metadata"]["ownerReferences"][0]["uid"] == app.metadata.uid
    await eventually(lambda: ready_pods(kube_api, namespace), timeout=60, what="pods admitted and Ready")
    assert await eventually(lambda: _at_least(ready_pods(kube_api, namespace), 2), timeout=60) >= 2


async def _at_least(probe: Any, count: int) -> int | None:
    found: int = await probe
    return found if found >= count else None


async def test_a_second_apply_of_the_same_render_changes_nothing(kube_api: Any, namespace: str) -> None:
    app = webapp(namespace, replicas=2, autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 5})
    first = [await apply(kube_api, m, field_manager=MANAGER) for m in render(app, service_monitors=False)]
    second = [await apply(kube_api, m, field_manager=MANAGER) for m in render(app, service_monitors=False)]
    # Controllers keep writing status meanwhile, so resourceVersions move; what must not move is the spec
    # (generation) and our own field ownership record (its timestamp changes only when our apply changed something).
    assert [o["metadata"].get("generation") for o in first] == [o["metadata"].get("generation") for o in second]
    assert [ours(o) for o in first] == [ours(o) for o in second]


def ours(stored: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in stored["metadata"]["managedFields"] if f["manager"] == MANAGER and f["operation"] == "Apply"]


async def test_tenant_guardrails_apply(kube_api: Any, namespace: str) -> None:
    tenant = Tenant.model_validate({"metadata": {"name": "shop"}, "spec": {
        "namespaces": [namespace], "quota": {"hard": {"pods": "10"}},
        "limitRange": {"default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}}}})  # fmt: skip
    for manifest in render_tenant_namespace(tenant, namespace):
        await apply(kube_api, manifest, field_manager=MANAGER)
    quota = await get(kube_api, "v1", "ResourceQuota", namespace, "tenant-quota")
    assert quota is not None
    assert quota["spec"]["hard"] == {"pods": "10"}
    assert await get(kube_api, "networking.k8s.io/v1", "NetworkPolicy", namespace, "default-deny") is not None
