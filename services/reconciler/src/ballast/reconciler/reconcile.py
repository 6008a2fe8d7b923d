"""One WebApp's reconcile: render, check policy, write the children that need it, prune, write status — and a typed
report of what happened, which `report.py` tells the platform.

Level-triggered: it reads the current state from the watch caches, never from the event that woke it, so missed,
repeated or reordered events cannot leave a WebApp wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ballast.kube.apply import apply, delete
from ballast.kube.conditions import find_condition
from ballast.kube.controller import TerminalError
from ballast.kube.errors import ApiError
from ballast.kube.memory import Memory
from ballast.kube.resource import WEBAPP, resource_for
from ballast.kube.rest import KubeApi
from ballast.reconciler.api import WebApp
from ballast.reconciler.children import slim
from ballast.reconciler.memory import WebAppKey, WebAppRecord, Written
from ballast.reconciler.plan import Applied, child_type, is_repair, plan_children, version
from ballast.reconciler.render import MANAGED_BY, render
from ballast.reconciler.sources import WebAppSources
from ballast.reconciler.status import Problem, same_status, webapp_status
from ballast.reconciler.writes import ChildWrites

log = logging.getLogger(__name__)

FIELD_MANAGER = MANAGED_BY
PolicyCheck = Callable[[WebApp, list[dict[str, Any]]], Awaitable[Problem | None]]


@dataclass(frozen=True)
class Repair:
    """A child put back after someone else changed or deleted it; the version is the restored object's."""

    kind: str
    name: str
    resource_version: str


@dataclass
class ReconcileReport:
    """What one reconcile came to, for the platform (bus events) and the WebApp's users (Kubernetes Events)."""

    webapp: WebApp
    deleted: bool = False  # the WebApp and all its children are gone
    applied: list[str] = field(default_factory=list)  # children written, as Kind/name
    repaired: list[Repair] = field(default_factory=list)
    became_ready: bool = False  # the status written turned Ready
    problem: Problem | None = None  # why the WebApp is Degraded, once the reconcile got as far as its status
    retry: BaseException | None = None  # a transient failure: the reconcile is retried with backoff
    under_way: bool = False  # writes left to finish on their own: their end queues the WebApp again


async def write_child(api: KubeApi, manifest: dict[str, Any]) -> dict[str, Any]:
    """Applies one child; the result is kept as the cache keeps its kind (in a burst thousands wait to be taken up,
    and the plan reads no more of them than of the cached ones)."""
    return slim(await apply(api, manifest, field_manager=FIELD_MANAGER))


