"""The gate watching the test control plane (`BALLAST_WATCH_CLUSTER`), and what it needs there: Gatekeeper's
ConstraintTemplate CRD (read from the shared checkout beside the repository, `../shared/crds/gatekeeper`, or from
`BALLAST_THIRD_PARTY_CRDS`) and the WebApp CRD (deploy/crds). Templates are cluster-wide and every gate watches them
all: each test gives its templates kinds of its own and deletes them at its end.

Gatekeeper's Config CRD is not among the shared CRDs: `config_crd` stands in for it (the same group, version, kind
and scope, its spec left open), installed only by the tests that read a Config from the cluster (`config_crd`
fixture); each of those gates reads a Config in the test's own namespace."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from gate_webhook import GateWebhook, start_gate

from ballast.bus import Bus
from ballast.events import Envelope
from ballast.events.catalogue import PLATFORM_EVENTS
from ballast.kube.client import api_client
from ballast.kube.errors import NotFound
from ballast.kube.install import install, load_manifests
from ballast.kube.rest import send_json
from ballast.policy.documents import load_documents
from ballast.testing import NatsServer, ServiceProcess

REPOSITORY = Path(__file__).resolve().parents[3]
SHARED = REPOSITORY.parent / "shared"
CRDS = Path(os.environ.get("BALLAST_THIRD_PARTY_CRDS") or SHARED / "crds")
TEMPLATE_CRD = CRDS / "gatekeeper" / "constrainttemplate-customresourcedefinition.yaml"
WEBAPP_CRD = REPOSITORY / "deploy" / "crds" / "webapps.platform.example.com.yaml"
TENANT_CRD = REPOSITORY / "deploy" / "crds" / "tenants.platform.example.com.yaml"
CONFORMANCE = Path(os.environ.get("BALLAST_CONFORMANCE") or SHARED / "conformance")
LIBRARY = CONFORMANCE / "gatekeeper-library" / "library"
TEMPLATES = "/apis/templates.gatekeeper.sh/v1/constrainttemplates"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gate_crds(kubeconfig_path: Path) -> None:
    """Gatekeeper's ConstraintTemplate CRD and the platform's WebApp and Tenant CRDs, installed once."""
    if not TEMPLATE_CRD.is_file():
        pytest.fail(f"{TEMPLATE_CRD} is missing: set BALLAST_THIRD_PARTY_CRDS to the shared crds directory")
    api = await api_client(str(kubeconfig_path))
    try:
        await install(api, load_manifests(TEMPLATE_CRD, WEBAPP_CRD, TENANT_CRD))
    finally:
        await api.close()


CONFIG_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "configs.config.gatekeeper.sh"},
    "spec": {
        "group": "config.gatekeeper.sh",
        "scope": "Namespaced",
        "names": {"kind": "Config", "listKind": "ConfigList", "plural": "configs", "singular": "config"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def config_crd(kubeconfig_path: Path) -> None:
    """A CRD for Gatekeeper's `Config` (see the module docstring), installed once."""
    api = await api_client(str(kubeconfig_path))
    try:
        await install(api, [CONFIG_CRD])
    finally:
        await api.close()


def library_template(policy: str, kind: str) -> dict[str, Any]:
    """A gatekeeper-library template (general/<policy>) renamed to a kind of the test's own."""
    path = LIBRARY / "general" / policy / "template.yaml"
    if not path.is_file():
        pytest.fail(f"{path} is missing: set BALLAST_CONFORMANCE to the conformance directory")
    (template,) = load_documents(path)
    template["metadata"] = {"name": kind.lower()}
    template["spec"]["crd"]["spec"]["names"]["kind"] = kind
    return template


def unique_kind(prefix: str) -> str:
    return f"{prefix}X{uuid.uuid4().hex[:6]}"


class ClusterObjects:
    """Cluster-scoped objects a test creates (templates and their constraint kinds), deleted at its end."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.templates: list[str] = []

    async def create_template(self, template: dict[str, Any]) -> None:
        await send_json(self.api, "POST", TEMPLATES, body=template)
        self.templates.append(template["metadata"]["name"])

    async def create_library_template(self, policy: str, prefix: str) -> str:
        """A gatekeeper-library template (general/<policy>) created under a kind of its own; the kind."""
        kind = unique_kind(prefix)
        await self.create_template(library_template(policy, kind))
        return kind

    async def template(self, name: str) -> dict[str, Any]:
        return await send_json(self.api, "GET", f"{TEMPLATES}/{name}")

    async def delete_all(self) -> None:
        for name in self.templates:
            crd = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}.constraints.gatekeeper.sh"
            for path in (f"{TEMPLATES}/{name}", crd):
                with contextlib.suppress(NotFound):
                    await send_json(self.api, "DELETE", path)


@pytest.fixture
async def cluster_objects(kube_api: Any) -> AsyncIterator[ClusterObjects]:
    objects = ClusterObjects(kube_api)
    yield objects
    await objects.delete_all()


def start_cluster_gate(
    services: Callable[..., ServiceProcess],
    tmp_path: Path,
    *,
    nats_url: str,
    kubeconfig: Path,
    opa_binary: Path,
    cluster: str,
    namespace: str,
    **env: str,
) -> GateWebhook:
    """A gate watching the cluster; its audit leads through a lease in the test's namespace."""
    return start_gate(
        services,
        tmp_path / f"tls-{uuid.uuid4().hex[:6]}",
        nats_url=nats_url,
        KUBECONFIG=str(kubeconfig),
        BALLAST_OPA_BINARY=str(opa_binary),
        BALLAST_WATCH_CLUSTER="true",
        BALLAST_CLUSTER=cluster,
        BALLAST_LEASE_NAMESPACE=namespace,
        **env,
    )


ClusterGate = Callable[..., GateWebhook]


@pytest.fixture
def cluster_gate(
    services: Callable[..., ServiceProcess],
    tmp_path: Path,
    nats_server: NatsServer,
    kubeconfig_path: Path,
    opa_binary: Path,
    namespace: str,
) -> ClusterGate:
    """`cluster_gate(cluster, **env)`: a gate watching the test control plane for `cluster`, its audit leading
    through a lease in the test's namespace."""

    def start(cluster: str, **env: str) -> GateWebhook:
        return start_cluster_gate(
            services,
            tmp_path,
            nats_url=nats_server.url,
            kubeconfig=kubeconfig_path,
            opa_binary=opa_binary,
            cluster=cluster,
            namespace=namespace,
            **env,
        )

    return start


async def stored_events(bus: Bus, subject: str) -> list[Envelope[Any]]:
    """Every valid event stored on `subject` (wildcards allowed) so far."""
    found = []
    async with bus.read(PLATFORM_EVENTS.name, subjects=[subject], until="last") as events:
        async for stored in events:
            if stored.event is not None:
                found.append(stored.event)
    return found
