"""CRDs: the API server validates custom objects against their schema, and the third-party CRDs Ballast works
with (Litmus, Gatekeeper, Prometheus Operator) install as on a real cluster."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.utils import create_from_yaml_single_item

from ballast.testing.kube import assert_refused_naming
from ballast.testing.waiting import eventually

pytestmark = pytest.mark.cluster

FIXTURES = Path(__file__).parent / "fixtures"
# The shared folder lies beside the checkout (as in CI); the variable points elsewhere.
THIRD_PARTY_CRDS = Path(
    os.environ.get("BALLAST_THIRD_PARTY_CRDS", Path(__file__).resolve().parents[3] / "shared" / "crds")
)
THIRD_PARTY_NAMES = {
    "chaosengines.litmuschaos.io",
    "chaosexperiments.litmuschaos.io",
    "chaosresults.litmuschaos.io",
    "constrainttemplates.templates.gatekeeper.sh",
    "podmonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
    "servicemonitors.monitoring.coreos.com",
}
GROUP, VERSION, PLURAL = "fixtures.ballast.test", "v1", "widgets"


def load_manifests(*paths: Path) -> list[dict[str, Any]]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


async def install_crd(api: client.ApiClient, manifest: dict[str, Any]) -> str:
    """Creates the CRD as it is in the manifest (an existing one is kept) and waits until it is Established."""
    name: str = manifest["metadata"]["name"]
    try:
        await create_from_yaml_single_item(api, manifest)
    except ApiException as exc:
        if exc.status != 409:
            raise
    extensions = client.ApiextensionsV1Api(api)

    async def established() -> bool:
        crd = await extensions.read_custom_resource_definition(name)
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

    await eventually(established, timeout=30, interval=0.1, what=f"CRD {name} Established")
    return name


@pytest.fixture
async def widgets(kube_api: client.ApiClient, namespace: str) -> client.CustomObjectsApi:
    (manifest,) = load_manifests(FIXTURES / "widget-crd.yaml")
    await install_crd(kube_api, manifest)
    custom = client.CustomObjectsApi(kube_api)

    async def served() -> bool:
        # Established precedes the resource's handler and storage by a moment (404, then 429 "storage is
        # (re)initializing"): wait until the resource answers.
        try:
            await custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        except ApiException as exc:
            if exc.status in (404, 429):
                return False
            raise
        return True

    await eventually(served, timeout=30, interval=0.1, what="widgets served")
    return custom


def widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


async def test_a_valid_custom_object_is_accepted(widgets: client.CustomObjectsApi, namespace: str) -> None:
    created = await widgets.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, widget("good", {"size": "large", "replicas": 5})
    )
    assert created["spec"] == {"size": "large", "replicas": 5}


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"size": "small", "replicas": "three"}, "spec.replicas", "must be of type integer"),
        ({"size": "small", "replicas": 0}, "spec.replicas", "should be greater than or equal to 1"),
        ({"size": "huge", "replicas": 1}, "spec.size", 'Unsupported value: "huge"'),
        ({"size": "small"}, "spec.replicas", "Required value"),
        ({"size": "small", "replicas": 5}, "spec", "small widgets have at most 3 replicas"),
    ],
    ids=["wrong-type", "below-minimum", "not-in-enum", "missing", "cel-rule"],
)
async def test_a_custom_object_violating_the_schema_is_rejected_with_the_apiservers_message(
    widgets: client.CustomObjectsApi, namespace: str, spec: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ApiException) as rejected:
        await widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("bad", spec))
    assert_refused_naming(rejected.value, field, reason)


async def test_third_party_crds_install_and_become_established(kube_api: client.ApiClient) -> None:
    files = await asyncio.to_thread(lambda: sorted(THIRD_PARTY_CRDS.rglob("*.yaml")))
    assert files, f"no CRD manifests under {THIRD_PARTY_CRDS} (set BALLAST_THIRD_PARTY_CRDS)"
    manifests = load_manifests(*files)
    assert {m["kind"] for m in manifests} == {"CustomResourceDefinition"}
    installed = await asyncio.gather(*(install_crd(kube_api, manifest) for manifest in manifests))
    assert set(installed) == THIRD_PARTY_NAMES
