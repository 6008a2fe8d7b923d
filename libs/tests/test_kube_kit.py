"""The controller kit's pure parts: API errors from Status bodies, resource paths, map functions, predicates,
per-key memory, conditions, and terminal errors in the controller loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from ballast.kube.conditions import find_condition, is_true, set_condition
from ballast.kube.controller import Controller, ControllerMetrics, Result, TerminalError
from ballast.kube.errors import ApiError, Conflict, Gone, Invalid, NotFound, api_error
from ballast.kube.handler import controller_owner, first_of, label_value, own_key
from ballast.kube.memory import Memory
from ballast.kube.predicate import any_of, generation_changed, labels_changed
from ballast.kube.resource import DEPLOYMENT, NAMESPACE, POD, TENANT, WEBAPP, Resource, resource_for
from ballast.testing import eventually


def status_body(code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None) -> bytes:
    details = {"causes": causes} if causes else {}
    return orjson.dumps({"kind": "Status", "status": "Failure", "reason": reason, "message": message,
                         "code": code, "details": details})  # fmt: skip


def test_api_errors_are_typed_by_status_and_carry_the_servers_words() -> None:
    invalid = api_error(
        422,
        "Unprocessable Entity",
        status_body(422, "Invalid", 'WebApp "web" is invalid: spec.replicas: Invalid value: -1',
                    [{"field": "spec.replicas", "reason": "FieldValueInvalid", "message": "must be >= 0"}]),
    )  # fmt: skip
    assert isinstance(invalid, Invalid)
    assert invalid.reason == "Invalid"
    assert invalid.message.startswith('WebApp "web" is invalid: spec.replicas')
    assert [(c.field, c.reason) for c in invalid.causes] == [("spec.replicas", "FieldValueInvalid")]
    assert not invalid.transient
    assert isinstance(api_error(404, "Not Found", status_body(404, "NotFound", "gone")), NotFound)
    assert isinstance(api_error(410, "Gone", status_body(410, "Expired", "too old")), Gone)
    conflict = api_error(409, "Conflict", status_body(409, "Conflict", "the object has been modified"))
    assert isinstance(conflict, Conflict)
    assert conflict.transient
    # A proxy's HTML page is no Status: the error still says what happened, in the HTTP reason's words.
    bad_gateway = api_error(502, "Bad Gateway", b"<html>upstream down</html>")
    assert type(bad_gateway) is ApiError
    assert bad_gateway.transient
    assert bad_gateway.reason == "Bad Gateway"
    assert "upstream down" in bad_gateway.message
    assert bad_gateway.retry_after is None
    # A kind whose watch cache is still initializing (a CRD just installed) says when to come back.
    initializing = orjson.dumps({"kind": "Status", "status": "Failure", "reason": "TooManyRequests",
                                 "message": "storage is (re)initializing", "code": 429,
                                 "details": {"retryAfterSeconds": 1}})  # fmt: skip
    busy = api_error(429, "Too Many Requests", initializing)
    assert busy.transient
    assert busy.retry_after == 1.0


def test_resources_name_their_paths_and_manifests_find_them() -> None:
    assert DEPLOYMENT.api_version == "apps/v1"
    assert POD.api_version == "v1"
    assert DEPLOYMENT.collection() == "/apis/apps/v1/deployments"
    assert DEPLOYMENT.collection("shop") == "/apis/apps/v1/namespaces/shop/deployments"
    assert WEBAPP.path("shop", "web", "status") == "/apis/platform.example.com/v1/namespaces/shop/webapps/web/status"
    assert NAMESPACE.path(None, "shop") == "/api/v1/namespaces/shop"
    assert TENANT.collection("ignored") == "/apis/platform.example.com/v1/tenants", "cluster-scoped: no namespace"
    assert WEBAPP.name == "webapps.platform.example.com"
    with pytest.raises(ValueError, match="namespaced"):
        WEBAPP.path(None, "web")
    assert resource_for({"apiVersion": "apps/v1", "kind": "Deployment"}) is DEPLOYMENT
    widget = Resource("example.com", "v1", "widgets", "Widget")
    assert resource_for({"apiVersion": "example.com/v1", "kind": "Widget"}, [widget]) is widget
    with pytest.raises(ValueError, match=r"example\.com/v1 Widget"):
        resource_for({"apiVersion": "example.com/v1", "kind": "Widget"})


def obj(name: str, *, generation: int = 1, labels: dict[str, str] | None = None, **metadata: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop", "generation": generation, "labels": labels or {},
                         **metadata}}  # fmt: skip


def test_map_functions_find_the_reconciled_key() -> None:
    owned = obj("web-7d9", ownerReferences=[{"kind": "ReplicaSet", "name": "web-7d9", "controller": False},
                                              {"kind": "WebApp", "name": "web", "controller": True}])  # fmt: skip
    assert list(own_key(owned)) == [("shop", "web-7d9")]
    assert list(controller_owner("WebApp")(owned)) == [("shop", "web")]
    assert list(controller_owner("Deployment")(owned)) == []
    pod = obj("web-abc", labels={"app.kubernetes.io/instance": "web"})
    assert list(label_value("app.kubernetes.io/instance")(pod)) == [("shop", "web")]
    either = first_of(controller_owner("WebApp"), label_value("app.kubernetes.io/instance"))
    assert list(either(pod)) == [("shop", "web")]
    assert list(either(owned)) == [("shop", "web")]
    assert list(either(obj("stray"))) == []


def test_predicates_pass_spec_and_label_changes_only() -> None:
    before = obj("web", generation=1, labels={"tier": "a"})
    status_only = obj("web", generation=1, labels={"tier": "a"})
    assert not generation_changed("MODIFIED", status_only, before)
    assert generation_changed("MODIFIED", obj("web", generation=2, labels={"tier": "a"}), before)
    assert generation_changed("MODIFIED", obj("web", deletionTimestamp="2026-12-01T00:00:00Z"), before)
    assert generation_changed("ADDED", before, None)
    assert generation_changed("DELETED", before, before)
    relabelled = obj("web", generation=1, labels={"tier": "b"})
    assert labels_changed("MODIFIED", relabelled, before)
    assert not labels_changed("MODIFIED", status_only, before)
    assert any_of(generation_changed, labels_changed)("MODIFIED", relabelled, before)
    assert not any_of(generation_changed, labels_changed)("MODIFIED", status_only, before)


def test_memory_keeps_one_record_per_key_and_forgets_it_in_one_place() -> None:
    memory: Memory[str, list[int]] = Memory(list)
    forgotten: list[str] = []
    memory.on_forget(forgotten.append)
    memory["shop/web"].append(1)
    memory["shop/web"].append(2)
    assert memory.get("shop/web") == [1, 2]
    assert memory.get("shop/api") is None, "get does not make a record"
    assert memory.forget("shop/web") == [1, 2]
    assert "shop/web" not in memory
    assert memory["shop/web"] == [], "a key seen again starts afresh"
    assert forgotten == ["shop/web"]


def test_a_condition_moves_its_transition_time_only_when_its_status_changes() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    t1 = t0 + timedelta(minutes=5)
    conditions = set_condition([], "Ready", False, "Creating", "the Deployment is being created",
                               observed_generation=1, now=t0)  # fmt: skip
    conditions = set_condition(conditions, "Degraded", False, "AsExpected", "", observed_generation=1, now=t0)
    same = set_condition(conditions, "Ready", False, "ReplicasNotReady", "1/3 ready", observed_generation=2, now=t1)
    ready = find_condition(same, "Ready")
    assert ready is not None
    assert (ready.reason, ready.last_transition_time, ready.observed_generation) == ("ReplicasNotReady", t0, 2)
    assert [c.type for c in same] == ["Ready", "Degraded"], "replaced in place"
    flipped = set_condition(same, "Ready", True, "AllReplicasReady", "3/3 ready", observed_generation=2, now=t1)
    assert is_true(flipped, "Ready")
    assert find_condition(flipped, "Ready").last_transition_time == t1  # type: ignore[union-attr]
    assert not is_true(flipped, "Degraded")
    assert find_condition(flipped, "Progressing") is None


async def test_a_terminal_error_is_not_retried_and_is_counted_apart() -> None:
    registry = CollectorRegistry()
    calls: list[str] = []

    async def reconcile(key: str) -> Result:
        calls.append(key)
        if key == "shop/broken":
            raise TerminalError("spec.image does not parse")
        return Result()

    controller: Controller[str] = Controller("webapp", reconcile, ControllerMetrics(registry), workers=1)
    stop = asyncio.Event()
    running = asyncio.create_task(controller.run(stop))
    controller.enqueue("shop/broken")
    controller.enqueue("shop/web")
    await eventually(lambda: calls == ["shop/broken", "shop/web"], what="both keys reconciled")
    labels = {"controller": "webapp"}
    assert registry.get_sample_value("controller_runtime_terminal_reconcile_errors_total", labels) == 1
    assert registry.get_sample_value("controller_runtime_reconcile_total", labels | {"result": "error"}) == 1
    assert controller.queue.failures("shop/broken") == 0, "no backoff: nothing is retried"
    assert len(controller.queue) == 0, "nothing queued again"
    stop.set()
    await asyncio.wait_for(running, 2)
    assert calls == ["shop/broken", "shop/web"]
