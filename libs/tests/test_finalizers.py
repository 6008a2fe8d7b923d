"""Finalizers against the real API server: an object carrying one outlives its deletion until the cleanup has run;
a stale copy cannot drop a finalizer someone else added."""

from __future__ import annotations

from typing import Any

import pytest

from ballast.kube.apply import get
from ballast.kube.errors import Conflict
from ballast.kube.finalizers import add_finalizer, finalize, has_finalizer, is_deleting, remove_finalizer
from ballast.kube.resource import Resource
from ballast.kube.rest import send_json

pytestmark = pytest.mark.cluster
CONFIG_MAP = Resource("", "v1", "configmaps", "ConfigMap")
FINALIZER = "platform.example.com/chaos-faults"


async def create(kube_api: Any, namespace: str, name: str) -> dict[str, Any]:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}
    created: dict[str, Any] = await send_json(kube_api, "POST", CONFIG_MAP.collection(namespace), body=body)
    return created


async def test_a_finalized_object_goes_only_after_its_cleanup_ran(kube_api: Any, namespace: str) -> None:
    obj = await add_finalizer(kube_api, CONFIG_MAP, await create(kube_api, namespace, "run"), FINALIZER)
    assert has_finalizer(obj, FINALIZER)
    assert await add_finalizer(kube_api, CONFIG_MAP, obj, FINALIZER) is obj, "already there: no write"
    await send_json(kube_api, "DELETE", CONFIG_MAP.path(namespace, "run"))
    held = await get(kube_api, CONFIG_MAP, namespace, "run")
    assert held is not None
    assert is_deleting(held), "the finalizer holds the deletion"

    cleaned: list[str] = []

    async def cleanup(what: dict[str, Any]) -> None:
        cleaned.append(what["metadata"]["name"])

    assert not await finalize(kube_api, CONFIG_MAP, obj, FINALIZER, cleanup), "not being deleted in this copy"
    assert cleaned == []
    assert await finalize(kube_api, CONFIG_MAP, held, FINALIZER, cleanup)
    assert cleaned == ["run"]
    assert await get(kube_api, CONFIG_MAP, namespace, "run") is None, "gone once the last finalizer went"


async def test_a_stale_copy_cannot_drop_a_finalizer_added_since(kube_api: Any, namespace: str) -> None:
    stale = await create(kube_api, namespace, "shared")
    current = await add_finalizer(kube_api, CONFIG_MAP, stale, "example.com/other")
    with pytest.raises(Conflict):
        await add_finalizer(kube_api, CONFIG_MAP, stale, FINALIZER)
    ours = await add_finalizer(kube_api, CONFIG_MAP, current, FINALIZER)
    assert ours["metadata"]["finalizers"] == ["example.com/other", FINALIZER]
    without = await remove_finalizer(kube_api, CONFIG_MAP, ours, "example.com/other")
    assert without["metadata"]["finalizers"] == [FINALIZER]
    await remove_finalizer(kube_api, CONFIG_MAP, without, FINALIZER)
