"""Server-side apply of plain manifests, get and delete, by `Resource`, under one field manager.

Server-side apply makes the API server merge our intent with everyone else's: fields we own are set to what we
send, fields others own (an HPA's replicas, a controller's status) are left alone, and applying an unchanged manifest
changes nothing (no new resourceVersion, no watch event, no reconcile loop).
"""

from __future__ import annotations

from typing import Any

from ballast.kube.errors import NotFound
from ballast.kube.resource import Resource, resource_for
from ballast.kube.rest import KubeApi, send_json


async def apply(
    api: KubeApi,
    manifest: dict[str, Any],
    *,
    field_manager: str,
    subresource: str = "",
    resource: Resource | None = None,
) -> dict[str, Any]:
    """Server-side applies `manifest` (forcing ownership of the fields it names) and returns the stored object.
    `resource` defaults to the known kind the manifest names."""
    resource = resource or resource_for(manifest)
    return await send_json(
        api,
        "PATCH",
        resource.object_path(manifest, subresource),
        query=[("fieldManager", field_manager), ("force", "true")],
        headers={"Content-Type": "application/apply-patch+yaml"},
        body=manifest,
    )


async def get(api: KubeApi, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
    """The object, or None if it does not exist."""
    try:
        return await send_json(api, "GET", resource.path(namespace, name))
    except NotFound:
        return None


async def delete(api: KubeApi, resource: Resource, namespace: str | None, name: str) -> bool:
    """Deletes the object in the background (dependents by garbage collection); False if it was already gone."""
    try:
        await send_json(api, "DELETE", resource.path(namespace, name), query=[("propagationPolicy", "Background")])
    except NotFound:
        return False
    return True
