"""The Prometheus measurer: the burn of every SLO with a PromQL SLI (event ratio, raw error ratio, latency), read from
the series the generated recording rules record (`rules_sync`), one instant query per window for all of them.

Which windows an SLO has is the rules' choice: the table of its period in the same window catalogue the rules were
generated with, so the evaluator's tiers are the ones the rules' alerts use. An SLO whose rules cannot exist (a
period without a table) is not measured here.

A calendar SLO (its table that of the period's usual length: a month's is the 30-day table) has no recorded period
ratio: its ratio since the period's start is asked for each cycle, one query for the SLOs whose periods start at the
same instant and count alike (`period_query`).

Prometheus unreachable (or refusing the query): no SLO is measured this cycle, so each keeps its last evaluated
state, never reset; `failing` holds the reason until a read succeeds again, and `changed` is told of the SLOs it
could not read (and once more when it reads again) so that their status can say so.

With the SLI facts' mirror (`mirror`: the cause windows and WebApp records), each measurement carries the causes
bearing on its SLO (`cause_spans`), to which the evaluation attributes the budget consumed since the previous one;
SLOs with a minimum request rate get their request rates read too (`request_rates`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from ballast.kube.informer import ObjectKey
from ballast.slo import (
    AlertWindows,
    EventRatioSli,
    LatencySli,
    MissingAlertWindows,
    RawErrorRatioSli,
    RollingWindow,
    ServiceLevelObjective,
    WindowCatalogue,
)
from ballast.slo.budgeting import Budgeting
from ballast.slo.evaluation import CauseSpan
from ballast.slo.periods import nominal_length, period_at
from ballast.slo.rules import UnsupportedSlo, alert_windows_of
from ballast.slo_engine.causes import CauseWindow
from ballast.slo_engine.evaluator import Measured
from ballast.slo_engine.measure import cause_spans
from ballast.slo_engine.prometheus_source import (
    PrometheusSource,
    PrometheusUnavailable,
    SeriesSlo,
    period_query,
    windows_to_read,
)
from ballast.slo_engine.request_rates import gated_windows
from ballast.slo_engine.store import SliMirror

log = logging.getLogger(__name__)


def prometheus_windows(
    slo: ServiceLevelObjective,
    catalogue: WindowCatalogue,
    known: dict[timedelta, AlertWindows | None] | None = None,
) -> AlertWindows | None:
    """The SLO's alert windows when its error ratios are recorded in Prometheus; None when they are not. `known`
    keeps the tables found by period, for a caller looking up many SLOs."""
    if not isinstance(slo.sli, EventRatioSli | RawErrorRatioSli | LatencySli):
        return None
    known = {} if known is None else known
    length = nominal_length(slo.window)
    if length not in known:
        try:
            known[length] = catalogue.for_period(length)
        except MissingAlertWindows:
            known[length] = None
    return known[length]


def unmeasured_reason(slo: ServiceLevelObjective, catalogue: WindowCatalogue) -> str | None:
    """Why an SLO with a PromQL SLI cannot be read from Prometheus (its rules cannot exist); None when it can, or when
    its SLI is not PromQL (another measurer's)."""
    if not isinstance(slo.sli, EventRatioSli | RawErrorRatioSli | LatencySli):
        return None
    try:
        alert_windows_of(slo, catalogue)  # the rules' own choice of table
    except UnsupportedSlo as error:
        return f"{error}: its PromQL SLI is not read"
    return None


Table = tuple[AlertWindows, SeriesSlo]  # an SLO's window table and the key of its recorded series


class PrometheusMeasurer:
    name = "prometheus"

    def __init__(
        self,
        source: PrometheusSource,
        catalogue: WindowCatalogue,
        *,
        changed: Callable[[Iterable[ObjectKey], str | None], None] = lambda keys, failing: None,
        mirror: SliMirror | None = None,
        settle: timedelta = timedelta(0),
    ) -> None:
        self._source = source
        self._catalogue = catalogue
        self._changed = changed
        self._mirror = mirror
        self._settle = settle
        self.ready = asyncio.Event()
        self.ready.set()  # nothing to load: Prometheus holds the history
        self.failing: str | None = None  # why the last read failed; None while reads succeed
        # Per SLO: the object last seen, its window table and series key (None: not read from Prometheus), and whether
        # its window is a calendar one.
        self._known: dict[ObjectKey, tuple[ServiceLevelObjective, Table | None, bool]] = {}

    def _tables(
        self, slos: Mapping[ObjectKey, ServiceLevelObjective]
    ) -> tuple[dict[ObjectKey, Table], set[ObjectKey], set[timedelta]]:
        """The window table and series key of every SLO read from Prometheus, which of them have calendar windows,
        and the windows to read; kept from the last cycle for the SLO objects that did not change (the same object:
        the controller makes a new one for a new spec)."""
        by_period: dict[timedelta, AlertWindows | None] = {}  # SLOs share a few periods: each table looked up once
        known = self._known
        self._known = {}
        tables: dict[ObjectKey, Table] = {}
        calendar: set[ObjectKey] = set()
        rolling_tables: dict[int, AlertWindows] = {}
        calendar_tables: dict[int, AlertWindows] = {}
        for key, slo in slos.items():
            kept = known.get(key)
            if kept is None or kept[0] is not slo:
                windows = prometheus_windows(slo, self._catalogue, by_period)
                table = None if windows is None else (windows, SeriesSlo.of(key[0], slo))
                kept = (slo, table, not isinstance(slo.window, RollingWindow))
            self._known[key] = kept
            table = kept[1]
            if table is not None:
                tables[key] = table
                if kept[2]:
                    calendar.add(key)
                    calendar_tables[id(table[0])] = table[0]
                else:
                    rolling_tables[id(table[0])] = table[0]
        read = windows_to_read(rolling_tables.values())
        read |= {w for windows in calendar_tables.values() for w in windows.windows()}  # no period series recorded
        return tables, calendar, read

    async def measure(self, slos: Mapping[ObjectKey, ServiceLevelObjective], at: datetime) -> dict[ObjectKey, Measured]:
        tables, calendar, read = self._tables(slos)
        if not tables:
            return {}
        rated = {key for key in tables if slos[key].min_request_rate is not None}
        rate_windows = {window for key in rated for window in gated_windows(tables[key][0])}
        try:
            readings = await self._source.read(read, at, rate_windows)
            periods = await self._calendar_periods(slos, tables, calendar, readings.at)
        except PrometheusUnavailable as error:
            # Not raised: the evaluator would log a traceback every cycle; the transition is logged once instead.
            if self.failing is None:
                log.warning("reading the SLIs from Prometheus failed; their SLOs keep their last state: %s", error)
            self._health(str(error), tables)
            return {}
        if self.failing is not None:
            log.info("reading the SLIs from Prometheus again")
        self._health(None, tables)
        measured: dict[ObjectKey, Measured] = {}
        # The causes by namespace, once a cycle: an SLO looks only at its namespace's and the cluster-wide ones.
        by_namespace: dict[str | None, list[CauseWindow]] = {}
        if self._mirror is not None:
            for window in self._mirror.causes.values():
                by_namespace.setdefault(window.namespace, []).append(window)
        everywhere = by_namespace.get(None, [])
        for key, (windows, series) in tables.items():
            slo = slos[key]
            spans: tuple[CauseSpan, ...] | None = None
            if self._mirror is not None:
                record = self._mirror.webapps.get((key[0], slo.service))
                near = by_namespace.get(key[0], [])
                candidates = near + everywhere if everywhere else near
                if record is None and not candidates:
                    spans = ()  # nothing going on: what it consumes is unattributed
                else:
                    lag = windows.sorted_windows[0]
                    spans = cause_spans(slo, key[0], record, candidates, self._settle, readings.at, lag)
            measurement = readings.measurement(
                series, windows, rated=key in rated, causes=spans, calendar=periods if key in calendar else None
            )
            if measurement is not None:  # not recorded yet, or a NaN period: the last state stands
                measured[key] = (windows, measurement)
        return measured

    async def _calendar_periods(
        self,
        slos: Mapping[ObjectKey, ServiceLevelObjective],
        tables: Mapping[ObjectKey, Table],
        calendar: Iterable[ObjectKey],
        at: datetime,
    ) -> dict[str, float | None]:
        """The calendar SLOs' error ratios since their periods' starts (by SERIES_LABEL): a query per group of SLOs
        whose periods start at the same instant and count alike (the same budgeting and shortest window)."""
        groups: dict[tuple[datetime, Budgeting, timedelta], list[ObjectKey]] = {}
        for key in calendar:
            slo, windows = slos[key], tables[key][0]
            start = period_at(slo.window, at).start
            if at - start >= timedelta(seconds=1):  # a range is whole seconds; at the very start nothing is counted yet
                groups.setdefault((start, slo.budgeting, windows.windows()[0]), []).append(key)
        found: dict[str, float | None] = {}
        for (start, _, _), keys in groups.items():
            first = slos[keys[0]]
            query = period_query(first, tables[keys[0]][0], (slos[k].id for k in keys), at - start)
            found |= await self._source.ratios(query, at)
        return found

    def _health(self, failing: str | None, tables: Iterable[ObjectKey]) -> None:
        # Told at every failing cycle (an SLO created meanwhile learns it too), and once when reads succeed again.
        if failing is not None or self.failing is not None:
            self._changed(tables, failing)
        self.failing = failing
