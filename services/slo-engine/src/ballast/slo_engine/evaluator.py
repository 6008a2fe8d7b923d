"""The evaluation loop, run by the leading replica: every interval each measurer measures the SLOs it knows how to
measure, and each measurement is evaluated against the SLO's stored budget state (BudgetBook: once-per-transition
events, compare-and-set), after which the SLO's status is queued for writing.

A measurer takes all SLOs at once, so that one that queries a metrics backend can ask once per window for all of them
rather than once per SLO. `AvailabilityMeasurer` measures WebApp availability SLIs from the facts in the `slo-sli`
bucket; an SLO no measurer takes is not evaluated (its status says it awaits an evaluation), nor is an SLO whose
WebApp has no facts yet: there is nothing to tell.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ballast.kube.informer import ObjectKey
from ballast.kube.pacing import pause, until_any
from ballast.runtime import collector
from ballast.slo import AlertWindows, ServiceLevelObjective, WebAppAvailabilitySli
from ballast.slo.evaluation import Measurement
from ballast.slo_engine.budgets import BudgetBook, Evaluand
from ballast.slo_engine.measure import alert_windows, availability_measurement
from ballast.slo_engine.store import SliMirror

log = logging.getLogger(__name__)

Measured = tuple[AlertWindows, Measurement]  # the windows measured, and the figures over them


class Measurer(Protocol):
    name: str
    ready: asyncio.Event  # set once it can measure (its data loaded)

    async def measure(
        self, slos: Mapping[ObjectKey, ServiceLevelObjective], at: datetime
    ) -> Mapping[ObjectKey, Measured]:
        """The measurements at `at` of the SLOs it can measure; the others are left out."""
        ...


class AvailabilityMeasurer:
    name = "webapp-availability"

    def __init__(self, mirror: SliMirror, settle: timedelta) -> None:
        self._mirror = mirror
        self._settle = settle
        self.ready = mirror.caught_up

    async def measure(self, slos: Mapping[ObjectKey, ServiceLevelObjective], at: datetime) -> dict[ObjectKey, Measured]:
        measured: dict[ObjectKey, Measured] = {}
        causes = list(self._mirror.causes.values())
        for (namespace, name), slo in slos.items():
            sli = slo.sli
            if not isinstance(sli, WebAppAvailabilitySli):
                continue
            record = self._mirror.webapps.get((sli.namespace, sli.webapp))
            if record is None or not record.changes:
                continue
            windows = alert_windows(slo, at)
            measurement = availability_measurement(slo, namespace, record, causes, windows, at, self._settle)
            measured[(namespace, name)] = (windows, measurement)
        return measured


class Evaluator:
    def __init__(
        self,
        objectives: Callable[[], Mapping[ObjectKey, ServiceLevelObjective]],
        measurers: Sequence[Measurer],
        book: BudgetBook,
        *,
        interval: float,
        evaluated: Callable[[str, str], None] = lambda namespace, name: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._objectives = objectives
        self._measurers = measurers
        self._book = book
        self._interval = interval
        self._evaluated = evaluated
        self._now = now

    async def run(self, stop: asyncio.Event) -> None:
        self._book.drop_copy()  # a term starts from the bucket, not from what this replica kept of an earlier one
        for measurer in self._measurers:
            await until_any(measurer.ready, stop)
        while not stop.is_set():
            await self.evaluate_all(self._now())
            await pause(stop, self._interval)

    async def evaluate_all(self, at: datetime) -> int:
        """Measures and evaluates every SLO a measurer takes at `at`; returns how many were evaluated."""
        # A cycle makes and drops a few hundred thousand objects, none in reference cycles: the collector's passes
        # during one found nothing to free and took 40-70 ms of a 10,000-SLO cycle.
        with collector.paused():
            return await self._evaluate_all(at)

    async def _evaluate_all(self, at: datetime) -> int:
        objectives = dict(self._objectives())
        evaluated = 0
        for measurer in self._measurers:
            try:
                measured = await measurer.measure(objectives, at)
            except Exception:
                # A measurer's failure (its backend down, a bug) costs its SLOs this cycle, not the others'.
                log.exception("measuring with %s failed", measurer.name)
                continue
            keys = list(measured)
            evaluands = [Evaluand(objectives[key], key[0], *measured[key]) for key in keys]
            try:
                outcomes = await self._book.evaluate_all(evaluands)
            except Exception:
                # The bucket or the bus failing: the states stay as stored, the next cycle evaluates them again.
                log.exception("storing the evaluations of %s failed", measurer.name)
                continue
            for (namespace, name), outcome in zip(keys, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    log.error("evaluating SLO %s/%s failed", namespace, name, exc_info=outcome)
                    continue
                evaluated += 1
                self._evaluated(namespace, name)
        return evaluated
