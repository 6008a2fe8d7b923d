"""Finalizers as a library helper: add one, remove one, and run a cleanup once before the object may go.

A finalizer is for state outside the cluster or outside the object's owner references (a fault injected by a chaos
experiment, a record in another system): the API server keeps the object, with a deletionTimestamp, until every
finalizer is removed. The finalizer is added and removed by a merge patch that names the resourceVersion it was
computed from, so a stale copy never drops a finalizer another controller added meanwhile (it gets `Conflict` and
reads again).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ballast.kube.resource import Resource
from ballast.kube.rest import KubeApi, send_json


def has_finalizer(obj: dict[str, Any], finalizer: str) -> bool:
    return finalizer in (obj["metadata"].get("finalizers") or [])


def is_deleting(obj: dict[str, Any]) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


async def _patch_finalizers(api: KubeApi, resource: Resource, obj: dict[str, Any], finalizers: list[str]) -> Any:
    # A merge patch naming the resourceVersion is a compare-and-swap: the list is replaced whole, so only from the
    # copy it was computed from.
    metadata = {"resourceVersion": obj["metadata"]["resourceVersion"], "finalizers": finalizers}
    return await send_json(
        api,
        "PATCH",
        resource.object_path(obj),
        headers={"Content-Type": "application/merge-patch+json"},
        body={"metadata": metadata},
    )


async def add_finalizer(api: KubeApi, resource: Resource, obj: dict[str, Any], finalizer: str) -> dict[str, Any]:
    """The object with `finalizer` added (unchanged if it had it). Raises `Conflict` if `obj` is stale."""
    if has_finalizer(obj, finalizer):
        return obj
    stored: dict[str, Any] = await _patch_finalizers(
        api, resource, obj, [*(obj["metadata"].get("finalizers") or []), finalizer]
    )
    return stored


async def remove_finalizer(api: KubeApi, resource: Resource, obj: dict[str, Any], finalizer: str) -> dict[str, Any]:
    """The object without `finalizer` (unchanged if it had none). Raises `Conflict` if `obj` is stale. Once the
    last finalizer of an object being deleted is gone, the API server deletes it."""
    if not has_finalizer(obj, finalizer):
        return obj
    remaining = [f for f in obj["metadata"]["finalizers"] if f != finalizer]
    stored: dict[str, Any] = await _patch_finalizers(api, resource, obj, remaining)
    return stored


async def finalize(
    api: KubeApi,
    resource: Resource,
    obj: dict[str, Any],
    finalizer: str,
    cleanup: Callable[[dict[str, Any]], Awaitable[None]],
) -> bool:
    """For an object being deleted that still carries `finalizer`: runs `cleanup(obj)` and then removes the
    finalizer, so the deletion can finish. Returns True when it handled a deletion (the caller's reconcile ends
    there), False for an object not being deleted or no longer ours to finalize.

    Cleanup must be idempotent: if removing the finalizer fails (a conflict, the API server away), the next
    reconcile runs it again before trying once more — "once" means it has succeeded before the finalizer goes, never
    that it is skipped."""
    if not is_deleting(obj) or not has_finalizer(obj, finalizer):
        return False
    await cleanup(obj)
    await remove_finalizer(api, resource, obj, finalizer)
    return True
