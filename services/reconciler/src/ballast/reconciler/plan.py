"""Which children a reconcile writes and which it prunes, from what it last applied, what the caches hold and what
was rendered — computed without I/O.

A child is written again only when the intent changed (the render's fingerprint moved) or the child is not as our
last write left it (someone else changed or deleted it). A kind no longer rendered (autoscaling off, one replica,
network policy none, monitoring off) is pruned once everything rendered is in place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ballast.reconciler.children import ChildType, content_digest

Manifest = dict[str, Any]
Version = tuple[int | None, str]  # (generation, resourceVersion) of a child right after we wrote it


@dataclass(frozen=True)
class Applied:
    """What the last reconcile of a WebApp applied: the render's fingerprint and the children's versions."""

    fingerprint: str
    versions: dict[ChildType, Version] = field(default_factory=dict)


@dataclass(frozen=True)
class ChildPlan:
    fingerprint: str
    same_intent: bool  # rendered as last time: a child not as we left it was changed by someone else
    writes: list[tuple[Manifest, dict[str, Any] | None]]  # (manifest, the child as cached before the write)
    prune: list[ChildType]  # cached, no longer rendered: deleted once everything rendered is in place


def child_type(manifest: Mapping[str, Any]) -> ChildType:
    return manifest["apiVersion"], manifest["kind"]


def fingerprint(manifests: list[Manifest]) -> str:
    return hashlib.sha256(orjson.dumps(manifests, option=orjson.OPT_SORT_KEYS)).hexdigest()


def version(obj: Mapping[str, Any]) -> Version:
    metadata = obj["metadata"]
    return metadata.get("generation"), metadata["resourceVersion"]


def as_left(cached: Mapping[str, Any], left: Version | None) -> bool:
    """Whether a child is as our last apply left it: same generation (status may move), or same version."""
    if left is None:
        return False
    generation, resource_version = version(cached)
    if left[0] is not None:
        return generation == left[0]
    return resource_version == left[1]


def plan_children(
    previous: Applied | None, manifests: list[Manifest], cached: Mapping[ChildType, dict[str, Any] | None]
) -> ChildPlan:
    """`cached`: each watched child kind's cached object for the WebApp (None where there is none)."""
    rendered_fingerprint = fingerprint(manifests)
    same_intent = previous is not None and previous.fingerprint == rendered_fingerprint
    writes = []
    for manifest in manifests:
        child = cached.get(child_type(manifest))
        # Same intent as last time and the child as we left it: applying again would change nothing.
        left = previous.versions.get(child_type(manifest)) if previous is not None and same_intent else None
        if child is not None and as_left(child, left):
            continue
        writes.append((manifest, child))
    rendered = {child_type(manifest) for manifest in manifests}
    prune = [kind for kind, child in cached.items() if child is not None and kind not in rendered]
    return ChildPlan(rendered_fingerprint, same_intent, writes, prune)


def spec_changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether an apply changed the object itself, not only its status or bookkeeping. `before` may be the slim
    cached copy (children.slim_child), `after` the object the write returned."""
    if "generation" in before.get("metadata", {}):
        return bool(before["metadata"]["generation"] != after["metadata"].get("generation"))
    return content_digest(before) != content_digest(after)


def is_repair(left: Version | None, before: Mapping[str, Any] | None, written: Mapping[str, Any]) -> bool:
    """Whether our write put back a child someone else changed or deleted. `left`: its version after our last
    write of the same intent (None: the intent changed, so any change is ours); `before`: the child as cached before
    this write. A child missing from a cache that has not caught up with our own create comes back unchanged: that is
    no repair."""
    if left is None:
        return False
    if before is None:
        return version(written)[1] != left[1]
    return spec_changed(before, written)