class WebAppReconciler:
    def __init__(
        self,
        api: KubeApi,
        sources: WebAppSources,
        memory: Memory[WebAppKey, WebAppRecord],
        writes: ChildWrites[WebAppKey],
        *,
        policy_check: PolicyCheck | None = None,
    ) -> None:
        self._api = api
        self._sources = sources
        self._memory = memory
        self._writes = writes
        self._policy_check = policy_check

    async def reconcile(self, key: WebAppKey) -> ReconcileReport | None:
        """None when there is nothing to do or tell."""
        obj = self._sources.webapps.store.get(key)
        record = self._memory.get(key)
        if obj is None:
            # Deleted: the garbage collector removes the children by their owner references, and each child's
            # deletion brings the key back here; the last one lets the deletion be reported.
            if record is None or record.gone is None or self._sources.has_children(key):
                return None
            self._memory.forget(key)
            return ReconcileReport(WebApp.model_validate(record.gone), deleted=True)
        if obj["metadata"].get("deletionTimestamp"):
            return None
        if self._writes.will_queue(key) and record is not None and record.left_at == obj["metadata"].get("generation"):
            # Same intent, writes still under way or waiting for room in a lane: the last write's end, or the room,
            # queues a reconcile that reads everything then (in a burst, pods and Deployments change many times
            # before a Service's cluster IP comes).
            return None
        try:
            webapp = WebApp.model_validate(obj)
        except ValidationError as exc:
            # The API server validated it: a schema newer than ours. The next change to the WebApp tries again.
            raise TerminalError(f"WebApp {key[0]}/{key[1]} does not parse: {exc}") from exc
        report = ReconcileReport(webapp)
        manifests = render(webapp, service_monitors=self._sources.service_monitors_enabled)
        problem = await self._policy_check(webapp, manifests) if self._policy_check else None
        if problem is None:
            problem = await self._write_children(key, webapp, manifests, report)
        if report.retry is None and not report.under_way:
            # The status also sees what the reconcile cannot: pods that do not start, a quota the ReplicaSet ran into.
            report.problem = await self._write_status(key, webapp, problem, report)
        return report

    async def _write_children(
        self, key: WebAppKey, webapp: WebApp, manifests: list[dict[str, Any]], report: ReconcileReport
    ) -> Problem | None:
        """Writes what the plan says; returns the first refusal (the WebApp is Degraded), records the rest in the
        report."""
        record = self._memory[key]
        plan = plan_children(record.applied, manifests, self._sources.cached_children(key))
        previous = record.applied.versions if record.applied is not None and plan.same_intent else {}
        versions = dict(previous)
        refused: Problem | None = None
        results = await self._writes.apply(key, [manifest for manifest, _ in plan.writes])
        for (manifest, cached), result in zip(plan.writes, results, strict=True):
            kind = child_type(manifest)
            name = f"{manifest['kind']}/{manifest['metadata']['name']}"
            if result is None:
                report.under_way = True
                record.left_at = webapp.metadata.generation
                record.seen_before_write.setdefault(kind, cached)
                continue
            cached = record.seen_before_write.pop(kind, cached)
            if isinstance(result, ApiError) and not result.transient:
                refused = refused or Problem("ApplyFailed", f"{name}: {result.message}")
                continue
            if isinstance(result, BaseException):
                report.retry = report.retry or result
                continue
            versions[kind] = version(result)
            report.applied.append(name)
            if is_repair(previous.get(kind), cached, result):
                report.repaired.append(Repair(manifest["kind"], manifest["metadata"]["name"], versions[kind][1]))
        if refused is None and report.retry is None and not report.under_way:
            for kind in plan.prune:
                # No longer wanted (autoscaling off, one replica, policy none, monitoring off): remove what we made.
                try:
                    await delete(self._api, resource_for({"apiVersion": kind[0], "kind": kind[1]}), *key)
                except Exception as exc:  # retried with backoff, as before, once the repairs are told
                    report.retry = exc
                    break
                versions.pop(kind, None)
        # What did apply is as we left it, whatever became of the rest: its repair is told now, and the retry of the
        # rest finds it in place instead of repairing (and counting) it again or not at all.
        record.applied = Applied(plan.fingerprint, versions)
        return refused

    async def _write_status(
        self, key: WebAppKey, webapp: WebApp, problem: Problem | None, report: ReconcileReport
    ) -> Problem | None:
        """Writes the status if it changed; returns what makes the WebApp Degraded, if anything."""
        record = self._memory[key]
        written = record.written
        if written is not None and written.based_on == webapp.metadata.resource_version:
            webapp = webapp.model_copy(update={"status": written.status})  # our write, not yet in the cache
        status = webapp_status(
            webapp,
            self._sources.deployment_of(key),
            self._sources.pods_of(key),
            problem=problem,
            now=datetime.now(UTC).replace(microsecond=0),
        )
        degraded = find_condition(status.conditions, "Degraded")
        found = (
            Problem(degraded.reason, degraded.message) if degraded is not None and degraded.status == "True" else None
        )
        if same_status(webapp.status, status):
            return found
        body = {
            "apiVersion": webapp.api_version,
            "kind": WEBAPP.kind,
            "metadata": {"name": webapp.metadata.name, "namespace": webapp.metadata.namespace},
            "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        await apply(self._api, body, field_manager=FIELD_MANAGER, subresource="status", resource=WEBAPP)
        if webapp.metadata.resource_version:
            record.written = Written(webapp.metadata.resource_version, status)
        ready = find_condition(status.conditions, "Ready")
        was_ready = find_condition(webapp.status.conditions, "Ready") if webapp.status else None
        report.became_ready = (
            ready is not None and ready.status == "True" and (was_ready is None or was_ready.status != "True")
        )
        return found
