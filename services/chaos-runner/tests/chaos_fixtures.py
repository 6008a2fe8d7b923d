"""Fixtures shared by the chaos-runner's suites: the platform CRDs (WebApp, ChaosExperiment) and Litmus' real CRDs
installed once per run, and helpers to make experiments and opted-in namespaces.

Litmus' real CRDs are read from ../shared/crds relative to the repository, which CI lays beside the checkout
(BALLAST_THIRD_PARTY_CRDS points elsewhere, e.g. for a worktree), unedited as upstream ships them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ballast.chaos_runner.api import API_VERSION, CHAOS_NAMESPACE_LABEL
from ballast.kube.client import api_client
from ballast.kube.install import install, load_manifests
from ballast.kube.resource import NAMESPACE
from ballast.kube.rest import KubeApi, send_json

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
CRD_FILE = DEPLOY / "crds" / "chaosexperiments.platform.example.com.yaml"
PLATFORM_CRDS = (DEPLOY / "crds" / "webapps.platform.example.com.yaml", CRD_FILE)
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
