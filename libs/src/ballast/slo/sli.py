"""What an SLO measures: the kinds of service level indicator.

Query-based kinds keep their PromQL as written, with Sloth's `{{.window}}` placeholder where the rate window goes;
`error_ratio(window)` is the one place that turns an SLI into an error ratio over a window.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROMETHEUS = "prometheus"
WINDOW_PLACEHOLDER = re.compile(r"\{\{\s*\.window\s*\}\}")


def has_window(query: str) -> bool:
    return WINDOW_PLACEHOLDER.search(query) is not None


def with_window(query: str, window: str) -> str:
    return WINDOW_PLACEHOLDER.sub(window, query)


class _Sli(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EventRatioSli(_Sli):
    """Bad (or good) events over total events, e.g. 5xx responses over all responses."""

    kind: Literal["event_ratio"] = "event_ratio"
    error_query: str | None = Field(default=None, min_length=1, description="rate of bad events")
    good_query: str | None = Field(default=None, min_length=1, description="rate of good events (OpenSLO style)")
    total_query: str = Field(min_length=1, description="rate of all events")
    source: str = Field(default=PROMETHEUS, description="the metric source the queries are written for")

    @model_validator(mode="after")
    def _one_numerator(self) -> Self:
        if (self.error_query is None) == (self.good_query is None):
            raise ValueError("exactly one of error_query and good_query is required")
        return self

    def error_ratio(self, window: str) -> str:
        total = with_window(self.total_query, window)
        if self.error_query is not None:
            return f"({with_window(self.error_query, window)})\n/\n({total})\n"
        assert self.good_query is not None
        return f"1 - (\n({with_window(self.good_query, window)})\n/\n({total})\n)\n"

    def total_rate_query(self, window: str) -> str:
        return with_window(self.total_query, window)


class RawErrorRatioSli(_Sli):
    """A query that already yields the error ratio (0..1)."""

    kind: Literal["raw_error_ratio"] = "raw_error_ratio"
    error_ratio_query: str = Field(min_length=1)
    source: str = PROMETHEUS

    def error_ratio(self, window: str) -> str:
        return f"({with_window(self.error_ratio_query, window)})"


class LatencySli(_Sli):
    """Requests slower than a histogram bucket bound over all requests."""

    kind: Literal["latency"] = "latency"
    histogram: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", description="base name, e.g. http_request_seconds")
    selector: str = Field(default="", description='label matchers without braces, e.g. job="shop"')
    le: str = Field(description="the bucket bound as the series label writes it, e.g. 0.25")

    @model_validator(mode="after")
    def _numeric_bound(self) -> Self:
        try:
            float(self.le)
        except ValueError as error:
            raise ValueError(f"le {self.le!r} is not a bucket bound (a number such as 0.25)") from error
        return self

    def _matchers(self, *extra: str) -> str:
        return "{" + ",".join(m for m in (self.selector, *extra) if m) + "}"

    def total_rate_query(self, window: str) -> str:
        return f"sum(rate({self.histogram}_count{self._matchers()}[{window}]))"

    def error_ratio(self, window: str) -> str:
        bound = f'le="{self.le}"'
        fast = f"sum(rate({self.histogram}_bucket{self._matchers(bound)}[{window}]))"
        total = self.total_rate_query(window)
        return f"(({total}) - ({fast}))\n/\n({total})\n"


class ThresholdSli(_Sli):
    """A metric compared to a value (OpenSLO thresholdMetric): good while `query op value` holds."""

    kind: Literal["threshold"] = "threshold"
    query: str = Field(min_length=1)
    op: Literal["lt", "lte", "gt", "gte"]
    value: float
    source: str = PROMETHEUS


class WebAppAvailabilitySli(_Sli):
    """A WebApp is available while its ready replicas meet the desired ones, from the cluster facts on the bus."""

    kind: Literal["webapp_availability"] = "webapp_availability"
    namespace: str = Field(min_length=1)
    webapp: str = Field(min_length=1)


Sli = Annotated[
    EventRatioSli | RawErrorRatioSli | LatencySli | ThresholdSli | WebAppAvailabilitySli,
    Field(discriminator="kind"),
]
