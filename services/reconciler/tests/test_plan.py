"""The child plan, without I/O: what is written again, what is pruned, and what counts as a repair."""

from __future__ import annotations

from typing import Any

from ballast.reconciler.api import WebApp
from ballast.reconciler.children import slim_child
from ballast.reconciler.plan import Applied, child_type, fingerprint, is_repair, plan_children, version
from ballast.reconciler.render import render

DEPLOYMENT = ("apps/v1", "Deployment")
SERVICE = ("v1", "Service")
PDB = ("policy/v1", "PodDisruptionBudget")


def webapp(replicas: int = 2) -> WebApp:
    return WebApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "generation": 1},
            "spec": {"image": "registry.example.com/shop/web:1.0", "replicas": replicas},
        }
    )


def stored(manifest: dict[str, Any], generation: int | None, resource_version: str) -> dict[str, Any]:
    metadata = {**manifest["metadata"], "resourceVersion": resource_version}
    if generation is not None:
        metadata["generation"] = generation
    return {**manifest, "metadata": metadata}


def cluster_after_first_apply(manifests: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any] | None]:
    # Services carry no generation: they are judged by resourceVersion.
    return {child_type(m): stored(m, None if m["kind"] == "Service" else 1, "10") for m in manifests}


def test_a_new_webapp_writes_every_rendered_child() -> None:
    manifests = render(webapp(), service_monitors=False)
    plan = plan_children(None, manifests, {DEPLOYMENT: None, SERVICE: None})
    assert [child_type(m) for m, _ in plan.writes] == [child_type(m) for m in manifests]
    assert not plan.same_intent
    assert plan.prune == []


def test_unchanged_intent_and_children_as_left_write_nothing() -> None:
    manifests = render(webapp(), service_monitors=False)
    cached = cluster_after_first_apply(manifests)
    previous = Applied(fingerprint(manifests), {kind: version(obj) for kind, obj in cached.items() if obj})
    plan = plan_children(previous, manifests, cached)
    assert plan.same_intent
    assert plan.writes == []
    # Status moves the resourceVersion of a child with a generation; that is not drift.
    cached[DEPLOYMENT] = stored(cached[DEPLOYMENT] or {}, 1, "11")
    assert plan_children(previous, manifests, cached).writes == []


def test_a_child_changed_or_deleted_by_someone_else_is_written_again() -> None:
    manifests = render(webapp(), service_monitors=False)
    cached = cluster_after_first_apply(manifests)
    previous = Applied(fingerprint(manifests), {kind: version(obj) for kind, obj in cached.items() if obj})
    edited = stored(cached[DEPLOYMENT] or {}, 2, "12")
    cached[DEPLOYMENT] = edited
    cached[SERVICE] = None
    plan = plan_children(previous, manifests, cached)
    assert {child_type(m): before for m, before in plan.writes} == {DEPLOYMENT: edited, SERVICE: None}


def test_a_kind_no_longer_rendered_is_pruned() -> None:
    two = render(webapp(replicas=2), service_monitors=False)
    assert PDB in {child_type(m) for m in two}
    cached = cluster_after_first_apply(two)
    one = render(webapp(replicas=1), service_monitors=False)
    plan = plan_children(Applied(fingerprint(two)), one, cached)
    assert plan.prune == [PDB]
    assert not plan.same_intent


def test_a_repair_is_a_write_of_the_same_intent_that_changed_the_child() -> None:
    manifest = render(webapp(), service_monitors=False)[1]
    left = (1, "10")
    assert is_repair(left, stored(manifest, 2, "12"), stored(manifest, 3, "13")), "edited, put back"
    assert not is_repair(left, stored(manifest, 1, "10"), stored(manifest, 1, "10")), "as left: nothing changed"
    assert is_repair(left, None, stored(manifest, 1, "14")), "deleted, created again"
    assert not is_repair(left, None, stored(manifest, 1, "10")), "a cache behind our own create"
    assert not is_repair(None, stored(manifest, 1, "10"), stored(manifest, 2, "11")), "a new intent is no repair"


def test_a_child_without_generation_is_judged_by_its_content_from_the_slim_cache() -> None:
    service = next(m for m in render(webapp(), service_monitors=False) if m["kind"] == "Service")
    as_written = stored(service, None, "10") | {"status": {"loadBalancer": {}}}
    cached = slim_child(stored(service, None, "10"))
    assert "spec" not in cached, "the cache keeps a digest, not the spec"
    assert not is_repair((None, "10"), cached, as_written), "same content: status and apiVersion/kind do not count"
    edited = stored(service, None, "11")
    edited["spec"] = {**service["spec"], "type": "NodePort"}
    assert is_repair((None, "10"), slim_child(edited), as_written), "someone changed the spec: put back"
    deployment = next(m for m in render(webapp(), service_monitors=False) if m["kind"] == "Deployment")
    assert set(slim_child(stored(deployment, 1, "10"))) == {"metadata"}, "a generation stands for the content"
