"""The reconciler survives losing its process: a standby replica takes the lease and goes on, and a reconciler killed
in the middle of its work leaves nothing a successor cannot finish."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reconciler_fixtures import create_webapp, matches, platform_api, ready  # noqa: F401

from ballast.kube.apply import get
from ballast.kube.resource import DEPLOYMENT, LEASE, NETWORK_POLICY, SERVICE, SERVICE_ACCOUNT, WEBAPP
from ballast.testing import NatsServer, ServiceProcess, eventually

pytestmark = pytest.mark.cluster
LEASE_NAME = "ballast-reconciler"
CHILDREN = [SERVICE_ACCOUNT, DEPLOYMENT, SERVICE, NETWORK_POLICY]


def start_reconciler(
    services: Callable[..., ServiceProcess], nats_url: str, kubeconfig: Path, namespace: str, identity: str, **env: str
) -> ServiceProcess:
    # Short lease timings (the defaults are 15 s / 10 s / 2 s) so a takeover fits a test.
    return services(
        "ballast.reconciler",
        nats_url=nats_url,
        KUBECONFIG=str(kubeconfig),
        BALLAST_LEASE_NAMESPACE=namespace,
        BALLAST_IDENTITY=identity,
        BALLAST_LEASE_DURATION="3",
        BALLAST_RENEW_DEADLINE="2",
        BALLAST_RETRY_PERIOD="0.5",
        **env,
    )


async def holder(kube_api: Any, namespace: str) -> str | None:
    lease = await get(kube_api, LEASE, namespace, LEASE_NAME)
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or None


async def test_the_standby_takes_over_when_the_leader_is_killed(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    platform_api: None,
) -> None:
    replicas = {
        name: start_reconciler(services, nats_server.url, kubeconfig_path, namespace, name) for name in ("a", "b")
    }
    for replica in replicas.values():
        await replica.wait_status("/readyz", 200)
    leader = await eventually(lambda: holder(kube_api, namespace), timeout=30, what="a leader")
    assert leader in replicas
    await create_webapp(kube_api, namespace, "first")
    await eventually(lambda: ready(kube_api, namespace, "first"), timeout=60, what="first Ready under the leader")

    replicas[leader].kill()  # SIGKILL: no release, the lease has to expire
    standby = next(name for name in replicas if name != leader)
    await eventually(
        lambda: matches(holder(kube_api, namespace), standby), timeout=30, what="the standby holding the lease"
    )
    await create_webapp(kube_api, namespace, "second")
    await eventually(lambda: ready(kube_api, namespace, "second"), timeout=60, what="second Ready under the new leader")
    await replicas[standby].stop(timeout=30)


async def test_a_reconciler_killed_mid_reconcile_leaves_work_its_successor_finishes(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    platform_api: None,
) -> None:
    from kubernetes_asyncio import client

    names = [f"web-{i}" for i in range(30)]
    for name in names:
        await create_webapp(kube_api, namespace, name)
    # One worker, so that the kill lands with most WebApps untouched or half-applied.
    first = start_reconciler(services, nats_server.url, kubeconfig_path, namespace, "first", BALLAST_WORKERS="1")
    apps = client.AppsV1Api(kube_api)

    async def some_applied() -> bool:
        return bool((await apps.list_namespaced_deployment(namespace)).items)

    await eventually(some_applied, timeout=60, interval=0.02, what="the first Deployments applied")
    first.kill()
    done_at_kill = [name for name in names if await ready(kube_api, namespace, name)]
    assert len(done_at_kill) < len(names), "the reconciler finished before it was killed: nothing was interrupted"

    successor = start_reconciler(services, nats_server.url, kubeconfig_path, namespace, "successor")

    async def all_ready() -> bool:
        return all([await ready(kube_api, namespace, name) for name in names])

    # 30 reads per probe: poll at a pace that leaves the API server to the reconciler.
    await eventually(all_ready, timeout=120, interval=0.5, what="every WebApp Ready after the restart")
    for name in names:
        webapp = await get(kube_api, WEBAPP, namespace, name)
        assert webapp is not None
        assert webapp["status"]["observedGeneration"] == webapp["metadata"]["generation"]
        for resource in CHILDREN:
            child = await get(kube_api, resource, namespace, name)
            assert child is not None, f"{resource.kind}/{name} missing"
            (owner,) = child["metadata"]["ownerReferences"]
            assert owner["uid"] == webapp["metadata"]["uid"]
    await successor.stop(timeout=30)
