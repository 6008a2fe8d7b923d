"""Predicates: which watched changes are worth a reconcile (controller-runtime's `predicate`).

A predicate sees `(event, new, old)` as the informer tells it; additions and deletions always pass, since the
object's existence is what changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ballast.kube.informer import WatchEvent

Predicate = Callable[[WatchEvent, dict[str, Any], dict[str, Any] | None], bool]


def _metadata(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("metadata") or {}


def generation_changed(event: WatchEvent, new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """The spec changed (metadata.generation moved), or deletion began; not status or bookkeeping alone."""
    if event != "MODIFIED" or old is None:
        return True
    before, after = _metadata(old), _metadata(new)
    began_deleting = bool(after.get("deletionTimestamp")) and not before.get("deletionTimestamp")
    return began_deleting or before.get("generation") != after.get("generation")


def labels_changed(event: WatchEvent, new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    if event != "MODIFIED" or old is None:
        return True
    return _metadata(old).get("labels") != _metadata(new).get("labels")


def any_of(*predicates: Predicate) -> Predicate:
    def either(event: WatchEvent, new: dict[str, Any], old: dict[str, Any] | None) -> bool:
        return any(predicate(event, new, old) for predicate in predicates)

    return either
