"""Fixtures shared by the chaos-runner's suites: the platform CRDs (WebApp, ChaosExperiment) and Litmus' real CRDs
installed once per run, and helpers to make experiments and opted-in namespaces.

Litmus' real CRDs are read from ../shared/crds relative to the repository, which CI lays beside the checkout
(BALLAST_THIRD_PARTY_CRDS points elsewhere, e.g. for a worktree), unedited as upstream ships them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import BaseModel

from ballast.bus import Bus
from ballast.chaos_runner.api import API_VERSION, CHAOS_NAMESPACE_LABEL
from ballast.chaos_runner.faults import pod_ready, target_pods
from ballast.events import decode, new_event
from ballast.events.catalogue import REGISTRY
from ballast.events.contracts.chaos import (
    ChaosCommand,
    ExperimentRef,
    RunExperiment,
    chaos_command_subject,
    chaos_command_type,
)
from ballast.kube.client import api_client
from ballast.kube.install import install, load_manifests
from ballast.kube.resource import DEPLOYMENT, NAMESPACE, Resource
from ballast.kube.rest import KubeApi, send_json
from ballast.testing import ServiceProcess, eventually
from ballast.testing.kube import fake_node_deployment_manifest

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
CRD_FILE = DEPLOY / "crds" / "chaosexperiments.platform.example.com.yaml"
PLATFORM_CRDS = (
    DEPLOY / "crds" / "webapps.platform.example.com.yaml",
    DEPLOY / "crds" / "tenants.platform.example.com.yaml",
    CRD_FILE,
)
THIRD_PARTY_CRDS = Path(os.environ.get("BALLAST_THIRD_PARTY_CRDS", REPO.parent / "shared" / "crds"))
LITMUS_CRDS = THIRD_PARTY_CRDS / "litmus" / "chaos_crds.yaml"
IMAGE = "registry.example.com/shop/web:1.2.3"


def experiment(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "ChaosExperiment", "metadata": {"name": name}, "spec": spec}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chaos_api(kubeconfig_path: Path) -> None:
    api = await api_client(str(kubeconfig_path))
    try:
        await install(api, load_manifests(*PLATFORM_CRDS))
    finally:
        await api.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def litmus_api(kubeconfig_path: Path) -> None:
    if not LITMUS_CRDS.is_file():
        pytest.fail(f"Litmus' CRDs are read from {LITMUS_CRDS}: set BALLAST_THIRD_PARTY_CRDS", pytrace=False)
    api = await api_client(str(kubeconfig_path))
    try:
        await install(api, load_manifests(LITMUS_CRDS))
    finally:
        await api.close()


async def opt_in(api: KubeApi, namespace: str) -> None:
    """Labels the namespace for chaos, as a platform team would."""
    await send_json(
        api,
        "PATCH",
        NAMESPACE.path(None, namespace),
        headers={"Content-Type": "application/merge-patch+json"},
        body={"metadata": {"labels": {CHAOS_NAMESPACE_LABEL: "true"}}},
    )


# --- the runner as it runs, and what it publishes -------------------------------------------------------------------


async def chaos_events(bus: Bus, cluster: str, namespace: str) -> list[Any]:
    """Every evt.chaos event of the cluster and namespace so far, decoded, in stream order."""
    sub = await bus.js.pull_subscribe(
        f"evt.chaos.{cluster}.{namespace}.>",
        stream="PLATFORM_EVENTS",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
    )
    found: list[Any] = []
    # "Nothing more": nats-py raises its own TimeoutError or, from some paths, the builtin one (its base class).
    with contextlib.suppress(TimeoutError):
        while True:
            found.extend(await sub.fetch(100, timeout=0.3))
    await sub.unsubscribe()
    return [decode(m.headers, m.data, REGISTRY) for m in found]


async def wait_event(
    bus: Bus, cluster: str, namespace: str, kind: str, timeout: float = 60, count: int = 1
) -> list[Any]:
    """Waits until `count` events of `kind` (scheduled, started, …, aborted, completed) were published."""

    async def published() -> list[Any] | None:
        found = [e for e in await chaos_events(bus, cluster, namespace) if e.type == f"io.ballast.chaos.{kind}.v1"]
        return found if len(found) >= count else None

    return await eventually(published, timeout=timeout, interval=0.1, what=f"{count} chaos {kind} event(s)")


async def command(bus: Bus, name: ChaosCommand, payload: BaseModel) -> None:
    request_id = getattr(payload, "request_id")  # noqa: B009
    await bus.publisher.publish(
        chaos_command_subject(name), new_event(chaos_command_type(name), "test", payload, event_id=request_id)
    )


def run_request(namespace: str, name: str, **fields: Any) -> RunExperiment:
    return RunExperiment(
        request_id=uuid.uuid4().hex,
        requested_by="test",
        experiment=ExperimentRef(namespace=namespace, name=name),
        **fields,
    )


def start_runner(
    services: Callable[..., ServiceProcess], bus: Bus, kubeconfig: Path, cluster: str, **env: str
) -> ServiceProcess:
    return services(
        "ballast.chaos_runner",
        nats_url=bus.url,
        KUBECONFIG=str(kubeconfig),
        BALLAST_CLUSTER=cluster,
        BALLAST_IDENTITY=env.pop("BALLAST_IDENTITY", f"runner-{cluster}"),
        **env,
    )


async def create(api: KubeApi, namespace: str, body: dict[str, Any], resource: Resource) -> dict[str, Any]:
    return await send_json(api, "POST", resource.collection(namespace), body=body)


def deployment(name: str, replicas: int) -> dict[str, Any]:
    """A plain Deployment on kwok's fake nodes (the reconciler is not what these tests are about)."""
    return fake_node_deployment_manifest(name, replicas, IMAGE)


async def ready_pods(api: KubeApi, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [p for p in await target_pods(api, namespace, labels) if pod_ready(p)]


async def wait_ready(api: KubeApi, namespace: str, labels: dict[str, str], count: int, timeout: float = 60) -> None:
    async def enough() -> bool:
        return len(await ready_pods(api, namespace, labels)) >= count

    await eventually(enough, timeout=timeout, interval=0.1, what=f"{count} ready pods {labels} in {namespace}")


async def ready_target(bus: Bus, api: KubeApi, namespace: str, name: str, replicas: int) -> None:
    """The streams, the namespace opted in to chaos and a Deployment `name` (pods labelled app=name) all ready."""
    await bus.ensure_streams()
    await opt_in(api, namespace)
    await create(api, namespace, deployment(name, replicas), DEPLOYMENT)
    await wait_ready(api, namespace, {"app": name}, replicas)


async def runner_ready(runner: ServiceProcess, timeout: float = 30) -> None:
    """Ready, or fail with what the runner logged."""
    try:
        await runner.wait_status("/readyz", 200, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{(await runner.get('/readyz'))[1]}\n{runner.log()[-3000:]}") from None
