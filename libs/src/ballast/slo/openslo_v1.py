"""OpenSLO `openslo/v1` documents into the model, every kind validated and the SLOs' references resolved.

v1: SLO, SLI, Service, DataSource, AlertPolicy, AlertCondition and AlertNotificationTarget are validated (unknown
fields rejected, as `oslo validate` does) and the SLOs' references (indicatorRef, alertPolicyRef, conditionRef,
metricSourceRef) resolved against every document loaded with them. Each objective becomes one SLO, named after
the SLO document, with `-<index>` appended when it has several. Alert policies are checked, not yet turned into
alert tiers: OpenSLO's single-window burn conditions do not map onto the multi-window tiers, so SLOs from v1
documents generate no alert rules today.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ballast.slo.budgeting import Budgeting, Occurrences, RatioTimeslices, Timeslices
from ballast.slo.errors import InvalidSpec, SpecError, from_validation
from ballast.slo.group import SloGroup, SpecFormat
from ballast.slo.objective import ServiceLevelObjective
from ballast.slo.sli import EventRatioSli, RawErrorRatioSli, Sli, ThresholdSli
from ballast.slo.window import CalendarUnit, CalendarWindow, RollingWindow, SloWindow

_V1 = "openslo/v1"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DURATION = re.compile(r"^(\d+)([mhdwMQY])$")
_FIXED = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
# OpenSLO's duration units as a calendar window's `duration` spells them (the SLO CRD spells them the same way).
CALENDAR_UNITS = {
    "m": CalendarUnit.MINUTE,
    "h": CalendarUnit.HOUR,
    "d": CalendarUnit.DAY,
    "w": CalendarUnit.WEEK,
    "M": CalendarUnit.MONTH,
    "Q": CalendarUnit.QUARTER,
    "Y": CalendarUnit.YEAR,
}


def _duration(text: str) -> tuple[int, str]:
    match = _DURATION.match(text)
    if match is None or int(match[1]) == 0:
        raise ValueError(f"{text!r} is not an OpenSLO duration (a positive integer and one of m h d w M Q Y)")
    return int(match[1]), match[2]


def _fixed_duration(text: str) -> timedelta:
    count, unit = _duration(text)
    if unit not in _FIXED:
        raise ValueError(f"{text!r} has no fixed length: use m, h, d or w")
    return count * _FIXED[unit]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class _Metadata(_Part):
    name: str = Field(pattern=_DNS_LABEL, max_length=63)
    display_name: str | None = Field(default=None, alias="displayName")
    labels: dict[str, str | list[str]] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class _MetricSource(_Part):
    metric_source_ref: str | None = Field(default=None, alias="metricSourceRef")
    type: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)


class _Metric(_Part):
    metric_source: _MetricSource = Field(alias="metricSource")


class _RatioMetric(_Part):
    counter: bool = False
    good: _Metric | None = None
    bad: _Metric | None = None
    total: _Metric | None = None
    raw_type: Literal["success", "failure"] | None = Field(default=None, alias="rawType")
    raw: _Metric | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        if self.raw is not None:
            if self.raw_type is None or any(m is not None for m in (self.good, self.bad, self.total)):
                raise ValueError("a raw ratio needs rawType and no good, bad or total")
        elif self.total is None or (self.good is None) == (self.bad is None):
            raise ValueError("a ratio needs total and exactly one of good and bad (or raw with rawType)")
        return self


class _SliSpec(_Part):
    description: str = Field(default="", max_length=1050)
    threshold_metric: _Metric | None = Field(default=None, alias="thresholdMetric")
    ratio_metric: _RatioMetric | None = Field(default=None, alias="ratioMetric")

    @model_validator(mode="after")
    def _one_metric(self) -> Self:
        if (self.threshold_metric is None) == (self.ratio_metric is None):
            raise ValueError("exactly one of thresholdMetric and ratioMetric is required")
        return self


class _InlineSli(_Part):
    metadata: _Metadata
    spec: _SliSpec


class _Calendar(_Part):
    start_time: datetime = Field(alias="startTime")
    time_zone: str = Field(alias="timeZone")


class _TimeWindow(_Part):
    duration: str
    is_rolling: bool = Field(default=False, alias="isRolling")
    calendar: _Calendar | None = None

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.is_rolling:
            _fixed_duration(self.duration)
        else:
            _duration(self.duration)
            if self.calendar is None:
                raise ValueError("a window that is not rolling needs calendar (startTime, timeZone)")
        return self

    def window(self) -> SloWindow:
        if self.is_rolling:
            return RollingWindow(length=_fixed_duration(self.duration))
        assert self.calendar is not None  # checked by _shape
        count, unit = _duration(self.duration)
        zone = self.calendar.time_zone
        start = self.calendar.start_time
        if start.tzinfo is None:
            start = start.replace(tzinfo=ZoneInfo(zone))
        return CalendarWindow(count=count, unit=CALENDAR_UNITS[unit], start=start, time_zone=zone)


class _Objective(_Part):
    display_name: str | None = Field(default=None, alias="displayName")
    op: Literal["lt", "lte", "gt", "gte"] | None = None
    value: float | None = None
    target: float | None = Field(default=None, ge=0, lt=1)
    target_percent: float | None = Field(default=None, alias="targetPercent", ge=0, lt=100)
    time_slice_target: float | None = Field(default=None, alias="timeSliceTarget", gt=0, le=1)
    time_slice_window: str | None = Field(default=None, alias="timeSliceWindow")
    indicator: _InlineSli | None = None
    indicator_ref: str | None = Field(default=None, alias="indicatorRef")
    composite_weight: float | None = Field(default=None, alias="compositeWeight", gt=0)

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.target is None) == (self.target_percent is None):
            raise ValueError("exactly one of target and targetPercent is required")
        if self.time_slice_window is not None:
            _fixed_duration(self.time_slice_window)
        return self

    @property
    def percent(self) -> float:
        return self.target_percent if self.target_percent is not None else (self.target or 0) * 100


class _AlertPolicyRef(_Part):
    alert_policy_ref: str = Field(alias="alertPolicyRef")


class _BurnCondition(_Part):
    kind: Literal["burnrate"]
    op: Literal["lt", "lte", "gt", "gte"]
    threshold: float
    lookback_window: str = Field(alias="lookbackWindow")
    alert_after: str = Field(default="0m", alias="alertAfter")


class _AlertConditionSpec(_Part):
    description: str = ""
    severity: str = Field(min_length=1)
    condition: _BurnCondition


class _InlineCondition(_Part):
    kind: Literal["AlertCondition"]
    metadata: _Metadata
    spec: _AlertConditionSpec


class _ConditionRef(_Part):
    condition_ref: str = Field(alias="conditionRef")


class _TargetRef(_Part):
    target_ref: str = Field(alias="targetRef")


class _TargetSpec(_Part):
    description: str = ""
    target: str = Field(min_length=1)


class _InlineTarget(_Part):
    kind: Literal["AlertNotificationTarget"]
    metadata: _Metadata
    spec: _TargetSpec


class _AlertPolicySpec(_Part):
    description: str = ""
    alert_when_no_data: bool = Field(default=False, alias="alertWhenNoData")
    alert_when_resolved: bool = Field(default=False, alias="alertWhenResolved")
    alert_when_breaching: bool = Field(default=False, alias="alertWhenBreaching")
    conditions: list[_InlineCondition | _ConditionRef] = Field(min_length=1, max_length=1)
    notification_targets: list[_InlineTarget | _TargetRef] = Field(default_factory=list, alias="notificationTargets")


class _InlinePolicy(_Part):
    kind: Literal["AlertPolicy"]
    metadata: _Metadata
    spec: _AlertPolicySpec


class _SloSpec(_Part):
    description: str = Field(default="", max_length=1050)
    service: str = Field(min_length=1)
    indicator: _InlineSli | None = None
    indicator_ref: str | None = Field(default=None, alias="indicatorRef")
    time_window: list[_TimeWindow] = Field(alias="timeWindow", min_length=1, max_length=1)
    budgeting_method: Literal["Occurrences", "Timeslices", "RatioTimeslices"] = Field(alias="budgetingMethod")
    objectives: list[_Objective] = Field(min_length=1)
    alert_policies: list[_InlinePolicy | _AlertPolicyRef] | None = Field(default=None, alias="alertPolicies")

    @model_validator(mode="after")
    def _indicators(self) -> Self:
        if self.indicator is not None and self.indicator_ref is not None:
            raise ValueError("indicator and indicatorRef exclude each other")
        own = self.indicator is not None or self.indicator_ref is not None
        for index, objective in enumerate(self.objectives):
            if not own and objective.indicator is None and objective.indicator_ref is None:
                raise ValueError(f"objectives[{index}] has no indicator and the SLO has none either")
        return self


class _ServiceSpec(_Part):
    description: str = Field(default="", max_length=1050)


class _DataSourceSpec(_Part):
    description: str = ""
    type: str = Field(min_length=1)
    connection_details: dict[str, Any] = Field(default_factory=dict, alias="connectionDetails")


_SPECS: dict[str, type[_Part]] = {
    "SLO": _SloSpec,
    "SLI": _SliSpec,
    "Service": _ServiceSpec,
    "DataSource": _DataSourceSpec,
    "AlertPolicy": _AlertPolicySpec,
    "AlertCondition": _AlertConditionSpec,
    "AlertNotificationTarget": _TargetSpec,
}


class _Envelope(_Part):
    api_version: Literal["openslo/v1"] = Field(alias="apiVersion")
    kind: Literal["SLO", "SLI", "Service", "DataSource", "AlertPolicy", "AlertCondition", "AlertNotificationTarget"]
    metadata: _Metadata
    spec: dict[str, Any]


@dataclass(frozen=True)
class V1Document:
    """One validated openslo/v1 document, kept with its place so that resolving references can point back to it."""

    file: str
    document: int
    kind: str
    name: str
    spec: Any  # the kind's spec model


def parse_v1(data: Any, file: str, document: int) -> V1Document:
    try:
        envelope = _Envelope.model_validate(data)
    except ValidationError as error:
        raise InvalidSpec(from_validation(error, file, document)) from None
    try:
        spec = _SPECS[envelope.kind].model_validate(envelope.spec)
    except ValidationError as error:
        raise InvalidSpec(from_validation(error, file, document, prefix="spec")) from None
    return V1Document(file, document, envelope.kind, envelope.metadata.name, spec)


class _Resolver:
    def __init__(self, documents: list[V1Document]) -> None:
        self._by_name = {(d.kind, d.name): d for d in documents}

    def get(self, kind: str, name: str, at: V1Document, field: str) -> Any:
        found = self._by_name.get((kind, name))
        if found is None:
            raise InvalidSpec([SpecError(at.file, at.document, field, f"no {kind} named {name!r} was loaded")])
        return found.spec


def _query(metric: _Metric, resolver: _Resolver, at: V1Document, field: str) -> tuple[str, str]:
    source = metric.metric_source
    kind = source.type
    if source.metric_source_ref is not None:
        data_source: _DataSourceSpec = resolver.get("DataSource", source.metric_source_ref, at, field)
        kind = data_source.type
    query = source.spec.get("query")
    if not isinstance(query, str) or not query:
        raise InvalidSpec([SpecError(at.file, at.document, f"{field}.metricSource.spec.query", "a query is required")])
    return query, (kind or "").lower()


def _sli(spec: _SliSpec, objective: _Objective, resolver: _Resolver, at: V1Document, field: str) -> Sli:
    if spec.threshold_metric is not None:
        if objective.op is None or objective.value is None:
            raise InvalidSpec(
                [SpecError(at.file, at.document, field, "a thresholdMetric needs the objective's op and value")]
            )
        query, source = _query(spec.threshold_metric, resolver, at, f"{field}.thresholdMetric")
        return ThresholdSli(query=query, op=objective.op, value=objective.value, source=source)
    ratio = spec.ratio_metric
    assert ratio is not None  # one of the two, checked by _SliSpec
    if ratio.raw is not None:
        query, source = _query(ratio.raw, resolver, at, f"{field}.ratioMetric.raw")
        error_ratio = query if ratio.raw_type == "failure" else f"1 - ({query})"
        return RawErrorRatioSli(error_ratio_query=error_ratio, source=source)
    assert ratio.total is not None
    total, source = _query(ratio.total, resolver, at, f"{field}.ratioMetric.total")
    if ratio.good is not None:
        good, _ = _query(ratio.good, resolver, at, f"{field}.ratioMetric.good")
        return EventRatioSli(good_query=good, total_query=total, source=source)
    assert ratio.bad is not None
    bad, _ = _query(ratio.bad, resolver, at, f"{field}.ratioMetric.bad")
    return EventRatioSli(error_query=bad, total_query=total, source=source)


def _budgeting(method: str, objective: _Objective, at: V1Document, field: str) -> Budgeting:
    if method == "Occurrences":
        return Occurrences()
    if objective.time_slice_window is None:
        raise InvalidSpec([SpecError(at.file, at.document, f"{field}.timeSliceWindow", f"required by {method}")])
    window = _fixed_duration(objective.time_slice_window)
    if method == "RatioTimeslices":
        return RatioTimeslices(slice_window=window)
    if objective.time_slice_target is None:
        raise InvalidSpec([SpecError(at.file, at.document, f"{field}.timeSliceTarget", "required by Timeslices")])
    return Timeslices(slice_window=window, slice_target=objective.time_slice_target)


def _check_policies(spec: _SloSpec, resolver: _Resolver, at: V1Document) -> None:
    for index, entry in enumerate(spec.alert_policies or []):
        field = f"spec.alertPolicies[{index}]"
        policy = entry.spec if isinstance(entry, _InlinePolicy) else None
        if isinstance(entry, _AlertPolicyRef):
            policy = resolver.get("AlertPolicy", entry.alert_policy_ref, at, f"{field}.alertPolicyRef")
        assert policy is not None
        for c, condition in enumerate(policy.conditions):
            if isinstance(condition, _ConditionRef):
                resolver.get("AlertCondition", condition.condition_ref, at, f"{field}.conditions[{c}].conditionRef")
        for t, target in enumerate(policy.notification_targets):
            if isinstance(target, _TargetRef):
                where = f"{field}.notificationTargets[{t}].targetRef"
                resolver.get("AlertNotificationTarget", target.target_ref, at, where)


def _v1_slos(at: V1Document, resolver: _Resolver) -> SloGroup:
    spec: _SloSpec = at.spec
    _check_policies(spec, resolver, at)
    slos = []
    for index, objective in enumerate(spec.objectives):
        field = f"spec.objectives[{index}]"
        if objective.indicator is not None:
            sli_spec, sli_field = objective.indicator.spec, f"{field}.indicator.spec"
        elif objective.indicator_ref is not None:
            sli_spec, sli_field = resolver.get("SLI", objective.indicator_ref, at, f"{field}.indicatorRef"), field
        elif spec.indicator is not None:
            sli_spec, sli_field = spec.indicator.spec, "spec.indicator.spec"
        else:
            assert spec.indicator_ref is not None  # checked by _SloSpec
            sli_spec, sli_field = resolver.get("SLI", spec.indicator_ref, at, "spec.indicatorRef"), "spec"
        name = at.name if len(spec.objectives) == 1 else f"{at.name}-{index}"
        try:
            slos.append(
                ServiceLevelObjective(
                    service=spec.service,
                    name=name,
                    description=spec.description,
                    objective=objective.percent,
                    window=spec.time_window[0].window(),
                    budgeting=_budgeting(spec.budgeting_method, objective, at, field),
                    sli=_sli(sli_spec, objective, resolver, at, sli_field),
                )
            )
        except ValidationError as error:
            raise InvalidSpec(from_validation(error, at.file, at.document, prefix=field)) from None
    return SloGroup(at.file, at.document, SpecFormat.OPENSLO_V1, tuple(slos))


def resolve_v1(documents: list[V1Document]) -> tuple[list[SloGroup], list[SpecError]]:
    """The SLOs of every v1 SLO document, references resolved among `documents`; errors per document."""
    resolver = _Resolver(documents)
    groups: list[SloGroup] = []
    errors: list[SpecError] = []
    seen: dict[tuple[str, str], V1Document] = {}
    for document in documents:
        key = (document.kind, document.name)
        if key in seen:
            first = seen[key]
            rule = f"{document.kind} {document.name!r} is already defined in {first.file} document {first.document}"
            errors.append(SpecError(document.file, document.document, "metadata.name", rule))
            continue
        seen[key] = document
        if document.kind != "SLO":
            continue
        try:
            groups.append(_v1_slos(document, resolver))
        except InvalidSpec as invalid:
            errors.extend(invalid.errors)
    return groups, errors
