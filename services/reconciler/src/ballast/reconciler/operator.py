"""The WebApp operator, assembled: sources feed two controllers; each WebApp reconcile's report is told once.

WebApp/Tenant/children/Pod watches ──▶ map to the WebApp ──▶ work queue ──▶ reconcile(key) ──▶ report
  (sources.py)                                              (reconcile.py: render ─▶ policy ─▶ plan ─▶ write ─▶ status)
                                                             report.py: bus events, Kubernetes Events, metrics
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from ballast.kube.controller import Controller, ControllerMetrics, Result
from ballast.kube.handler import own_key
from ballast.kube.informer import ObjectKey, WatchEvent, object_key
from ballast.kube.leader import default_identity
from ballast.kube.predicate import generation_changed
from ballast.kube.recorder import EventRecorder
from ballast.kube.resource import Resource
from ballast.kube.rest import KubeApi
from ballast.reconciler.children import ChildType
from ballast.reconciler.memory import WebAppKey, webapp_memory
from ballast.reconciler.reconcile import PolicyCheck, WebAppReconciler, write_child
from ballast.reconciler.report import REPORTING_CONTROLLER, OutcomeSink, Reporter, no_sink
from ballast.reconciler.sources import WebAppSources, owning_webapp, pod_webapp
from ballast.reconciler.tenants import TenantReconciler
from ballast.reconciler.writes import ChildWrites

# How long a reconcile waits for its child writes before leaving the slow ones under way (writes.py says why): far
# above an apply's time on an API server with room, far below a Service's wait for its cluster IP in a burst.
PATIENCE = 0.25
# Writes of one child kind at once (whatever the workers): the rest wait their turn here rather than as open requests.
LANE = 16
# Writes of one kind a lane holds, open or waiting: past it, a WebApp waits for room by its key alone and is rendered
# again when room comes, so a burst's memory is bounded (~4 KB per held write) whatever the number of WebApps. 1024
# Services are close to a minute of the API server's cluster-IP line in a burst: the lane does not run dry while the
# WebApps woken for its room come back through the work queue.
LANE_CAPACITY = 1024
Observer = Callable[[Resource, WatchEvent, dict[str, Any]], None]


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.controller = ControllerMetrics(registry)
        self.drift_repairs = Counter(
            "ballast_reconciler_drift_repairs_total",
            "Children found changed or deleted by someone else and put back, by kind.",
            ["kind"],
            registry=registry,
        )
        self.writes_under_way = Gauge(
            "ballast_reconciler_child_writes_under_way",
            "Child applies under way, including those a reconcile left to finish on their own.",
            registry=registry,
        )
        self.writes_waiting = Gauge(
            "ballast_reconciler_child_writes_waiting",
            "Child applies not started because their kind's lane was full; the WebApp is reconciled when room comes.",
            registry=registry,
        )


class WebAppOperator:
    def __init__(
        self,
        api: KubeApi,
        metrics: OperatorMetrics,
        *,
        on_outcome: OutcomeSink = no_sink,
        policy_check: PolicyCheck | None = None,
        on_observed: Observer | None = None,
        workers: int = 8,
        identity: str = "",
        lane_capacity: int = LANE_CAPACITY,
    ) -> None:
        self.sources = WebAppSources(api)
        self.memory = webapp_memory()
        self.recorder = EventRecorder(api, controller=REPORTING_CONTROLLER, instance=identity or default_identity())
        self.webapps_controller: Controller[WebAppKey] = Controller(
            "webapp", self.reconcile_webapp, metrics.controller, workers=workers
        )
        self.writes: ChildWrites[WebAppKey] = ChildWrites(
            functools.partial(write_child, api),
            self.webapps_controller.enqueue,
            lane_size=min(LANE, lane_capacity),
            lane_capacity=lane_capacity,
            patience=PATIENCE,
        )
        metrics.writes_under_way.set_function(self.writes.under_way)
        metrics.writes_waiting.set_function(self.writes.waiting)
        self.memory.on_forget(self.writes.forget)
        self.reconciler = WebAppReconciler(api, self.sources, self.memory, self.writes, policy_check=policy_check)
        self.reporter = Reporter(self.recorder, metrics.drift_repairs, on_outcome)
        self.tenants_controller: Controller[ObjectKey] = Controller(
            "tenant", TenantReconciler(api, self.sources.tenants).reconcile, metrics.controller, workers=2
        )
        self._wire(on_observed)

    def _wire(self, on_observed: Observer | None) -> None:
        sources, webapps = self.sources, self.webapps_controller
        sources.webapps.subscribe(self._remember)
        webapps.watch(sources.webapps, own_key, generation_changed)
        for informer in sources.children.values():
            webapps.watch(informer, owning_webapp)
        sources.subscribe_optional(self._on_optional_child)
        sources.on_child_relist(self._look_again)
        webapps.watch(sources.pods, pod_webapp)
        sources.on_optional_kinds(self._render_everything_again)
        self.tenants_controller.watch(sources.tenants, own_key)
        if on_observed is not None:
            for informer in (sources.webapps, sources.deployments, sources.pods):
                informer.subscribe(functools.partial(_observe, on_observed, informer.resource))

    def _on_optional_child(self, _event: WatchEvent, obj: dict[str, Any], _old: dict[str, Any] | None) -> None:
        for key in owning_webapp(obj):
            self.webapps_controller.enqueue(key)

    def _look_again(self, kind: ChildType) -> None:
        """After a gap in a child kind's watch: a child we wrote that was deleted before the cache ever saw it left
        no event behind (not in the relist, not in the watch), so every WebApp whose last apply wrote one the cache
        lacks is reconciled again — the repair a watch event would have started."""
        cached = self.sources.children.get(kind)
        store = cached.store if cached is not None else {}
        for key in list(self.memory):
            record = self.memory.get(key)
            wrote = record is not None and record.applied is not None and kind in record.applied.versions
            if wrote and key not in store:
                self.webapps_controller.enqueue(key)

    def _render_everything_again(self) -> None:
        for key in list(self.sources.webapps.store):
            self.webapps_controller.enqueue(key)

    def _remember(self, event: WatchEvent, obj: dict[str, Any], _old: dict[str, Any] | None) -> None:
        """Keeps each WebApp's record in step with the cache: a status write the cache has moved past is forgotten;
        a deleted WebApp's record goes, but for the object, reported once its children are gone too."""
        key = object_key(obj)
        record = self.memory.get(key)
        if record is not None and record.written and record.written.based_on != obj["metadata"].get("resourceVersion"):
            record.written = None
        if event == "DELETED":
            self.memory.forget(key)
            self.memory[key].gone = obj
        elif record is not None:
            record.gone = None  # deleted and created again under the same name

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.recorder.run(stop))
            tasks.create_task(self.writes.run(stop))
            for informer in self.sources.always:
                tasks.create_task(informer.run(stop))
            tasks.create_task(self.sources.run_optional_kinds(stop))
            tasks.create_task(self._run_webapps(stop))
            tasks.create_task(self.tenants_controller.run(stop))

    async def _run_webapps(self, stop: asyncio.Event) -> None:
        # Render with or without ServiceMonitors from the start: flipping after the first reconciles would write
        # every WebApp's children twice.
        if await self.sources.settled(stop):
            await self.webapps_controller.run(stop)

    async def reconcile_webapp(self, key: WebAppKey) -> Result:
        try:
            report = await self.reconciler.reconcile(key)
            if report is not None:
                await self.reporter.tell(report)
                if report.retry is not None:
                    raise report.retry  # transient (a conflict, an overloaded API server): retried with backoff
        finally:
            self.writes.settle(key)  # room a full lane held for this reconcile is free for the next WebApp waiting
        return Result()


def _observe(
    on_observed: Observer, resource: Resource, event: WatchEvent, obj: dict[str, Any], _old: dict[str, Any] | None
) -> None:
    on_observed(resource, event, obj)
