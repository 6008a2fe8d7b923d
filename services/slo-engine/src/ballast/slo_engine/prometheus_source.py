"""Error ratios of every SLO from Prometheus: one instant query per window, not one per SLO.

The generated recording rules (`rules_sync`) record each SLO's error ratio over every alert window and over its
period as `slo:sli_error:ratio_rate<window>`, labelled `namespace`, `sloth_service` and `sloth_slo`. Reading
`slo:sli_error:ratio_rate5m` returns that window's ratio for all SLOs at once, so an evaluation cycle costs as many
queries as there are distinct windows (eight for the Workbook's table and a 30-day period) whatever the number of
SLOs. All windows are read at the same instant (`time=`), which dates the measurement.

Missing data: a window without requests records NaN (0/0); it counts as no errors, as `Counts.error_ratio` counts an
empty window. A NaN period ratio (Sloth's period rule averages the shortest window's ratios, so one idle five
minutes makes the whole period NaN until it leaves the period) is not guessed at: that SLO gets no measurement, and
its budget keeps its last evaluated state rather than being reset.

Request rates: an SLO with a minimum request rate has its total request rate recorded over its burn conditions' long
windows (`request_rates`); those are read the same way, one query per window for all such SLOs, and only when some
SLO has a minimum. A window without a rate series had no requests (the total query's rate was empty).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple, Self

import aiohttp
import orjson

from ballast.slo import ServiceLevelObjective
from ballast.slo.alert_windows import AlertWindows
from ballast.slo.durations import format_duration
from ballast.slo.evaluation import CauseSpan, Measurement
from ballast.slo_engine.request_rates import requests_record
from ballast.slo_engine.rules_sync import NAMESPACE_LABEL


def sli_record(window: timedelta) -> str:
    """The recorded series of the error ratio over `window` (Sloth's name)."""
    return f"slo:sli_error:ratio_rate{format_duration(window)}"


def sli_query(window: timedelta) -> str:
    """Every SLO's error ratio over `window`, one sample per SLO: the worst where an SLO has several series (its
    rules loaded twice, other extra labels), and only the labels that name it, so the answer is no bigger than it
    has to be. `max` skips NaN (no requests) unless every series of the SLO is NaN."""
    return f"max by ({NAMESPACE_LABEL}, sloth_service, sloth_slo) ({sli_record(window)})"


def requests_query(window: timedelta) -> str:
    """The request rate over `window` of every SLO with a minimum request rate, one sample per SLO (`request_rates`)."""
    return f"max by ({NAMESPACE_LABEL}, sloth_service, sloth_slo) ({requests_record(window)})"


def windows_to_read(tables: Iterable[AlertWindows]) -> set[timedelta]:
    """Every alert window and period of the SLOs' window tables: one query each."""
    return {window for table in tables for window in (*table.windows(), table.period)}


class SeriesSlo(NamedTuple):
    """Which SLO a recorded series belongs to: its labels. `namespace` is "" for rules from spec files. (A tuple: a
    cycle makes and hashes one per SLO and window.)"""

    namespace: str
    service: str
    slo: str

    @classmethod
    def of(cls, namespace: str, objective: ServiceLevelObjective) -> SeriesSlo:
        """The series key of an SLO object's rules (`rules_sync` labels them with its namespace)."""
        return cls(namespace, objective.service, objective.name)


IDENTITY = {"Accept-Encoding": "identity"}


class PrometheusUnavailable(RuntimeError):
    """Prometheus did not answer, or refused a query; the message says which and why."""


@dataclass(frozen=True)
class Readings:
    """The error ratios of every SLO Prometheus records, per window, at one instant; None where the ratio is NaN
    (no requests in the window)."""

    at: datetime
    ratios: Mapping[SeriesSlo, Mapping[timedelta, float | None]]
    rates: Mapping[SeriesSlo, Mapping[timedelta, float]] = field(default_factory=dict)

    def measurement(
        self, key: SeriesSlo, windows: AlertWindows, *, rated: bool = False, causes: tuple[CauseSpan, ...] | None = None
    ) -> Measurement | None:
        """The SLO's measurement for the evaluator; None while a window has no series or the period's ratio is NaN.
        `rated`: with its request rates (a window without a series had no requests); `causes`: for attribution."""
        ratios = self.ratios.get(key, {})
        period = ratios.get(windows.period)
        if period is None:
            return None
        try:
            alert_windows = {window: ratios[window] or 0.0 for window in windows.sorted_windows}
        except KeyError:
            return None
        rates = dict(self.rates.get(key, {})) if rated else None
        return Measurement(at=self.at, windows=alert_windows, period=period, request_rates=rates, causes=causes)


def _ratio(value: str) -> float | None:
    """A sample's value as a ratio: NaN (no requests) is None, and a query's overshoot is clamped into 0..1."""
    number = float(value)
    if number != number:  # NaN; math.isnan costs a call more per sample
        return None
    return 0.0 if number < 0.0 else 1.0 if number > 1.0 else number


class PrometheusSource:
    def __init__(
        self, url: str, *, timeout: float = 10.0, session: aiohttp.ClientSession | None = None, in_flight: int = 2
    ) -> None:
        self.url = url.rstrip("/")
        self.in_flight = max(1, in_flight)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._own_session = session is None
        self._session = session

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def query(self, expr: str, at: datetime) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {labels}, "value": [ts, "value"]}, ...]."""
        assert self._session is not None, "use `async with PrometheusSource(...)`"
        params = {"query": expr, "time": f"{at.timestamp():.3f}"}
        try:
            # Uncompressed: a cycle's answers are megabytes, and gzip on both ends costs more than the bytes do.
            async with self._session.post(
                f"{self.url}/api/v1/query", data=params, timeout=self._timeout, headers=IDENTITY
            ) as response:
                # orjson: a cycle's answers hold a sample per SLO and window, and the standard decoder is the cost.
                body = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise PrometheusUnavailable(f"{self.url}: {expr}: {error!r}") from error
        if body.get("status") != "success":
            raise PrometheusUnavailable(f"{self.url}: {expr}: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def read(
        self, windows: Iterable[timedelta], at: datetime | None = None, rate_windows: Iterable[timedelta] = ()
    ) -> Readings:
        """Every SLO's error ratio over each of `windows` at `at` (now, to the second, by default), and the request
        rates recorded over each of `rate_windows`."""
        moment = at or datetime.now(UTC).replace(microsecond=0)
        ratios: dict[SeriesSlo, dict[timedelta, float | None]] = {}
        rates: dict[SeriesSlo, dict[timedelta, float]] = {}
        queries = [(w, sli_query(w), False) for w in sorted(set(windows))]
        queries += [(w, requests_query(w), True) for w in sorted(set(rate_windows))]
        # Each answer is taken in as soon as it arrives, while Prometheus works on the next: at most `in_flight` at
        # once, so that its first answers are not held back by evaluating all the others on the same cores.
        pending = iter(queries)
        running: dict[asyncio.Task[list[dict[str, Any]]], tuple[timedelta, bool]] = {}

        def ask() -> None:
            query = next(pending, None)
            if query is not None:
                window, expr, rate = query
                running[asyncio.create_task(self.query(expr, moment))] = (window, rate)

        try:
            for _ in range(self.in_flight):
                ask()
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                failed = [error for task in done if (error := task.exception()) is not None]
                if failed:
                    raise failed[0]  # one reason is enough: the cycle has no measurement either way
                for task in done:
                    window, rate = running.pop(task)
                    ask()
                    if rate:
                        _take_rates(rates, window, task.result())
                    else:
                        _take_ratios(ratios, window, task.result())
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
        return Readings(moment, ratios, rates)


# A sample per SLO and window (80,000 a cycle for 10,000 SLOs): no more work per sample than needed.
def _take_ratios(
    ratios: dict[SeriesSlo, dict[timedelta, float | None]], window: timedelta, vector: list[dict[str, Any]]
) -> None:
    for sample in vector:
        labels = sample["metric"]
        try:
            key = SeriesSlo(labels.get(NAMESPACE_LABEL, ""), labels["sloth_service"], labels["sloth_slo"])
        except KeyError:
            continue  # a series of that name recorded by something else
        value = _ratio(sample["value"][1])
        per_slo = ratios.get(key)
        if per_slo is None:
            ratios[key] = {window: value}
        elif window not in per_slo or (value is not None and (per_slo[window] or 0.0) < value):
            per_slo[window] = value  # two series for one SLO (rules loaded twice, other extra labels): the worse


def _take_rates(
    rates: dict[SeriesSlo, dict[timedelta, float]], window: timedelta, vector: list[dict[str, Any]]
) -> None:
    for sample in vector:
        labels = sample["metric"]
        rate = float(sample["value"][1])
        if "sloth_service" not in labels or "sloth_slo" not in labels or math.isnan(rate):
            continue
        key = SeriesSlo(labels.get(NAMESPACE_LABEL, ""), labels["sloth_service"], labels["sloth_slo"])
        rates.setdefault(key, {})[window] = rate
