"""Rendered children against the real API server: accepted as rendered, admitted by Pod Security Admission at
their level, running on fake nodes, and unchanged by a second apply."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client
from reconciler_fixtures import IMAGE, judged_by_label, platform_api  # noqa: F401

from ballast.kube.apply import apply, get
from ballast.kube.errors import Invalid
from ballast.kube.resource import DEPLOYMENT, NETWORK_POLICY, RESOURCE_QUOTA, SERVICE
from ballast.reconciler.api import Tenant, WebApp
from ballast.reconciler.render import namespace_labels, render, render_tenant_namespace
from ballast.testing import eventually

pytestmark = pytest.mark.cluster
MANAGER = "ballast-reconciler"


async def webapp(kube_api: Any, namespace: str, **spec: Any) -> WebApp:
    """A real WebApp to own the children (the garbage collector removes children of a missing owner); no operator
    runs here, so the children are exactly what the test applies."""
    body = {
        "apiVersion": "platform.example.com/v1",
        "kind": "WebApp",
        "metadata": {"name": "web"},
        "spec": {"image": IMAGE} | spec,
    }
    stored = await client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        "platform.example.com", "v1", namespace, "webapps", body
    )
    return WebApp.model_validate(stored)


async def enforce(kube_api: Any, namespace: str, level: str) -> None:
    tenant = Tenant.model_validate(
        {"metadata": {"name": "t"}, "spec": {"namespaces": [namespace], "maxPodSecurity": level}}
    )
    await apply(
        kube_api,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": namespace_labels(tenant)}},
        field_manager=MANAGER,
    )
    await judged_by_label(client.CustomObjectsApi(kube_api), namespace, level)


async def ready_pods(kube_api: Any, namespace: str) -> int:
    pods = await client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=web")
    return sum(
        1
        for pod in pods.items
        if pod.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    )


@pytest.mark.parametrize("level", ["restricted", "baseline"])
async def test_rendered_children_are_accepted_and_pods_pass_pod_security_admission(
    kube_api: Any, namespace: str, level: str, platform_api: None
) -> None:
    await enforce(kube_api, namespace, level)
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}
    app = await webapp(kube_api, namespace, replicas=2, security={"podSecurityStandard": level}, resources=resources)
    for manifest in render(app, service_monitors=False):
        stored = await apply(kube_api, manifest, field_manager=MANAGER)
        assert stored["metadata"]["ownerReferences"][0]["uid"] == app.metadata.uid
    await eventually(lambda: ready_pods(kube_api, namespace), timeout=60, what="pods admitted and Ready")
    assert await eventually(lambda: _at_least(ready_pods(kube_api, namespace), 2), timeout=60) >= 2


async def _at_least(probe: Any, count: int) -> int | None:
    found: int = await probe
    return found if found >= count else None


async def test_a_second_apply_of_the_same_render_changes_nothing(
    kube_api: Any, namespace: str, platform_api: None
) -> None:
    app = await webapp(
        kube_api, namespace, replicas=2, autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 5}
    )
    first = [await apply(kube_api, m, field_manager=MANAGER) for m in render(app, service_monitors=False)]

    async def scaled_by_the_hpa() -> dict[str, Any] | None:
        deployment = await get(kube_api, DEPLOYMENT, namespace, "web")
        return deployment if deployment and deployment["spec"].get("replicas") == 2 else None

    # The Deployment leaves replicas to the HPA, which brings it to minReplicas.
    settled = await eventually(scaled_by_the_hpa, timeout=60, what="the HPA scaling to minReplicas")
    second = [await apply(kube_api, m, field_manager=MANAGER) for m in render(app, service_monitors=False)]
    deployment = next(o for o in second if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2, "applying again must not take replicas back from the HPA"
    assert deployment["metadata"]["generation"] == settled["metadata"]["generation"]
    # Controllers keep writing status, so resourceVersions move; our own field ownership record does not (its
    # timestamp changes only when our apply changed something).
    assert [ours(o) for o in first] == [ours(o) for o in second]


def ours(stored: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in stored["metadata"]["managedFields"] if f["manager"] == MANAGER and f["operation"] == "Apply"]


async def test_tenant_guardrails_apply(kube_api: Any, namespace: str) -> None:
    tenant = Tenant.model_validate(
        {
            "metadata": {"name": "shop"},
            "spec": {
                "namespaces": [namespace],
                "quota": {"hard": {"pods": "10"}},
                "limitRange": {"default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}},
            },
        }
    )
    for manifest in render_tenant_namespace(tenant, namespace):
        await apply(kube_api, manifest, field_manager=MANAGER)
    quota = await get(kube_api, RESOURCE_QUOTA, namespace, "tenant-quota")
    assert quota is not None
    assert quota["spec"]["hard"] == {"pods": "10"}
    assert await get(kube_api, NETWORK_POLICY, namespace, "default-deny") is not None


async def test_a_refused_apply_raises_with_the_api_servers_message(kube_api: Any, namespace: str) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"ports": [{"port": 70000}]},
    }
    with pytest.raises(Invalid) as refused:
        await apply(kube_api, service, field_manager=MANAGER)
    assert refused.value.status == 422
    assert "spec.ports[0].port" in refused.value.message
    assert "spec.ports[0].port" in {cause.field for cause in refused.value.causes}
    assert await get(kube_api, SERVICE, namespace, "bad") is None
