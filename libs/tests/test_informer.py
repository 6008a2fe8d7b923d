"""List-then-watch against the real API server: events in order, a cache that matches, resume after the server
ends the watch, and a relist that reports what changed while nobody watched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ballast.kube.informer import Informer
from ballast.kube.resource import Resource
from ballast.testing import eventually

pytestmark = pytest.mark.cluster
CONFIG_MAP = Resource("", "v1", "configmaps", "ConfigMap")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.replaced: list[tuple[str, str | None, str | None]] = []  # (name, old value, new value)

    def __call__(self, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        self.events.append((kind, obj["metadata"]["name"]))
        value = (obj.get("data") or {}).get("value")
        self.replaced.append((obj["metadata"]["name"], (old or {}).get("data", {}).get("value"), value))


@pytest.fixture
async def core(kube_api: Any) -> Any:
    from kubernetes_asyncio import client

    return client.CoreV1Api(kube_api)


def config_map(name: str, value: str = "1") -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app": "shop"}}, "data": {"value": value}}


@pytest.fixture
async def informer(kube_api: Any, namespace: str) -> AsyncIterator[tuple[Informer, Recorder]]:
    recorder = Recorder()
    informer = Informer(kube_api, CONFIG_MAP, namespace=namespace, label_selector="app=shop", watch_timeout=2)
    informer.subscribe(recorder)
    stop = asyncio.Event()
    running = asyncio.create_task(informer.run(stop))
    yield informer, recorder
    stop.set()
    await asyncio.wait_for(running, 10)


async def test_list_then_watch_reports_changes_and_keeps_the_cache(informer: Any, core: Any, namespace: str) -> None:
    watcher, recorder = informer
    await core.create_namespaced_config_map(namespace, config_map("before"))
    await asyncio.wait_for(watcher.synced.wait(), 10)
    await eventually(lambda: ("ADDED", "before") in recorder.events, what="the listed object")
    await core.create_namespaced_config_map(namespace, config_map("web"))
    await core.patch_namespaced_config_map("web", namespace, {"data": {"value": "2"}})
    await core.delete_namespaced_config_map("before", namespace)
    await core.create_namespaced_config_map(namespace, {"metadata": {"name": "other-app"}})  # not selected
    await eventually(lambda: ("DELETED", "before") in recorder.events, what="the deletion")
    assert [e for e in recorder.events if e[1] == "web"][:2] == [("ADDED", "web"), ("MODIFIED", "web")]
    assert set(watcher.store) == {(namespace, "web")}
    assert watcher.store[(namespace, "web")]["data"] == {"value": "2"}
    assert "managedFields" not in watcher.store[(namespace, "web")]["metadata"], "the cache keeps no managedFields"
    assert all(name != "other-app" for _, name in recorder.events)


async def test_watch_resumes_after_the_server_ends_it(informer: Any, core: Any, namespace: str) -> None:
    watcher, recorder = informer
    await asyncio.wait_for(watcher.synced.wait(), 10)
    await eventually(lambda: watcher.resumes >= 2, timeout=15, what="two server-side watch timeouts")
    await core.create_namespaced_config_map(namespace, config_map("late"))
    await eventually(lambda: ("ADDED", "late") in recorder.events, what="an event after resuming")
    assert watcher.relists == 0, "resuming from the last version must not relist"
    assert recorder.events.count(("ADDED", "late")) == 1


async def test_relist_reports_what_changed_while_not_watching(kube_api: Any, core: Any, namespace: str) -> None:
    recorder = Recorder()
    first = Informer(kube_api, CONFIG_MAP, namespace=namespace, label_selector="app=shop")
    first.subscribe(recorder)
    await core.create_namespaced_config_map(namespace, config_map("kept"))
    await core.create_namespaced_config_map(namespace, config_map("removed"))
    await first._list()  # the cache as a previous run left it
    recorder.events.clear()
    await core.delete_namespaced_config_map("removed", namespace)
    await core.patch_namespaced_config_map("kept", namespace, {"data": {"value": "changed"}})
    await core.create_namespaced_config_map(namespace, config_map("new"))
    await first._list()  # what a relist after 410 Gone does
    assert sorted(recorder.events) == [("ADDED", "new"), ("DELETED", "removed"), ("MODIFIED", "kept")]


async def test_handlers_see_the_object_replaced_and_indexes_follow_the_cache(
    informer: Any, core: Any, namespace: str
) -> None:
    watcher, recorder = informer
    watcher.add_index("value", lambda obj: [(obj.get("data") or {}).get("value")])
    await asyncio.wait_for(watcher.synced.wait(), 10)
    await core.create_namespaced_config_map(namespace, config_map("a", "1"))
    await core.create_namespaced_config_map(namespace, config_map("b", "1"))
    await eventually(lambda: len(watcher.by_index("value", "1")) == 2, what="both objects indexed under 1")
    await core.patch_namespaced_config_map("a", namespace, {"data": {"value": "2"}})
    await eventually(lambda: ("a", "1", "2") in recorder.replaced, what="the update told with the object it replaced")
    assert [o["metadata"]["name"] for o in watcher.by_index("value", "1")] == ["b"]
    assert [o["metadata"]["name"] for o in watcher.by_index("value", "2")] == ["a"]
    await core.delete_namespaced_config_map("b", namespace)
    await eventually(lambda: not watcher.by_index("value", "1"), what="the deleted object out of the index")
    assert ("a", None, "1") in recorder.replaced, "an addition has no old object"


async def test_a_relist_after_a_gap_is_told_even_when_nothing_changed(kube_api: Any, core: Any, namespace: str) -> None:
    """An object created and deleted while nobody watched is in neither list: the relist itself is what is told,
    so a controller can look at what it wrote."""
    recorder = Recorder()
    relists: list[int] = []
    watcher = Informer(kube_api, CONFIG_MAP, namespace=namespace, label_selector="app=shop")
    watcher.subscribe(recorder)
    watcher.on_relist(lambda: relists.append(len(recorder.events)))
    await watcher._list()
    assert relists == [], "the first list is no relist"
    await core.create_namespaced_config_map(namespace, config_map("fleeting"))
    await core.delete_namespaced_config_map("fleeting", namespace)
    await watcher._list()  # what a relist after 410 Gone or a failed watch does
    assert recorder.events == [], "created and deleted in the gap: no event"
    assert relists == [0], "the relist is told once, after its differences"
