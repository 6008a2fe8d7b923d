"""Wiring of the slo-engine service.

Every replica:
  - takes a share of the facts (shared durables `slo-engine-facts` on evt.k8s WebApp/Deployment facts and
    `slo-engine-causes` on rollouts, chaos runs and incidents) and writes them to the `slo-sli` bucket before acking:
    ingest scales with replicas, and a replica that dies hands its unacked facts to the others;
  - follows the `slo-budgets` bucket to answer `svc.slo.status` and export the budget gauges on `/metrics`.
One replica leads (a Kubernetes Lease, as the reconciler): it watches the SLOs, creates the default SLO of every
WebApp, evaluates every SLO each interval and writes their status. Evaluation is leader-only because it runs on a
clock, not on messages: two evaluators would do each cycle twice (the budget book's compare-and-set keeps that
correct, but not cheap). A new leader continues from the budgets and SLI records in KV, so a failover loses nothing;
it costs at most one lease duration of evaluations.

With `slo_rules_dir` (a directory a Prometheus loads) the leader writes each SLO's Sloth-compatible rules there, and
as PrometheusRule objects wherever that CRD is installed; with `prometheus_url` it measures every SLO with a PromQL
SLI from the recorded series, one query per window for all of them. Without them only WebApp availability SLOs are
evaluated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from prometheus_client import Gauge
from pydantic import Field

from ballast.bus import Bus, Delivery, Outcomes
from ballast.events.catalogue import SLO_BUDGETS, SLO_ENGINE_CAUSES, SLO_ENGINE_FACTS, SLO_SLI
from ballast.events.contracts.slo import SLO_STATUS
from ballast.kube.client import api_client
from ballast.kube.controller import ControllerMetrics
from ballast.kube.recorder import EventRecorder
from ballast.runtime import PORTS, ServiceApp, collector
from ballast.runtime.leases import LeaseSettings
from ballast.slo import RuleOptions, ServiceLevelObjective, WebAppAvailabilitySli, WindowCatalogue
from ballast.slo_engine.availability import WebAppRecord
from ballast.slo_engine.budgets import BudgetBook, BudgetShard
from ballast.slo_engine.causes import CauseWindow
from ballast.slo_engine.controller import SLO, SloController
from ballast.slo_engine.defaults import DefaultSlos
from ballast.slo_engine.evaluator import AvailabilityMeasurer, Evaluator, Measurer
from ballast.slo_engine.gauges import BudgetGauges
from ballast.slo_engine.ingest import FactIngest
from ballast.slo_engine.prometheus_measure import PrometheusMeasurer, unmeasured_reason
from ballast.slo_engine.prometheus_source import PrometheusSource
from ballast.slo_engine.rules_sync import RuleSync
from ballast.slo_engine.slo_events import REPORTING_CONTROLLER, SloEvents
from ballast.slo_engine.status import StatusView
from ballast.slo_engine.store import SliMirror, SliStore

NAME = "slo-engine"


class SloEngineSettings(LeaseSettings):
    http_port: int = Field(default=PORTS[NAME].health, ge=0, le=65535)
    kubeconfig: str | None = Field(default=None, description="path; unset: KUBECONFIG, then in-cluster config")
    lease_name: str = "ballast-slo-engine"
    workers: int = Field(default=4, ge=1, le=64, description="parallel SLO status writes")
    evaluation_interval: float = Field(default=10.0, gt=0, description="seconds between evaluations of every SLO")
    default_slo: bool = Field(default=True, description="give every WebApp an availability SLO")
    default_slo_objective: float = Field(default=99.5, gt=0, lt=100, description="percent, e.g. 99.5")
    default_slo_window: str = Field(default="30d", pattern=r"^[1-9][0-9]{0,3}[mhdw]$", description="rolling")
    rollout_settle: float = Field(
        default=300.0, ge=0, description="seconds a rollout lasts at least (then until the WebApp is up again)"
    )
    prometheus_url: str | None = Field(
        default=None, description="unset: SLOs with PromQL SLIs are not evaluated (their status says so)"
    )
    slo_rules_dir: Path | None = Field(default=None, description="where to write SLO rule files for a Prometheus")
    slo_windows_dir: Path | None = Field(
        default=None, description="AlertWindows files (Sloth's --slo-period-windows-path); unset: the 30d/28d tables"
    )
    sli_retention_days: int = Field(
        default=400, ge=4, description="days of SLI history kept: at least the longest SLO period (a year: 366)"
    )


def not_evaluated(slo: ServiceLevelObjective, catalogue: WindowCatalogue, *, prometheus: bool) -> str | None:
    """Why none of the engine's measurers evaluates `slo` (its status says so); None when one does: availability
    SLIs always, PromQL SLIs when there is a Prometheus and their rules can exist."""
    if isinstance(slo.sli, WebAppAvailabilitySli):
        return None
    if not prometheus:
        return "its SLI is PromQL and the engine reads no Prometheus (BALLAST_PROMETHEUS_URL is unset)"
    return unmeasured_reason(slo, catalogue)


def build(settings: SloEngineSettings) -> ServiceApp:
    app = ServiceApp(NAME, settings)
    # The engine allocates much per fact and per SLO each cycle and keeps every SLO, state and record: at Python's
    # collector pace a cycle over 5,000 SLOs ran some 450 collections, a third of its CPU.
    app.gc_threshold = collector.BUSY_SERVICE
    controller_metrics = ControllerMetrics(app.registry)
    view = StatusView()
    app.registry.register(BudgetGauges(view))
    source = f"/clusters/{settings.cluster}/{NAME}"
    catalogue = (
        WindowCatalogue.from_directory(settings.slo_windows_dir)
        if settings.slo_windows_dir
        else WindowCatalogue.builtin()
    )
    reader_failing = Gauge(
        "ballast_slo_reader_failing",
        "1 while the leader's SLI reader cannot read (its SLOs keep their last state), else 0.",
        ["reader"],
        registry=app.registry,
    )

    async def open_api(_: Bus) -> Any:
        return await api_client(settings.kubeconfig)

    async def close_api(api: Any) -> None:
        await api.close()

    async def open_book(bus: Bus) -> BudgetBook:
        kv = await bus.kv(SLO_BUDGETS, BudgetShard)
        return BudgetBook(kv, bus.publisher, bus.catalogue.registry, settings.cluster, source)

    async def open_store(bus: Bus) -> SliStore:
        return SliStore(await bus.kv(SLO_SLI, WebAppRecord), await bus.kv(SLO_SLI, CauseWindow))

    api = app.lifespan("kubernetes", open_api, close_api)
    book = app.lifespan("budgets", open_book)
    store = app.lifespan("sli", open_store)

    async def open_ingest(_: Bus) -> FactIngest:
        retention = timedelta(days=settings.sli_retention_days)
        return FactIngest(store.value, cluster=settings.cluster, retention=retention)

    ingest = app.lifespan("ingest", open_ingest)

    async def on_facts(deliveries: Sequence[Delivery]) -> Outcomes:
        return await ingest.value.on_facts(deliveries)

    async def on_cause(delivery: Delivery) -> None:
        await ingest.value.on_cause(delivery)

    # In batches (the consumer's own work per message cost twice the fact's), as many facts in hand as the durable
    # lets out (max_ack_pending): the facts of a batch about one WebApp are written at once.
    app.consume_batches(SLO_ENGINE_FACTS, on_facts, concurrency=SLO_ENGINE_FACTS.max_ack_pending)
    app.consume(SLO_ENGINE_CAUSES, on_cause)

    async def follow_budgets(_: Bus, stop: asyncio.Event) -> None:
        # The book's own bucket object: what the leader writes comes back to its view as written, not decoded again.
        await view.follow(book.value.kv, stop)

    app.background(follow_budgets)
    app.serve(SLO_STATUS, view.handle)
    app.readiness("slo-status", lambda: None if view.caught_up.is_set() else "loading the SLO states")

    async def lead(_: Bus, lost: asyncio.Event) -> None:
        """One term as leader: everything here starts from the cluster and the buckets, and stops with the term."""
        rules = None
        if settings.slo_rules_dir is not None:
            rules = RuleSync(api.value, settings.slo_rules_dir, RuleOptions(version("ballast-libs"), catalogue))
        slos = SloController(
            api.value,
            book.value,
            controller_metrics,
            workers=settings.workers,
            rules=rules,
            not_evaluated=lambda slo: not_evaluated(slo, catalogue, prometheus=bool(settings.prometheus_url)),
        )
        # Transitions told as Events on their SLO objects while this term lasts.
        recorder = EventRecorder(api.value, controller=REPORTING_CONTROLLER, instance=settings.identity)
        events = SloEvents(recorder, slos.slos.store.get, SLO.api_version, SLO.kind)
        book.value.published = events.told
        mirror = SliMirror(store.value)
        measurers: list[Measurer] = [AvailabilityMeasurer(mirror, timedelta(seconds=settings.rollout_settle))]
        # The source outlives the tasks: the evaluator reads through it until the TaskGroup has ended.
        async with PrometheusSource(settings.prometheus_url or "") as prometheus, asyncio.TaskGroup() as tasks:
            if settings.prometheus_url:

                def reader_changed(keys: Any, failing: str | None) -> None:
                    reader_failing.labels("prometheus").set(0 if failing is None else 1)
                    slos.measuring_failed(keys, failing)

                reader_failing.labels("prometheus").set(0)
                measurers.append(
                    PrometheusMeasurer(
                        prometheus,
                        catalogue,
                        changed=reader_changed,
                        mirror=mirror,
                        settle=timedelta(seconds=settings.rollout_settle),
                    )
                )
            evaluator = Evaluator(
                lambda: slos.objectives,
                measurers,
                book.value,
                interval=settings.evaluation_interval,
                evaluated=slos.budget_changed,
            )
            tasks.create_task(recorder.run(lost))
            tasks.create_task(slos.run(lost))
            tasks.create_task(slos.prune_rules(lost))
            tasks.create_task(mirror.follow(lost))
            if settings.default_slo:
                defaults = DefaultSlos(
                    api.value,
                    slos.slos,
                    controller_metrics,
                    objective=settings.default_slo_objective,
                    window=settings.default_slo_window,
                )
                tasks.create_task(defaults.run(lost))
            # Not before the SLO cache is filled: a first cycle over half the SLOs would leave the rest a cycle behind.
            await slos.controller.synced(lost)
            tasks.create_task(evaluator.run(lost))

    app.lead(lambda: settings.elector(api.value), lead)
    return app
