"""Error ratios of every SLO from Prometheus: one instant query per window, not one per SLO.

The generated recording rules (`rules_sync`) record each SLO's error ratio over every alert window and over its
period as `slo:sli_error:ratio_rate<window>`, labelled `namespace`, `sloth_service` and `sloth_slo`. Reading
`slo:sli_error:ratio_rate5m` returns that window's ratio for all SLOs at once (each sample labelled with one label
that Prometheus joins from those three, SERIES_LABEL), so an evaluation cycle costs as many
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
import re
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
from ballast.slo.rules import NAMESPACE_LABEL, period_ratio_expr
from ballast.slo_engine.request_rates import requests_record


def sli_record(window: timedelta) -> str:
    """The recorded series of the error ratio over `window` (Sloth's name)."""
    return f"slo:sli_error:ratio_rate{format_duration(window)}"


# The label each answer's sample carries instead of the three that name its SLO: `<namespace>/<service>/<slo>`,
# joined by Prometheus (`label_join`). One label makes a sample a quarter smaller to send and a third as dear to take
# in, and every sample is one SLO and window: 80,000 a cycle at 10,000 SLOs.
SERIES_LABEL = "ballast_slo_series"


def _per_slo(record: str) -> str:
    """One sample per SLO of the series `record`: the worst where an SLO has several (its rules loaded twice, other
    extra labels), labelled only with SERIES_LABEL. `max` skips NaN (no requests) unless every series of the SLO is
    NaN. A series without the SLO labels joins to a name no SLO has."""
    joined = f'label_join({record}, "{SERIES_LABEL}", "/", "{NAMESPACE_LABEL}", "sloth_service", "sloth_slo")'
    return f"max by ({SERIES_LABEL}) ({joined})"


def sli_query(window: timedelta) -> str:
    """Every SLO's error ratio over `window`, one sample per SLO."""
    return _per_slo(sli_record(window))


def period_query(slo: ServiceLevelObjective, windows: AlertWindows, ids: Iterable[str], span: timedelta) -> str:
    """The error ratio over the last `span` of every SLO whose `sloth_id` is one of `ids`, counted as `slo` (one of
    them) counts its period (`period_ratio_expr`): a calendar period's ratio since its start, one query for the SLOs
    whose periods start together and count alike. One sample per SLO."""
    selector = f'{{sloth_id=~"{_any_of(ids)}"}}'
    return _per_slo(f"({period_ratio_expr(slo, windows, selector, f'{int(span.total_seconds())}s')})")


def _any_of(values: Iterable[str]) -> str:
    """A PromQL string (inside double quotes) holding an RE2 alternation that matches exactly `values`."""
    alternation = "|".join(re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", v) for v in sorted(set(values)))
    return alternation.replace("\\", "\\\\").replace('"', '\\"')


def requests_query(window: timedelta) -> str:
    """The request rate over `window` of every SLO with a minimum request rate, one sample per SLO (`request_rates`)."""
    return _per_slo(requests_record(window))


def windows_to_read(tables: Iterable[AlertWindows]) -> set[timedelta]:
    """Every alert window and period of the SLOs' window tables: one query each."""
    return {window for table in tables for window in (*table.windows(), table.period)}


class SeriesSlo(NamedTuple):
    """Which SLO a recorded series belongs to: its labels. `namespace` is "" for rules from spec files."""

    namespace: str
    service: str
    slo: str

    @classmethod
    def of(cls, namespace: str, objective: ServiceLevelObjective) -> SeriesSlo:
        """The series key of an SLO object's rules (`rules_sync` labels them with its namespace)."""
        return cls(namespace, objective.service, objective.name)

    @classmethod
    def parse(cls, joined: str) -> SeriesSlo:
        """From SERIES_LABEL's value (neither a namespace nor an SLO's name holds a '/'; a service may)."""
        namespace, _, rest = joined.partition("/")
        service, _, slo = rest.rpartition("/")
        return cls(namespace, service, slo)

    @property
    def joined(self) -> str:
        """SERIES_LABEL's value for this SLO."""
        return f"{self.namespace}/{self.service}/{self.slo}"


IDENTITY = {"Accept-Encoding": "identity"}


class PrometheusUnavailable(RuntimeError):
    """Prometheus did not answer, or refused a query; the message says which and why."""


@dataclass(frozen=True)
class Readings:
    """The error ratios of every SLO Prometheus records, per window (by SERIES_LABEL), at one instant; None where
    the ratio is NaN (no requests in the window). Kept per window as read: a cycle looks up each SLO's windows once,
    rather than sorting every sample into a mapping per SLO first."""

    at: datetime
    by_window: Mapping[timedelta, Mapping[str, float | None]]
    rates_by_window: Mapping[timedelta, Mapping[str, float]] = field(default_factory=dict)

    @classmethod
    def of_slos(
        cls,
        at: datetime,
        ratios: Mapping[SeriesSlo, Mapping[timedelta, float | None]],
        rates: Mapping[SeriesSlo, Mapping[timedelta, float]] | None = None,
    ) -> Readings:
        """Readings given per SLO (as `ratios` and `rates` tell them)."""
        by_window: dict[timedelta, dict[str, float | None]] = {}
        for key, values in ratios.items():
            for window, ratio in values.items():
                by_window.setdefault(window, {})[key.joined] = ratio
        rates_by_window: dict[timedelta, dict[str, float]] = {}
        for key, values in (rates or {}).items():
            for window, rate in values.items():
                rates_by_window.setdefault(window, {})[key.joined] = rate
        return cls(at, by_window, rates_by_window)

    @property
    def ratios(self) -> dict[SeriesSlo, dict[timedelta, float | None]]:
        """Per SLO: every window's ratio read."""
        ratios: dict[SeriesSlo, dict[timedelta, float | None]] = {}
        for window, values in self.by_window.items():
            for joined, ratio in values.items():
                ratios.setdefault(SeriesSlo.parse(joined), {})[window] = ratio
        return ratios

    @property
    def rates(self) -> dict[SeriesSlo, dict[timedelta, float]]:
        """Per SLO: every window's request rate read."""
        rates: dict[SeriesSlo, dict[timedelta, float]] = {}
        for window, values in self.rates_by_window.items():
            for joined, rate in values.items():
                rates.setdefault(SeriesSlo.parse(joined), {})[window] = rate
        return rates

    def measurement(
        self,
        key: SeriesSlo,
        windows: AlertWindows,
        *,
        rated: bool = False,
        causes: tuple[CauseSpan, ...] | None = None,
        calendar: Mapping[str, float | None] | None = None,
    ) -> Measurement | None:
        """The SLO's measurement for the evaluator; None while a window has no series or the period's ratio is NaN.
        `rated`: with its request rates (a window without a series had no requests); `causes`: for attribution;
        `calendar`: the period ratios read since their calendar periods' starts, which a calendar SLO's is taken from
        (no series records it); its tiers then use its rules' factors (`Measurement.alert_period`)."""
        joined = key.joined
        by_window = self.by_window
        period = (calendar if calendar is not None else by_window.get(windows.period, {})).get(joined)
        if period is None:
            return None
        alert_windows: dict[timedelta, float] = {}
        for window in windows.sorted_windows:
            values = by_window.get(window)
            if values is None or joined not in values:
                return None
            alert_windows[window] = values[joined] or 0.0
        rates = None
        if rated:
            rates = {window: values[joined] for window, values in self.rates_by_window.items() if joined in values}
        # A calendar SLO's rules alert with the factors of its usual length's table: the engine's tiers use them too.
        alert_period = windows.period if calendar is not None else None
        return Measurement(
            at=self.at,
            windows=alert_windows,
            period=period,
            request_rates=rates,
            causes=causes,
            alert_period=alert_period,
        )


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

    async def ratios(self, expr: str, at: datetime) -> dict[str, float | None]:
        """A query answering one ratio per SLO (by SERIES_LABEL), NaN as None."""
        return _ratios(await self.query(expr, at))

    async def read(
        self, windows: Iterable[timedelta], at: datetime | None = None, rate_windows: Iterable[timedelta] = ()
    ) -> Readings:
        """Every SLO's error ratio over each of `windows` at `at` (now, to the second, by default), and the request
        rates recorded over each of `rate_windows`."""
        moment = at or datetime.now(UTC).replace(microsecond=0)
        ratios: dict[timedelta, dict[str, float | None]] = {}
        rates: dict[timedelta, dict[str, float]] = {}
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
                        rates[window] = _rates(task.result())
                    else:
                        ratios[window] = _ratios(task.result())
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
        return Readings(moment, ratios, rates)


# A sample per SLO and window (80,000 a cycle for 10,000 SLOs): no more work per sample than needed.
def _ratios(vector: list[dict[str, Any]]) -> dict[str, float | None]:
    """A window's answer: each SLO's ratio, NaN (no requests) as None and a query's overshoot clamped into 0..1."""
    ratios: dict[str, float | None] = {}
    for sample in vector:
        joined = sample["metric"].get(SERIES_LABEL)
        if joined is None:
            continue
        number = float(sample["value"][1])
        ratios[joined] = None if number != number else 0.0 if number < 0.0 else 1.0 if number > 1.0 else number
    return ratios


def _rates(vector: list[dict[str, Any]]) -> dict[str, float]:
    """A window's answer: each SLO's request rate (a NaN rate had no requests: left out)."""
    rates: dict[str, float] = {}
    for sample in vector:
        joined = sample["metric"].get(SERIES_LABEL)
        rate = float(sample["value"][1])
        if joined is not None and not math.isnan(rate):
            rates[joined] = rate
    return rates
