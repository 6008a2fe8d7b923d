"""The evaluation loop, run by the leading replica: every interval, each SLO measured from what the bucket holds is
evaluated against its stored budget state (BudgetBook: once-per-transition events, compare-and-set), and the SLO's
status is queued for writing.

SLIs the engine measures from the bus (WebApp availability) are measured here; an SLO measured elsewhere (PromQL
SLIs, by a Prometheus reader) is left to that reader. An SLO whose WebApp has no facts yet is not evaluated: there
is nothing to tell, and its status says it awaits an evaluation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from ballast.kube.informer import ObjectKey
from ballast.kube.pacing import pause, until_any
from ballast.slo import ServiceLevelObjective, WebAppAvailabilitySli
from ballast.slo_engine.budgets import BudgetBook
from ballast.slo_engine.measure import alert_windows, availability_measurement
from ballast.slo_engine.store import SliMirror

log = logging.getLogger(__name__)


class Evaluator:
    def __init__(
        self,
        objectives: Callable[[], Mapping[ObjectKey, ServiceLevelObjective]],
        mirror: SliMirror,
        book: BudgetBook,
        *,
        interval: float,
        settle: timedelta,
        evaluated: Callable[[str, str], None] = lambda namespace, name: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._objectives = objectives
        self._mirror = mirror
        self._book = book
        self._interval = interval
        self._settle = settle
        self._evaluated = evaluated
        self._now = now
        self.cycles = 0

    async def run(self, stop: asyncio.Event) -> None:
        await until_any(self._mirror.caught_up, stop)
        while not stop.is_set():
            await self.evaluate_all(self._now())
            self.cycles += 1
            await pause(stop, self._interval)

    async def evaluate_all(self, at: datetime) -> int:
        """Evaluates every SLO measured from the bus at `at`; returns how many were evaluated."""
        evaluated = 0
        causes = list(self._mirror.causes.values())
        for (namespace, name), slo in list(self._objectives().items()):
            sli = slo.sli
            if not isinstance(sli, WebAppAvailabilitySli):
                continue
            record = self._mirror.webapps.get((sli.namespace, sli.webapp))
            if record is None or not record.changes:
                continue
            try:
                windows = alert_windows(slo, at)
                measurement = availability_measurement(slo, namespace, record, causes, windows, at, self._settle)
                await self._book.evaluate(slo, namespace, windows, measurement)
            except Exception:
                # One SLO's failure (a bucket hiccup, a bug) must not stop the others; the next cycle tries again.
                log.exception("evaluating SLO %s/%s failed", namespace, name)
                continue
            evaluated += 1
            self._evaluated(namespace, name)
        return evaluated
