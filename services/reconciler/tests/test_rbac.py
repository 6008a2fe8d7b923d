"""The reconciler's ClusterRole is enough to do its job and no more: the operator runs on a ServiceAccount token
bound to exactly deploy/rbac/reconciler.yaml, and that token is refused what the reconciler has no business with."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from reconciler_fixtures import DEPLOY, IMAGE, platform_api  # noqa: F401

from ballast.kube.apply import apply, get
from ballast.kube.resource import WEBAPP
from ballast.reconciler.operator import OperatorMetrics, WebAppOperator
from ballast.testing.waiting import eventually

pytestmark = pytest.mark.cluster
MANAGER = "test-rbac"


async def token_client(kube_api: Any, kubeconfig_path: Path, namespace: str) -> Any:
    """An API client authenticated as the ServiceAccount `reconciler`, bound to the shipped roles."""
    from kubernetes_asyncio import client, config

    rbac = list(yaml.safe_load_all((DEPLOY / "rbac" / "reconciler.yaml").read_text()))
    for manifest in rbac:
        manifest = copy.deepcopy(manifest)
        if manifest["kind"] == "Role":
            manifest["metadata"]["namespace"] = namespace  # the lease lives in the test's namespace here
        await apply(kube_api, manifest, field_manager=MANAGER)
    subject = [{"kind": "ServiceAccount", "name": "reconciler", "namespace": namespace}]
    await apply(
        kube_api,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reconciler", "namespace": namespace}},
        field_manager=MANAGER,
    )
    await apply(
        kube_api,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"ballast-reconciler-{namespace}"},
            "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ballast-reconciler"},
        },
        field_manager=MANAGER,
    )
    await apply(
        kube_api,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reconciler-leader-election", "namespace": namespace},
            "subjects": subject,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "ballast-reconciler-leader-election",
            },
        },
        field_manager=MANAGER,
    )
    token = await client.CoreV1Api(kube_api).create_namespaced_service_account_token(
        "reconciler",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)),
    )
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig_path), client_configuration=configuration)
    # Keep the server address and CA from the kubeconfig; replace who we are.
    configuration.api_key = {"BearerToken": f"Bearer {token.status.token}"}
    configuration.api_key_prefix = {}
    configuration.refresh_api_key_hook = None
    configuration.cert_file = configuration.key_file = None
    return client.ApiClient(configuration)


async def test_the_shipped_role_is_enough_and_no_more(
    kube_api: Any, kubeconfig_path: Path, namespace: str, platform_api: None
) -> None:
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    limited = await token_client(kube_api, kubeconfig_path, namespace)
    try:
        with pytest.raises(ApiException) as refused:
            await client.CoreV1Api(limited).list_namespaced_secret(namespace)
        assert refused.value.status == 403
        with pytest.raises(ApiException) as refused_rbac:
            await client.RbacAuthorizationV1Api(limited).list_cluster_role()
        assert refused_rbac.value.status == 403

        operator = WebAppOperator(limited, OperatorMetrics(CollectorRegistry()))
        stop = asyncio.Event()
        running = asyncio.create_task(operator.run(stop))
        body = {
            "apiVersion": "platform.example.com/v1",
            "kind": "WebApp",
            "metadata": {"name": "web"},
            "spec": {"image": IMAGE, "replicas": 2},
        }
        await client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
            "platform.example.com", "v1", namespace, "webapps", body
        )

        async def ready() -> bool:
            obj = await get(kube_api, WEBAPP, namespace, "web")
            conditions = ((obj or {}).get("status") or {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        await eventually(ready, timeout=60, what="the WebApp reconciled with the limited token")
        stop.set()
        await asyncio.wait_for(running, 15)
    finally:
        await limited.close()
