"""What the gate reads of the cluster: Namespaces (watched, for namespaceSelector), kinds by discovery, and the
objects the error-budget policy looks up while a freeze is on (a WebApp, its Deployment, the images its ReplicaSets
ran).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ballast.kube import Informer, KubeApi, NotFound
from ballast.kube.informer import strip_managed_fields
from ballast.kube.resource import DEPLOYMENT, NAMESPACE, WEBAPP, Resource
from ballast.kube.rest import send_json

log = logging.getLogger(__name__)

REPLICA_SET = Resource("apps", "v1", "replicasets", "ReplicaSet")
# The reconciler labels every child (and so the pod template its ReplicaSets copy) with the WebApp's name here.
INSTANCE_LABEL = "app.kubernetes.io/instance"
LOOKUP_TIMEOUT = 1.0  # seconds; a lookup on the admission path must leave the webhook's 2 s room to answer


def typed(resource: Resource) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An informer transform: a list's items carry no apiVersion and kind (watch events do); policies and the
    inventory's layout read them, so they are put back. managedFields go, as in every cache."""

    def transform(obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        return strip_managed_fields(obj)

    return transform


class Cluster:
    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.namespaces = Informer(api, NAMESPACE, transform=typed(NAMESPACE))
        self._resources: dict[tuple[str, str], Resource] = {}

    def namespace(self, name: str | None) -> dict[str, Any] | None:
        """The Namespace object, from the cache (None when unknown or for cluster-scoped objects)."""
        if not name:
            return None
        return self.namespaces.store.get(("", name))

    async def resource(self, api_version: str, kind: str) -> Resource:
        """The resource serving `kind` in `api_version`, asked of the API server's discovery once."""
        key = (api_version, kind)
        if key not in self._resources:
            group, _, version = api_version.rpartition("/")
            path = f"/apis/{api_version}" if group else f"/api/{version}"
            try:
                body = await send_json(self.api, "GET", path)
            except NotFound:
                raise LookupError(f"{api_version} is not served by the API server") from None
            for found in body.get("resources") or []:
                if found.get("kind") == kind and "/" not in found.get("name", ""):
                    self._resources[key] = Resource(group, version, found["name"], kind, bool(found.get("namespaced")))
                    break
            else:
                raise LookupError(f"{api_version} {kind} is not served by the API server")
        return self._resources[key]

    async def preferred(self, group: str, kind: str) -> Resource:
        """`kind` in the group's preferred version (a constraint's match names groups and kinds, not versions)."""
        if not group:
            return await self.resource("v1", kind)
        try:
            body = await send_json(self.api, "GET", f"/apis/{group}")
        except NotFound:
            raise LookupError(f"API group {group!r} is not served by the API server") from None
        version = (body.get("preferredVersion") or {}).get("version")
        if not version:
            raise LookupError(f"API group {group!r} has no preferred version")
        return await self.resource(f"{group}/{version}", kind)

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await send_json(self.api, "GET", resource.path(namespace, name), timeout=LOOKUP_TIMEOUT)
        except NotFound:
            return None

    async def webapp(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get(WEBAPP, namespace, name)

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get(DEPLOYMENT, namespace, name)

    async def previous_images(self, namespace: str, webapp: str) -> set[str] | None:
        """The images the WebApp's Deployment ran: its ReplicaSets' pod templates (Kubernetes keeps the last
        revisionHistoryLimit of them). None when they cannot be read."""
        try:
            body = await send_json(
                self.api,
                "GET",
                REPLICA_SET.collection(namespace),
                query=[("labelSelector", f"{INSTANCE_LABEL}={webapp}")],
                timeout=LOOKUP_TIMEOUT,
            )
        except Exception as exc:  # the freeze then refuses: a rollback that cannot be verified is not one
            log.warning("ReplicaSets of WebApp %s/%s not read: %s", namespace, webapp, exc)
            return None
        images: set[str] = set()
        for replica_set in body.get("items") or []:
            owners = (replica_set.get("metadata") or {}).get("ownerReferences") or []
            if not any(o.get("kind") == "Deployment" and o.get("name") == webapp for o in owners):
                continue
            pod_spec = ((replica_set.get("spec") or {}).get("template") or {}).get("spec") or {}
            images.update(str(c.get("image")) for c in pod_spec.get("containers") or [])
        return images
