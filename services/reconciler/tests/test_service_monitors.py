"""ServiceMonitors with the prometheus-operator's real CRD (from ../shared/crds, which CI lays beside the checkout;
BALLAST_THIRD_PARTY_CRDS points elsewhere): rendered once the CRD appears, repaired when deleted, pruned when
monitoring is turned off — and never rendered while the CRD is absent."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry
from reconciler_fixtures import create_webapp, operator_running, platform_api, ready  # noqa: F401

from ballast.kube.apply import delete, get
from ballast.kube.install import install, load_manifests
from ballast.kube.resource import CUSTOM_RESOURCE_DEFINITION, SERVICE_MONITOR
from ballast.reconciler.api import GROUP, VERSION, WEBAPPS
from ballast.testing.waiting import eventually

pytestmark = pytest.mark.cluster
THIRD_PARTY_CRDS = Path(
    os.environ.get("BALLAST_THIRD_PARTY_CRDS", Path(__file__).resolve().parents[4] / "shared" / "crds")
)
MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
SERVICE_MONITOR_CRD = THIRD_PARTY_CRDS / "prometheus-operator" / "monitoring.coreos.com_servicemonitors.yaml"


async def crd_absent(kube_api: Any) -> None:
    """Other tests of the session may have installed the CRD: this test starts without it."""
    await delete(kube_api, CUSTOM_RESOURCE_DEFINITION, None, SERVICE_MONITOR.name)

    async def gone() -> bool:
        return await get(kube_api, CUSTOM_RESOURCE_DEFINITION, None, SERVICE_MONITOR.name) is None

    await eventually(gone, timeout=60, what="the ServiceMonitor CRD gone")


async def test_service_monitors_follow_the_crd_and_the_spec(
    kube_api: Any, platform_api: None, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ballast")  # a failure shows the informers' relists and the reconciles
    assert SERVICE_MONITOR_CRD.is_file(), f"{SERVICE_MONITOR_CRD} missing: the shared folder lies beside the checkout"
    await crd_absent(kube_api)

    async def monitor() -> dict[str, Any] | None:
        return await get(kube_api, SERVICE_MONITOR, namespace, "web")

    registry = CollectorRegistry()
    async with operator_running(kube_api, registry) as operator:
        await create_webapp(kube_api, namespace, "web")
        await eventually(lambda: ready(kube_api, namespace, "web"), timeout=60, what="WebApp Ready")
        assert not operator.sources.service_monitors_enabled, "no CRD: monitoring is not rendered"

        await install(kube_api, load_manifests(SERVICE_MONITOR_CRD))
        found = await eventually(monitor, timeout=60, what="the ServiceMonitor rendered once the CRD appeared")
        assert found["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
        assert found["metadata"]["ownerReferences"][0]["name"] == "web"

        await delete(kube_api, SERVICE_MONITOR, namespace, "web")
        await eventually(monitor, timeout=30, what="the deleted ServiceMonitor put back")
        # The repair is counted once the reconcile that wrote it reports, a little after the object is visible.
        repairs = {"kind": "ServiceMonitor"}

        def repairs_counted() -> float | None:
            return registry.get_sample_value("ballast_reconciler_drift_repairs_total", repairs)

        assert await eventually(repairs_counted, timeout=30, what="the repair counted") == 1

        await client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            WEBAPPS,
            "web",
            {"spec": {"monitoring": {"enabled": False}}},
            **MERGE_PATCH,
        )

        async def pruned() -> bool:
            return await monitor() is None

        await eventually(pruned, timeout=30, what="the ServiceMonitor pruned with monitoring off")

    # A reconciler started where the CRD is installed renders monitoring from its first reconcile.
    async with operator_running(kube_api, CollectorRegistry()) as restarted:
        await eventually(lambda: restarted.sources.service_monitors_enabled, timeout=30, what="the CRD found at start")
        await create_webapp(kube_api, namespace, "watched")

        async def watched() -> dict[str, Any] | None:
            return await get(kube_api, SERVICE_MONITOR, namespace, "watched")

        await eventually(watched, timeout=60, what="the ServiceMonitor of a WebApp created after the start")
