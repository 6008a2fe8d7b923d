"""Fixtures shared by the slo-engine's suites: the ServiceLevelObjective and WebApp CRDs installed once per run, and
the engine as its own process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest_asyncio

from ballast.kube.client import api_client
from ballast.kube.install import install, load_manifests
from ballast.testing import ServiceProcess

CRDS = Path(__file__).resolve().parents[3] / "deploy" / "crds"
CRD_FILE = CRDS / "servicelevelobjectives.platform.example.com.yaml"
WEBAPP_CRD_FILE = CRDS / "webapps.platform.example.com.yaml"
TENANT_CRD_FILE = CRDS / "tenants.platform.example.com.yaml"  # the reconciler watches tenants too


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def slo_api(kubeconfig_path: Path) -> None:
    api = await api_client(str(kubeconfig_path))
    try:
        await install(api, load_manifests(CRD_FILE, WEBAPP_CRD_FILE, TENANT_CRD_FILE))
    finally:
        await api.close()


def start_engine(
    services: Callable[..., ServiceProcess],
    nats_url: str,
    kubeconfig: Path,
    lease_namespace: str,
    identity: str,
    **env: str,
) -> ServiceProcess:
    """An slo-engine process evaluating twice a second, with lease timings short enough for a takeover in a test (the
    defaults are 15 s / 10 s / 2 s)."""
    settings = {
        "KUBECONFIG": str(kubeconfig),
        "BALLAST_LEASE_NAMESPACE": lease_namespace,
        "BALLAST_IDENTITY": identity,
        "BALLAST_LEASE_DURATION": "3",
        "BALLAST_RENEW_DEADLINE": "2",
        "BALLAST_RETRY_PERIOD": "0.5",
        "BALLAST_EVALUATION_INTERVAL": "0.5",
    }
    return services("ballast.slo_engine", nats_url=nats_url, **(settings | env))
