"""Sloth specs into the model: `prometheus/v1` files and the `sloth.slok.dev/v1` `PrometheusServiceLevel` kind.

The two spell the same model differently (`error_query` vs `errorQuery`); the Kubernetes kind is read through the
same classes with its keys renamed first, and errors are reported in the spelling the document used. Like Sloth,
unknown keys are ignored (a `pageAlert` in a prometheus/v1 file does nothing there, as in Sloth). Sloth takes the
period from the command line, not the spec: every SLO gets the rolling `period` passed in.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ballast.slo.alerting import Alerting, AlertTier
from ballast.slo.errors import InvalidSpec, from_validation
from ballast.slo.group import KubernetesObject, SloGroup, SpecFormat
from ballast.slo.labels import Labels
from ballast.slo.objective import SLO_NAME, ServiceLevelObjective
from ballast.slo.sli import EventRatioSli, RawErrorRatioSli, has_window
from ballast.slo.window import RollingWindow

# The Kubernetes kind's spelling of the fields whose names differ.
_CAMEL = {
    "errorQuery": "error_query",
    "totalQuery": "total_query",
    "errorRatioQuery": "error_ratio_query",
    "pageAlert": "page_alert",
    "ticketAlert": "ticket_alert",
    "sloPlugins": "slo_plugins",
    "overridePrevious": "override_previous",
}
_SNAKE = {snake: camel for camel, snake in _CAMEL.items()}


class _SpecPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _kubernetes_spelling(cls, data: Any, info: ValidationInfo) -> Any:
        if not (isinstance(data, dict) and info.context and info.context.get("camel")):
            return data
        # snake_case keys are unknown to the Kubernetes kind: dropped, as Sloth's decoder ignores them
        return {_CAMEL.get(key, key): value for key, value in data.items() if key not in _SNAKE}


class _Tier(_SpecPart):
    disable: bool = False
    labels: Labels = Field(default_factory=dict)
    annotations: Labels = Field(default_factory=dict)


class _Alerting(_SpecPart):
    # The tiers come first so that the name's validator sees whether any of them alerts.
    page_alert: _Tier = _Tier()
    ticket_alert: _Tier = _Tier()
    name: str = ""
    labels: Labels = Field(default_factory=dict)
    annotations: Labels = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _named_when_alerting(cls, name: str, info: ValidationInfo) -> str:
        tiers = [info.data.get(tier) for tier in ("page_alert", "ticket_alert")]
        if not name and any(tier is not None and not tier.disable for tier in tiers):
            raise ValueError("required unless both page and ticket alerts are disabled")
        return name


def _windowed(query: str) -> str:
    if not has_window(query):
        raise ValueError("the query must contain the {{.window}} placeholder")
    return query


class _Events(_SpecPart):
    error_query: str = Field(min_length=1)
    total_query: str = Field(min_length=1)

    _windows = field_validator("error_query", "total_query")(_windowed)

    @field_validator("total_query")
    @classmethod
    def _differs(cls, total: str, info: ValidationInfo) -> str:
        if total == info.data.get("error_query"):
            raise ValueError("must differ from error_query")
        return total


class _Raw(_SpecPart):
    error_ratio_query: str = Field(min_length=1)

    _window = field_validator("error_ratio_query")(_windowed)


class _Sli(_SpecPart):
    events: _Events | None = None
    raw: _Raw | None = None
    plugin: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        kinds = [kind for kind in ("events", "raw", "plugin") if getattr(self, kind) is not None]
        if len(kinds) != 1:
            raise ValueError(f"exactly one SLI type (events, raw or plugin) is required, found {len(kinds)}")
        if self.plugin is not None:
            raise ValueError("SLI plugins are not supported: write the query as an events or raw SLI")
        return self


class _Plugins(_SpecPart):
    override_previous: bool = False
    chain: list[Any] = Field(default_factory=list, max_length=0, description="only Sloth's default chain is run")


class _Slo(_SpecPart):
    name: str = Field(pattern=SLO_NAME.pattern)
    objective: float = Field(gt=0, le=100)
    description: str = ""
    labels: Labels = Field(default_factory=dict)
    sli: _Sli
    alerting: _Alerting = _Alerting(page_alert=_Tier(disable=True), ticket_alert=_Tier(disable=True))
    plugins: _Plugins = _Plugins()


class _Spec(_SpecPart):
    service: str = Field(min_length=1)
    labels: Labels = Field(default_factory=dict)
    slo_plugins: _Plugins = _Plugins()
    slos: list[_Slo] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [slo.name for slo in self.slos]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"SLO names must be unique in a spec; repeated: {', '.join(repeated)}")
        return self


class _PrometheusV1(_Spec):
    version: Literal["prometheus/v1"]


class _Metadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    namespace: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class _KubernetesSlo(_Slo):
    name: str = Field(pattern=SLO_NAME.pattern, max_length=128)


class _KubernetesSpec(_Spec):
    slos: list[_KubernetesSlo] = Field(min_length=1)  # type: ignore[assignment]


class _PrometheusServiceLevel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    api_version: Literal["sloth.slok.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["PrometheusServiceLevel"]
    metadata: _Metadata
    spec: _KubernetesSpec


def _slo(spec: _Spec, slo: _Slo, period: timedelta) -> ServiceLevelObjective:
    sli = slo.sli
    if sli.events is not None:
        indicator: EventRatioSli | RawErrorRatioSli = EventRatioSli(
            error_query=sli.events.error_query, total_query=sli.events.total_query
        )
    else:
        assert sli.raw is not None  # exactly one kind, checked by _Sli
        indicator = RawErrorRatioSli(error_ratio_query=sli.raw.error_ratio_query)
    alerting = slo.alerting

    def tier(spec_tier: _Tier) -> AlertTier:
        return AlertTier(enabled=not spec_tier.disable, labels=spec_tier.labels, annotations=spec_tier.annotations)

    return ServiceLevelObjective(
        service=spec.service,
        name=slo.name,
        description=slo.description,
        objective=slo.objective,
        window=RollingWindow(length=period),
        sli=indicator,
        alerting=Alerting(
            name=alerting.name or None,
            labels=alerting.labels,
            annotations=alerting.annotations,
            page=tier(alerting.page_alert),
            ticket=tier(alerting.ticket_alert),
        ),
        labels=spec.labels | slo.labels,
    )


def _slos(
    spec: _Spec, period: timedelta, file: str, document: int, prefix: str = "", spelled: dict[str, str] | None = None
) -> tuple[ServiceLevelObjective, ...]:
    slos = []
    for index, slo in enumerate(spec.slos):
        try:
            slos.append(_slo(spec, slo, period))
        except ValidationError as error:  # a model rule the spec's own checks do not cover
            raise InvalidSpec(from_validation(error, file, document, f"{prefix}slos[{index}]", spelled)) from None
    return tuple(slos)


def load_prometheus_v1(data: Any, file: str, document: int, period: timedelta) -> SloGroup:
    try:
        spec = _PrometheusV1.model_validate(data)
    except ValidationError as error:
        raise InvalidSpec(from_validation(error, file, document)) from None
    return SloGroup(file, document, SpecFormat.SLOTH_PROMETHEUS, _slos(spec, period, file, document))


def load_prometheus_service_level(data: Any, file: str, document: int, period: timedelta) -> SloGroup:
    try:
        resource = _PrometheusServiceLevel.model_validate(data, context={"camel": True})
    except ValidationError as error:
        raise InvalidSpec(from_validation(error, file, document, spelled=_SNAKE)) from None
    slos = _slos(resource.spec, period, file, document, prefix="spec.", spelled=_SNAKE)
    meta = resource.metadata
    origin = KubernetesObject(meta.name, meta.namespace, meta.labels, meta.annotations)
    return SloGroup(file, document, SpecFormat.SLOTH_KUBERNETES, slos, origin)
