"""Multi-window, multi-burn-rate alert windows (SRE Workbook table 5-8) and Sloth's `AlertWindows` format.

A tier has a quick and a slow condition; each fires when both its short and long window burn faster than a factor.
The factor is the burn that spends `error_budget_percent` of the budget within the long window, so the same budget
shares give 14.4/6/3/1 over 30 days and 13.44/5.6/2.8/0.93 over 28: thresholds scale with the period.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ballast.events.contracts.slo import BurnTier
from ballast.slo.durations import format_duration, parse_duration
from ballast.slo.errors import InvalidSpec, SpecError, from_validation


class BurnWindow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    error_budget_percent: float = Field(alias="errorBudgetPercent", gt=0, le=100)
    short_window: timedelta = Field(alias="shortWindow")
    long_window: timedelta = Field(alias="longWindow")

    @field_validator("short_window", "long_window", mode="before")
    @classmethod
    def _prometheus_duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _short_within_long(self) -> Self:
        if not self.short_window < self.long_window:
            raise ValueError("shortWindow must be shorter than longWindow")
        return self

    def factor(self, period: timedelta) -> float:
        """Computed in Sloth's order (percent x period hours / 100 / window hours) so the floats print the same."""
        return _factor(self.error_budget_percent, self.long_window, period)


@functools.lru_cache(maxsize=1024)
def _factor(percent: float, long_window: timedelta, period: timedelta) -> float:
    # Cached: an engine asks it for every condition of every SLO each cycle, and SLOs share a few tables and periods.
    hours = timedelta(hours=1)
    return percent * (period / hours) / 100 / (long_window / hours)


class Threshold(NamedTuple):
    """A burn condition over one period length: it holds when the error ratio over both windows exceeds
    `factor` x the error budget."""

    short_window: timedelta
    long_window: timedelta
    factor: float


TierThresholds = tuple[Threshold, Threshold]  # a tier's quick and slow condition


class TierWindows(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    quick: BurnWindow
    slow: BurnWindow


class AlertWindows(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    period: timedelta = Field(alias="sloPeriod", gt=timedelta(0))
    page: TierWindows
    ticket: TierWindows

    @field_validator("period", mode="before")
    @classmethod
    def _prometheus_duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    def tier(self, tier: BurnTier) -> TierWindows:
        return self.page if tier is BurnTier.PAGE else self.ticket

    def windows(self) -> list[timedelta]:
        """Every short and long window, shortest first: the SLI is recorded over each."""
        return list(self.sorted_windows)

    # Cached per table (cached_property: kept out of the fields, equality and dumps): an engine asks for them for
    # every SLO each cycle, and SLOs share a few tables.
    @functools.cached_property
    def sorted_windows(self) -> tuple[timedelta, ...]:
        conditions = (self.page.quick, self.page.slow, self.ticket.quick, self.ticket.slow)
        return tuple(sorted({w for c in conditions for w in (c.short_window, c.long_window)}))

    @functools.cached_property
    def _thresholds_by_length(self) -> dict[timedelta, tuple[TierThresholds, TierThresholds]]:
        return {}

    def thresholds(self, period: timedelta) -> tuple[TierThresholds, TierThresholds]:
        """The page and the ticket tier's (quick, slow) conditions, in BurnTier's order, with their factors for a
        period of this length."""
        known = self._thresholds_by_length
        found = known.get(period)
        if found is None:

            def threshold(condition: BurnWindow) -> Threshold:
                return Threshold(condition.short_window, condition.long_window, condition.factor(period))

            page = (threshold(self.page.quick), threshold(self.page.slow))
            ticket = (threshold(self.ticket.quick), threshold(self.ticket.slow))
            found = known[period] = (page, ticket)
        return found


def workbook_windows(period: timedelta) -> AlertWindows:
    """The Workbook's table for a period: page 2% in 1h (5m) and 5% in 6h (30m), ticket 10% in 1d (2h) and 3d (6h)."""

    def burn(percent: float, short: str, long: str) -> BurnWindow:
        return BurnWindow(
            error_budget_percent=percent, short_window=parse_duration(short), long_window=parse_duration(long)
        )

    return AlertWindows(
        period=period,
        page=TierWindows(quick=burn(2, "5m", "1h"), slow=burn(5, "30m", "6h")),
        ticket=TierWindows(quick=burn(10, "2h", "1d"), slow=burn(10, "6h", "3d")),
    )


class _AlertWindowsDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["sloth.slok.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["AlertWindows"]
    spec: AlertWindows


class MissingAlertWindows(ValueError):
    """No alert windows are defined for an SLO's period."""


class WindowCatalogue:
    """Alert windows by SLO period. Like Sloth, a custom directory replaces the built-in 30d and 28d tables."""

    def __init__(self, tables: Mapping[timedelta, AlertWindows]) -> None:
        self._tables = dict(tables)

    @classmethod
    def builtin(cls) -> WindowCatalogue:
        return cls({p: workbook_windows(p) for p in (timedelta(days=30), timedelta(days=28))})

    @classmethod
    def from_directory(cls, directory: Path) -> WindowCatalogue:
        """Every `.yaml`/`.yml` file under `directory` holding an AlertWindows document; one table per period."""
        tables: dict[timedelta, AlertWindows] = {}
        errors: list[SpecError] = []
        files = sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise InvalidSpec([SpecError(str(directory), 1, "", "no AlertWindows .yaml/.yml files in the directory")])
        for path in files:
            try:
                data = yaml.safe_load(path.read_text())
                spec = _AlertWindowsDocument.model_validate(data).spec
            except yaml.YAMLError as error:
                errors.append(SpecError(str(path), 1, "", f"not YAML: {error}"))
                continue
            except ValidationError as error:
                errors.extend(from_validation(error, str(path), 1))
                continue
            if spec.period in tables:
                errors.append(
                    SpecError(str(path), 1, "spec.sloPeriod", f"{format_duration(spec.period)} defined twice")
                )
            tables[spec.period] = spec
        if errors:
            raise InvalidSpec(errors)
        return cls(tables)

    def for_period(self, period: timedelta) -> AlertWindows:
        try:
            return self._tables[period]
        except KeyError:
            known = ", ".join(format_duration(p) for p in sorted(self._tables))
            raise MissingAlertWindows(
                f"no alert windows for a {format_duration(period)} period (have {known}); add an AlertWindows "
                f"file with sloPeriod {format_duration(period)} to --slo-period-windows-path"
            ) from None
