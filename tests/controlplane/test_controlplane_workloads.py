"""The controllers, the scheduler and kwok together: Deployments get Running pods on fake nodes, lost pods are
replaced, owners take their dependents with them and namespaces finish deleting."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client

from ballast.local.controlplane import FAKE_NODE_ANNOTATION
from ballast.testing.kube import absent, fake_node_deployment
from ballast.testing.waiting import eventually

pytestmark = pytest.mark.cluster


def config_map(name: str, owner: client.V1ConfigMap | None = None) -> client.V1ConfigMap:
    references = None
    if owner is not None:
        references = [
            client.V1OwnerReference(
                api_version="v1", kind="ConfigMap", name=owner.metadata.name, uid=owner.metadata.uid
            )
        ]
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, owner_references=references))


def running_and_ready(pod: client.V1Pod) -> bool:
    return (
        pod.metadata.deletion_timestamp is None
        and pod.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    )


async def test_deployment_pods_run_on_fake_nodes_and_a_deleted_pod_is_replaced(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    nodes = await core.list_node(label_selector="type=kwok")
    fake_nodes = {n.metadata.name for n in nodes.items if (n.metadata.annotations or {}).get(FAKE_NODE_ANNOTATION)}
    assert fake_nodes, "the cluster has no kwok fake nodes"
    await apps.create_namespaced_deployment(namespace, fake_node_deployment("web", 3))

    async def three_running_pods() -> list[client.V1Pod] | None:
        pods = (await core.list_namespaced_pod(namespace, label_selector="app=web")).items
        ready = [p for p in pods if running_and_ready(p)]
        return ready if len(ready) == 3 and len(pods) == 3 else None

    pods = await eventually(three_running_pods, timeout=60, interval=0.1, what="3 web pods Running and Ready")
    assert {p.spec.node_name for p in pods} <= fake_nodes
    assert all(p.status.pod_ip for p in pods)

    lost = pods[0]
    await core.delete_namespaced_pod(lost.metadata.name, namespace)
    replaced = await eventually(three_running_pods, timeout=60, interval=0.1, what="the lost pod replaced")
    assert lost.metadata.uid not in {p.metadata.uid for p in replaced}

    async def deployment_ready() -> bool:
        # The controllers' view catches up with the pods' a moment later.
        deployment = await apps.read_namespaced_deployment_status("web", namespace)
        return bool(deployment.status.ready_replicas == 3 and deployment.status.replicas == 3)

    await eventually(deployment_ready, timeout=30, interval=0.1, what="Deployment web reports 3 ready replicas")


async def test_deleting_an_owner_garbage_collects_its_dependents(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    owner = await core.create_namespaced_config_map(namespace, config_map("owner"))
    await core.create_namespaced_config_map(namespace, config_map("dependent", owner=owner))
    await core.create_namespaced_config_map(namespace, config_map("bystander"))

    await core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    await eventually(
        lambda: absent(lambda: core.read_namespaced_config_map("dependent", namespace)),
        timeout=30,
        interval=0.1,
        what="the dependent garbage-collected",
    )
    bystander = await core.read_namespaced_config_map("bystander", namespace)
    assert bystander.metadata.deletion_timestamp is None


async def test_a_namespace_deletion_completes(kube_api: client.ApiClient, namespace: str) -> None:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    # Content that needs every party: the controllers delete it, and kwok finishes the pod's termination.
    await core.create_namespaced_config_map(namespace, config_map("settings"))
    await apps.create_namespaced_deployment(namespace, fake_node_deployment("worker", 1))

    async def pod_running() -> bool:
        pods = (await core.list_namespaced_pod(namespace, label_selector="app=worker")).items
        return any(running_and_ready(p) for p in pods)

    await eventually(pod_running, timeout=60, interval=0.1, what="the worker pod Running")

    await core.delete_namespace(namespace)

    await eventually(
        lambda: absent(lambda: core.read_namespace(namespace)),
        timeout=90,
        interval=0.2,
        what=f"namespace {namespace} deleted",
    )
