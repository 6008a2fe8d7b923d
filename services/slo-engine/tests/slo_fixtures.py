"""Fixtures shared by the slo-engine's suites: the ServiceLevelObjective CRD installed once per run."""

from __future__ import annotations

from pathlib import Path

import pytest_asyncio

from ballast.kube.client import api_client
from ballast.kube.install import install, load_manifests

CRD_FILE = Path(__file__).resolve().parents[3] / "deploy" / "crds" / "servicelevelobjectives.platform.example.com.yaml"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def slo_api(kubeconfig_path: Path) -> None:
    api = await api_client(str(kubeconfig_path))
    try:
        await install(api, load_manifests(CRD_FILE))
    finally:
        await api.close()
