"""A reconcile's report told in one place: to the platform as bus events, to the WebApp's users as Kubernetes Events
(`kubectl describe webapp`), and to the metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from ballast.events.contracts.reconcile import WebAppOutcome
from ballast.kube.recorder import EventRecorder, Regarding
from ballast.reconciler.api import WebApp
from ballast.reconciler.reconcile import ReconcileReport, Repair
from ballast.reconciler.status import Problem

REPORTING_CONTROLLER = "platform.example.com/reconciler"  # who wrote an Event, as `kubectl events` shows it
# Where a reconcile outcome goes on the bus: (outcome, WebApp, repairs, problem, children applied).
OutcomeSink = Callable[[WebAppOutcome, WebApp, list[Repair], Problem | None, list[str]], Awaitable[None]]


async def no_sink(*_: object) -> None:
    return None


class Reporter:
    def __init__(self, recorder: EventRecorder, drift_repairs: Counter, sink: OutcomeSink = no_sink) -> None:
        self._recorder = recorder
        self._drift_repairs = drift_repairs
        self._sink = sink

    async def tell(self, report: ReconcileReport) -> None:
        """Each outcome the report holds, in the order they happened: Ready (the status written), the repairs, and
        what keeps the WebApp Degraded."""
        webapp = report.webapp
        if report.deleted:
            await self._sink(WebAppOutcome.DELETED, webapp, [], None, [])
            return
        if report.became_ready:
            await self._tell(WebAppOutcome.RECONCILED, report, [], None)
        if report.repaired:
            for repair in report.repaired:
                self._drift_repairs.labels(repair.kind).inc()
            await self._tell(WebAppOutcome.DRIFT_REPAIRED, report, report.repaired, None)
        if report.problem is not None:
            denied = report.problem.reason == "PolicyDenied"
            outcome = WebAppOutcome.POLICY_DENIED if denied else WebAppOutcome.DEGRADED
            await self._tell(outcome, report, [], report.problem)

    async def _tell(
        self, outcome: WebAppOutcome, report: ReconcileReport, repaired: list[Repair], problem: Problem | None
    ) -> None:
        webapp = report.webapp
        await self._sink(outcome, webapp, repaired, problem, report.applied)
        metadata = webapp.metadata
        regarding = Regarding(webapp.api_version, "WebApp", metadata.namespace or "", metadata.name, metadata.uid or "")
        if outcome is WebAppOutcome.RECONCILED:
            note = f"{webapp.spec.replicas} of {webapp.spec.replicas} replicas of {webapp.spec.image} ready"
            if webapp.spec.autoscaling.enabled:
                note = f"ready with {webapp.spec.image}, replicas managed by the autoscaler"
            self._recorder.record(regarding, "Normal", "Ready", "Reconcile", note)
        elif outcome is WebAppOutcome.DRIFT_REPAIRED:
            what = ", ".join(f"{r.kind}/{r.name}" for r in repaired)
            self._recorder.record(regarding, "Normal", "DriftRepaired", "Repair",
                                  f"put back {what}, changed or deleted outside the WebApp")  # fmt: skip
        elif problem is not None:
            self._recorder.record(regarding, "Warning", problem.reason, "Reconcile", problem.message)
