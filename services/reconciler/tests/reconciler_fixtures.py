"""Fixtures shared by the reconciler's suites: the platform API (CRDs and admission policy) installed once."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from ballast.kube.apply import get
from ballast.kube.client import api_client
from ballast.kube.install import install, load_manifests
from ballast.kube.resource import WEBAPP
from ballast.reconciler.api import API_VERSION, GROUP, VERSION, WEBAPPS, PodSecurityLevel
from ballast.reconciler.operator import OperatorMetrics, WebAppOperator
from ballast.testing.waiting import eventually

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
CRD_FILES = (
    DEPLOY / "crds" / "webapps.platform.example.com.yaml",
    DEPLOY / "crds" / "tenants.platform.example.com.yaml",
)
POLICY_FILE = DEPLOY / "policies" / "webapp-pod-security.yaml"
IMAGE = "registry.example.com/shop/web:1.2.3"


def webapp(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "WebApp", "metadata": {"name": name}, "spec": spec}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform_api(kubeconfig_path: Path) -> None:
    """Installs the CRDs and the policy once, and returns when the API server serves the one and enforces the other."""
    api = await api_client(str(kubeconfig_path))
    try:
        await install(api, load_manifests(*CRD_FILES, POLICY_FILE))
        # Admission loads policies from an informer: a policy is stored a moment before it is enforced. `default`
        # carries no tenant label, so privileged is refused there once it is.
        probe = webapp(unique("probe"), {"image": IMAGE, "security": {"podSecurityStandard": "privileged"}})

        async def enforced() -> bool:
            return not await admitted(client.CustomObjectsApi(api), "default", probe)

        await eventually(enforced, timeout=30, interval=0.1, what="webapp-pod-security policy enforced")
    finally:
        await api.close()


async def admitted(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> bool:
    """Whether the admission policy lets `body` in (a dry run: nothing is created)."""
    try:
        await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WEBAPPS, body, dry_run="All")
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


async def judged_by_label(custom: client.CustomObjectsApi, namespace: str, label: str) -> None:
    """Waits until the admission policy judges `namespace` by its tenant label `label`: the policy reads namespaces
    from the API server's cache, so for a moment after a label is written it still sees the old labels."""
    allowed = PodSecurityLevel(label) if label in set(PodSecurityLevel) else PodSecurityLevel.RESTRICTED

    async def judged() -> bool:
        for level in PodSecurityLevel:
            probe = webapp(unique("probe"), {"image": IMAGE, "security": {"podSecurityStandard": level.value}})
            if await admitted(custom, namespace, probe) != allowed.allows(level):
                return False
        return True

    await eventually(judged, timeout=10, interval=0.05, what=f"policy judging {namespace} by label {label}")


async def condition(kube_api: Any, namespace: str, name: str, cond_type: str) -> tuple[str, str] | None:
    obj = await get(kube_api, WEBAPP, namespace, name)
    for cond in ((obj or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == cond_type:
            return cond["status"], cond["reason"]
    return None


async def create_webapp(kube_api: Any, namespace: str, name: str, **spec: Any) -> None:
    await client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, WEBAPPS, webapp(name, {"image": IMAGE} | spec)
    )


async def ready(kube_api: Any, namespace: str, name: str) -> bool:
    return await condition(kube_api, namespace, name, "Ready") == ("True", "AllReplicasReady")


async def matches(probe: Any, expected: Any) -> bool:
    """For `eventually`: whether an awaitable probe gives `expected`."""
    return bool(await probe == expected)


def idle(registry: CollectorRegistry) -> bool:
    """No WebApp reconcile in flight or queued, and no child write under way or waiting for room."""
    active = registry.get_sample_value("controller_runtime_active_workers", {"controller": "webapp"})
    depth = registry.get_sample_value("workqueue_depth", {"name": "webapp"})
    writes = registry.get_sample_value("ballast_reconciler_child_writes_under_way")
    waiting = registry.get_sample_value("ballast_reconciler_child_writes_waiting")
    return active == depth == writes == waiting == 0


@contextlib.asynccontextmanager
async def operator_running(kube_api: Any, registry: CollectorRegistry, **options: Any) -> AsyncIterator[WebAppOperator]:
    operator = WebAppOperator(kube_api, OperatorMetrics(registry), **options)
    stop = asyncio.Event()
    running = asyncio.create_task(operator.run(stop))
    try:
        yield operator
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)
