"""pytest fixtures for tests against Kubernetes: one local control plane per test run, a client and a namespace
of its own per test.

With `BALLAST_USE_EXISTING_CLUSTER=1` the same tests run against the cluster `KUBECONFIG` points at instead; a
`KUBECONFIG` alone never redirects them, so a developer's real cluster is only touched on request.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from ballast.kube.errors import ApiError
from ballast.local.controlplane import ControlPlane, ControlPlaneError
from ballast.local.tools import ToolsMissing
from ballast.testing.waiting import eventually

if TYPE_CHECKING:
    # Imported where used: the plugin loads this module in every suite, and kubernetes_asyncio takes seconds to
    # import; suites that never ask for a client should not pay for it.
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

USE_EXISTING_CLUSTER_ENV = "BALLAST_USE_EXISTING_CLUSTER"
TEST_NAMESPACE_LABEL = "ballast.io/test-namespace"


def existing_cluster_kubeconfig() -> Path | None:
    """The kubeconfig of the cluster the user opted into, or None to run a local control plane."""
    if os.environ.get(USE_EXISTING_CLUSTER_ENV, "") not in ("1", "true", "yes"):
        return None
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig or os.pathsep in kubeconfig or not Path(kubeconfig).is_file():
        raise pytest.UsageError(
            f"{USE_EXISTING_CLUSTER_ENV}=1 needs KUBECONFIG to name one existing kubeconfig file (got {kubeconfig!r})"
        )
    return Path(kubeconfig)


def api_status(exc: ApiException | ApiError) -> dict[str, Any]:
    """The Status object the API server sent with an error: `message`, `reason`, `details.causes[].field` (from
    kubernetes-asyncio's typed client, or from Ballast's REST layer)."""
    if isinstance(exc, ApiError):
        return exc.body
    status: dict[str, Any] = json.loads(exc.body or b"{}")
    return status


def assert_refused_naming(exc: ApiException | ApiError, field: str, reason: str) -> None:
    """The API server refused an object as Invalid (422) with a message, and a cause, naming `field`."""
    assert exc.status == 422, exc
    status = api_status(exc)
    assert status["reason"] == "Invalid"
    assert f"{field}: " in status["message"], status["message"]
    assert reason in status["message"], status["message"]
    assert field in {cause.get("field") for cause in status["details"]["causes"]}


def crd_schema(path: Path) -> dict[str, Any]:
    """The openAPIV3Schema of the one version a CRD file declares."""
    (crd,) = yaml.safe_load_all(path.read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def undescribed(schema: dict[str, Any], path: str = "") -> list[str]:
    """The fields under `schema` without a description (which `kubectl explain` shows), by path. The root's
    `metadata` may carry nothing but its type (the API server refuses more); `kubectl explain` describes ObjectMeta."""
    missing = []
    for name, prop in schema.get("properties", {}).items():
        here = f"{path}.{name}"
        if not prop.get("description") and here != ".metadata":
            missing.append(here)
        missing += undescribed(prop, here)
    for nested in ("items", "additionalProperties"):
        if isinstance(schema.get(nested), dict):
            missing += undescribed(schema[nested], f"{path}[]")
    return missing


async def absent(read: Callable[[], Awaitable[object]]) -> bool:
    """True once `read` (an API read of one object) answers 404 Not Found; other errors propagate."""
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        await read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def fake_node_deployment_manifest(
    name: str, replicas: int, image: str = "registry.example.com/shop/web:1.2.3"
) -> dict[str, Any]:
    """`fake_node_deployment` as a plain manifest, for the REST layer (`ballast.kube.rest.send_json`)."""
    from ballast.local.controlplane import FAKE_NODE_ANNOTATION

    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"type": "kwok"},
                    "tolerations": [{"key": FAKE_NODE_ANNOTATION, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{"name": "web", "image": image}],
                },
            },
        },
    }


def fake_node_deployment(name: str, replicas: int, image: str = "registry.example.com/shop/web:1.2.3") -> Any:
    """A Deployment whose pods go to kwok's fake nodes (`type: kwok`, tolerating their taint)."""
    from kubernetes_asyncio import client

    from ballast.local.controlplane import FAKE_NODE_ANNOTATION

    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    node_selector={"type": "kwok"},
                    tolerations=[client.V1Toleration(key=FAKE_NODE_ANNOTATION, operator="Exists", effect="NoSchedule")],
                    containers=[client.V1Container(name="web", image=image)],
                ),
            ),
        ),
    )


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane | None]:
    """The local control plane of this test run (3 kwok nodes), or None when running against an existing cluster."""
    if existing_cluster_kubeconfig() is not None:
        yield None
        return
    plane = ControlPlane(nodes=3)
    try:
        plane.start()
    except (ToolsMissing, ControlPlaneError) as exc:
        # The message is the whole story (what to build, or the failing component's log): no traceback needed.
        pytest.fail(str(exc), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubeconfig_path(control_plane: ControlPlane | None) -> Path:
    if control_plane is not None:
        return control_plane.kubeconfig_path
    existing = existing_cluster_kubeconfig()
    assert existing is not None
    return existing


@pytest.fixture
async def kube_api(kubeconfig_path: Path) -> AsyncIterator[client.ApiClient]:
    """An admin client of the test's own: clients are bound to the event loop they were made in."""
    from ballast.kube.client import api_client

    api = await api_client(str(kubeconfig_path))
    yield api
    await api.close()


@pytest.fixture
async def namespace(kube_api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace, ready for pods (its default ServiceAccount exists), deleted after the test."""
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    core = client.CoreV1Api(kube_api)
    name = f"t-{uuid.uuid4().hex[:10]}"
    await core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_NAMESPACE_LABEL: "true"}))
    )

    async def default_service_account() -> bool:
        try:
            await core.read_namespaced_service_account("default", name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    await eventually(default_service_account, timeout=30, interval=0.05, what=f"ServiceAccount {name}/default")
    yield name
    try:
        await core.delete_namespace(name)
    except ApiException as exc:
        if exc.status not in (404, 409):  # the test deleted it itself: gone, or still terminating
            raise
