"""Server-side apply of plain manifests, by path, under one field manager.

Server-side apply makes the API server merge our intent with everyone else's: fields we own are set to what we
send, fields others own (an HPA's replicas, a controller's status) are left alone, and applying an unchanged manifest
changes nothing (no new resourceVersion, no watch event, no reconcile loop).
"""

from __future__ import annotations

from typing import Any

from ballast.kube.rest import send_json

# (apiVersion, kind) -> (path prefix, plural, namespaced). Only the kinds Ballast writes: no discovery round trips.
RESOURCES: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("v1", "Service"): ("/api/v1", "services", True),
    ("v1", "ResourceQuota"): ("/api/v1", "resourcequotas", True),
    ("v1", "LimitRange"): ("/api/v1", "limitranges", True),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    ("policy/v1", "PodDisruptionBudget"): ("/apis/policy/v1", "poddisruptionbudgets", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("/apis/monitoring.coreos.com/v1", "servicemonitors", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): (
        "/apis/rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        False,
    ),
    ("rbac.authorization.k8s.io/v1", "Role"): ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    ("coordination.k8s.io/v1", "Lease"): ("/apis/coordination.k8s.io/v1", "leases", True),
    ("platform.example.com/v1", "WebApp"): ("/apis/platform.example.com/v1", "webapps", True),
    ("platform.example.com/v1", "Tenant"): ("/apis/platform.example.com/v1", "tenants", False),
}


def collection_path(api_version: str, kind: str, namespace: str | None) -> str:
    try:
        prefix, plural, namespaced = RESOURCES[(api_version, kind)]
    except KeyError:
        raise ValueError(f"{api_version} {kind} is not a kind Ballast writes") from None
    if namespaced:
        if not namespace:
            raise ValueError(f"{kind} is namespaced: the manifest needs metadata.namespace")
        return f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{prefix}/{plural}"


def object_path(manifest: dict[str, Any]) -> str:
    metadata = manifest["metadata"]
    base = collection_path(manifest["apiVersion"], manifest["kind"], metadata.get("namespace"))
    return f"{base}/{metadata['name']}"


async def apply(api: Any, manifest: dict[str, Any], *, field_manager: str, subresource: str = "") -> dict[str, Any]:
    """Server-side applies `manifest` (forcing ownership of the fields it names) and returns the stored object."""
    path = object_path(manifest) + (f"/{subresource}" if subresource else "")
    return await send_json(
        api,
        "PATCH",
        path,
        query=[("fieldManager", field_manager), ("force", "true")],
        headers={"Content-Type": "application/apply-patch+yaml"},
        body=manifest,
    )


async def get(api: Any, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    """The object, or None if it does not exist."""
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        return await send_json(api, "GET", f"{collection_path(api_version, kind, namespace)}/{name}")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


async def delete(api: Any, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
    """Deletes the object in the background (dependents by garbage collection); False if it was already gone."""
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        path = f"{collection_path(api_version, kind, namespace)}/{name}"
        await send_json(api, "DELETE", path, query=[("propagationPolicy", "Background")])
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
