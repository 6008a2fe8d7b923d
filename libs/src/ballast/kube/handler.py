"""Map functions: which reconcile keys a watched object's change concerns (controller-runtime's `handler`).

A key is `(namespace, name)` of the object a controller reconciles. A map returns none, one or several keys; the
controller queues each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ballast.kube.informer import ObjectKey, object_key

MapFunc = Callable[[dict[str, Any]], Iterable[ObjectKey]]


def own_key(obj: dict[str, Any]) -> Iterable[ObjectKey]:
    """The object itself (the kind the controller reconciles)."""
    return (object_key(obj),)


def controller_owner(kind: str) -> MapFunc:
    """The object's controller owner of `kind`, in the object's namespace (owners of namespaced objects live in the
    same namespace)."""

    def owner(obj: dict[str, Any]) -> Iterable[ObjectKey]:
        metadata = obj["metadata"]
        for ref in metadata.get("ownerReferences") or ():
            if ref.get("controller") and ref.get("kind") == kind:
                return ((metadata.get("namespace", ""), ref["name"]),)
        return ()

    return owner


def label_value(label: str) -> MapFunc:
    """The object named by a label's value, in the object's namespace (e.g. `app.kubernetes.io/instance` on pods,
    which carry no owner reference to the WebApp)."""

    def named(obj: dict[str, Any]) -> Iterable[ObjectKey]:
        metadata = obj["metadata"]
        value = (metadata.get("labels") or {}).get(label)
        return ((metadata.get("namespace", ""), value),) if value else ()

    return named


def first_of(*maps: MapFunc) -> MapFunc:
    """The keys of the first map that gives any."""

    def first(obj: dict[str, Any]) -> Iterable[ObjectKey]:
        for mapping in maps:
            keys = tuple(mapping(obj))
            if keys:
                return keys
        return ()

    return first
