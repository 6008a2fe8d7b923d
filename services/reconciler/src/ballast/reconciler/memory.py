"""What the reconciler remembers of each WebApp between reconciles, in one record, forgotten in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ballast.kube.memory import Memory
from ballast.reconciler.api import WebAppStatus
from ballast.reconciler.children import ChildType
from ballast.reconciler.plan import Applied

WebAppKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Written:
    """A status we wrote, and the WebApp version it was computed from: until the watch brings a newer version, the
    cache still holds the old status, and comparing with it would write (and tell Ready) twice."""

    based_on: str
    status: WebAppStatus


@dataclass
class WebAppRecord:
    applied: Applied | None = None  # what the last reconcile applied
    written: Written | None = None  # the last status written, while the cache has not caught up with it
    # The cached child as the reconcile that left its write under way saw it: the one that takes up the write's end
    # judges the repair (deleted, or changed by someone else) against that, not against our own result.
    seen_before_write: dict[ChildType, dict[str, Any] | None] = field(default_factory=dict)
    left_at: int | None = None  # the generation whose writes a reconcile left under way
    gone: dict[str, Any] | None = None  # deleted: reported once its children are gone too


def webapp_memory() -> Memory[WebAppKey, WebAppRecord]:
    return Memory(WebAppRecord)
