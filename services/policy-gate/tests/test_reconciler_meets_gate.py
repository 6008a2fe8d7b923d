"""Across services: the reconciler's `svc.policy.check` answered by a real policy-gate (both their own processes, real
NATS, the real control plane, the gatekeeper-library's K8sAllowedRepos on the real OPA). A WebApp whose image
breaks the constraint is refused before anything is applied, the constraint's message in its status; one that keeps
it gets its Deployment."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from gate_cluster import gate_crds, library_template  # noqa: F401  (gate_crds: fixture)

from ballast.kube.apply import get
from ballast.kube.resource import DEPLOYMENT, WEBAPP
from ballast.kube.rest import send_json
from ballast.testing import NatsServer, ServiceProcess, eventually

pytestmark = pytest.mark.cluster


def webapp(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "platform.example.com/v1",
        "kind": "WebApp",
        "metadata": {"name": name},
        "spec": {"image": image},
    }


async def degraded(kube_api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    obj = await get(kube_api, WEBAPP, namespace, name)
    for condition in ((obj or {}).get("status") or {}).get("conditions", []):
        if condition["type"] == "Degraded" and condition["status"] == "True":
            return dict(condition)
    return None


async def test_the_reconciler_is_refused_by_the_gate_with_the_constraints_message(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    kube_api: Any,
    kubeconfig_path: Path,
    opa_binary: Path,
    tmp_path: Path,
    namespace: str,
    gate_crds: None,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    policies = tmp_path / "policies"
    policies.mkdir()
    constraint = {
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": "K8sAllowedRepos",
        "metadata": {"name": "our-registry"},
        "spec": {
            "match": {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}], "namespaces": [namespace]},
            "parameters": {"repos": ["registry.example.com/"]},
        },
    }
    template = library_template("allowedrepos", "K8sAllowedRepos")
    (policies / "policies.yaml").write_text(yaml.safe_dump_all([template, constraint]))
    gate = services(
        "ballast.policy_gate",
        nats_url=nats_server.url,
        BALLAST_HTTPS_PORT="0",
        BALLAST_CLUSTER=cluster,
        BALLAST_OPA_BINARY=str(opa_binary),
        BALLAST_POLICY_DIR=str(policies),
    )
    reconciler = services(
        "ballast.reconciler",
        nats_url=nats_server.url,
        KUBECONFIG=str(kubeconfig_path),
        BALLAST_CLUSTER=cluster,
        BALLAST_POLICY_CHECK="true",
        BALLAST_POLICY_FAILURE="closed",
        BALLAST_LEASE_NAMESPACE=namespace,
    )
    await gate.wait_status("/readyz", 200, timeout=60)
    await reconciler.wait_status("/readyz", 200, timeout=60)
    webapps = f"/apis/platform.example.com/v1/namespaces/{namespace}/webapps"
    await send_json(kube_api, "POST", webapps, body=webapp("foreign", "docker.io/library/nginx:1.27"))
    await send_json(kube_api, "POST", webapps, body=webapp("ours", "registry.example.com/shop/web:1.2.3"))

    refused = await eventually(lambda: degraded(kube_api, namespace, "foreign"), timeout=60, what="foreign refused")
    assert refused["reason"] == "PolicyDenied"
    # The reconciler words it `<policy>: <object>: <message>`; the message is the template's, on the pod the
    # Deployment would create.
    assert refused["message"] == (
        "K8sAllowedRepos/our-registry: Deployment/foreign: [Implied by expand-workloads] container <app> has an "
        'invalid image repo <docker.io/library/nginx:1.27>, allowed repos are ["registry.example.com/"]'
    )
    assert await get(kube_api, DEPLOYMENT, namespace, "foreign") is None, "nothing applied for a refused WebApp"

    async def applied() -> bool:
        return await get(kube_api, DEPLOYMENT, namespace, "ours") is not None

    await eventually(applied, timeout=60, what="the allowed WebApp's Deployment")
    assert await degraded(kube_api, namespace, "ours") is None
