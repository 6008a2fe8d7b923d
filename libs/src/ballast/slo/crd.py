"""The ServiceLevelObjective API (platform.example.com/v1) as pydantic models, and its spec read into the library model.

They mirror deploy/crds/servicelevelobjectives.platform.example.com.yaml (camelCase on the wire, snake_case here).
The API server has checked an object against the CRD's schema and CEL rules already; `to_objective` hands it to
`ballast.slo.ServiceLevelObjective`, the model the Sloth and OpenSLO loaders fill, so the engine reads one model.

From a file (`ballast slo validate|generate`, `load_object`) nothing has checked the object yet: a field the CRD
does not have is refused as kubectl's strict field validation would, and the model's rules apply; the CRD's CEL
rules that the model does not repeat are the API server's (`kubectl apply --dry-run=server`).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

# From the defining modules, not the package: the package's loaders read these objects too.
from ballast.slo.alerting import Alerting, AlertTier
from ballast.slo.budgeting import Budgeting, Occurrences, RatioTimeslices, Timeslices
from ballast.slo.durations import parse_duration
from ballast.slo.errors import InvalidSpec, SpecError, from_validation
from ballast.slo.group import KubernetesObject, SloGroup, SpecFormat
from ballast.slo.objective import ServiceLevelObjective
from ballast.slo.openslo_v1 import CALENDAR_UNITS
from ballast.slo.policy import ErrorBudgetPolicy
from ballast.slo.sli import EventRatioSli, LatencySli, RawErrorRatioSli, Sli, WebAppAvailabilitySli
from ballast.slo.window import CalendarWindow, RollingWindow, SloWindow

GROUP = "platform.example.com"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
SLOS = "servicelevelobjectives"
KIND = "ServiceLevelObjective"


class ApiModel(BaseModel):
    # Fields the model does not know are dropped rather than refused: a newer CRD must not break an older reader.
    # extra="forbid": the models hold every field of the CRD's schema (a test compares them), so an object from the
    # cluster (pruned to the schema) never has another; one from a file with a misspelt field is refused, naming it.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class WindowType(enum.StrEnum):
    ROLLING = "Rolling"
    CALENDAR = "Calendar"


class Window(ApiModel):
    type: WindowType = WindowType.ROLLING
    duration: str = Field(pattern=r"^[1-9][0-9]{0,3}[mhdwMQY]$")
    start: datetime | None = None
    time_zone: str | None = None

    def to_window(self) -> SloWindow:
        if self.type is WindowType.ROLLING:
            return RollingWindow(length=parse_duration(self.duration))
        return CalendarWindow(
            count=int(self.duration[:-1]),
            unit=CALENDAR_UNITS[self.duration[-1]],
            start=self.start,
            time_zone=self.time_zone or "UTC",
        )


class BudgetingMethod(enum.StrEnum):
    OCCURRENCES = "Occurrences"
    TIMESLICES = "Timeslices"
    RATIO_TIMESLICES = "RatioTimeslices"


class TimeSlices(ApiModel):
    window: str
    target: float | None = Field(default=None, gt=0, le=1)


class EventRatio(ApiModel):
    error_query: str | None = None
    good_query: str | None = None
    total_query: str


class RawErrorRatio(ApiModel):
    error_ratio_query: str


class Latency(ApiModel):
    histogram: str
    selector: str = ""
    threshold: str


class WebAppAvailability(ApiModel):
    web_app: str = Field(min_length=1)


class SliSpec(ApiModel):
    event_ratio: EventRatio | None = None
    raw_error_ratio: RawErrorRatio | None = None
    latency: Latency | None = None
    web_app_availability: WebAppAvailability | None = None

    def to_sli(self, namespace: str) -> Sli:
        if self.event_ratio is not None:
            return EventRatioSli(**self.event_ratio.model_dump())
        if self.raw_error_ratio is not None:
            return RawErrorRatioSli(**self.raw_error_ratio.model_dump())
        if self.latency is not None:
            latency = self.latency
            return LatencySli(histogram=latency.histogram, selector=latency.selector, le=latency.threshold)
        if self.web_app_availability is not None:
            return WebAppAvailabilitySli(namespace=namespace, webapp=self.web_app_availability.web_app)
        raise ValueError("exactly one SLI kind is required (eventRatio, rawErrorRatio, latency or webAppAvailability)")


class Tier(ApiModel):
    enabled: bool = True
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    def to_tier(self) -> AlertTier:
        return AlertTier(**self.model_dump())


class AlertingSpec(ApiModel):
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    page: Tier = Tier()
    ticket: Tier = Tier()

    def to_alerting(self) -> Alerting:
        return Alerting(
            name=self.name,
            labels=self.labels,
            annotations=self.annotations,
            page=self.page.to_tier(),
            ticket=self.ticket.to_tier(),
        )


class BudgetPolicy(ApiModel):
    freeze_deploys_below_percent: float | None = Field(default=None, ge=0, lt=100)
    pause_chaos_while_paging: bool = False
    exclude_chaos_burn: bool = False


class ServiceLevelObjectiveSpec(ApiModel):
    service: str = Field(min_length=1)
    description: str = ""
    objective: float = Field(gt=0, lt=100)
    window: Window
    budgeting_method: BudgetingMethod = BudgetingMethod.OCCURRENCES
    time_slices: TimeSlices | None = None
    sli: SliSpec
    # Absent: the budget is kept but no tier alerts (the library's default tiers are off).
    alerting: AlertingSpec | None = None
    min_request_rate: float | None = Field(default=None, gt=0)
    budget_policy: BudgetPolicy = BudgetPolicy()
    labels: dict[str, str] = Field(default_factory=dict)

    def to_budgeting(self) -> Budgeting:
        if self.budgeting_method is BudgetingMethod.OCCURRENCES:
            return Occurrences()
        if self.time_slices is None:
            raise ValueError("Timeslices and RatioTimeslices budgeting need timeSlices.window")
        window = parse_duration(self.time_slices.window)
        if self.budgeting_method is BudgetingMethod.RATIO_TIMESLICES:
            return RatioTimeslices(slice_window=window)
        if self.time_slices.target is None:
            raise ValueError("Timeslices budgeting needs timeSlices.target")
        return Timeslices(slice_window=window, slice_target=self.time_slices.target)


def to_objective(namespace: str, name: str, spec: ServiceLevelObjectiveSpec) -> ServiceLevelObjective:
    """The library's model of an SLO object; raises pydantic's ValidationError (a ValueError) when it breaks a rule
    the CRD cannot check."""
    return ServiceLevelObjective(
        service=spec.service,
        name=name,
        description=spec.description,
        objective=spec.objective,
        window=spec.window.to_window(),
        budgeting=spec.to_budgeting(),
        sli=spec.sli.to_sli(namespace),
        alerting=spec.alerting.to_alerting() if spec.alerting is not None else Alerting(),
        min_request_rate=spec.min_request_rate,
        policy=ErrorBudgetPolicy(
            freeze_deploys_below_percent=spec.budget_policy.freeze_deploys_below_percent,
            pause_chaos_while_paging=spec.budget_policy.pause_chaos_while_paging,
            exclude_chaos_burn=spec.budget_policy.exclude_chaos_burn,
        ),
        labels=spec.labels,
    )


def load_object(data: dict[str, Any], file: str, document: int) -> SloGroup:
    """A ServiceLevelObjective object from a file, as the engine would read it from the cluster; raises InvalidSpec
    naming the file, the document, the field and the rule. Without a namespace it is in `default`, as kubectl would
    create it."""
    metadata = data.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise InvalidSpec([SpecError(file, document, "metadata.name", "a ServiceLevelObjective needs a name")])
    name, namespace = str(metadata["name"]), str(metadata.get("namespace") or "default")
    unknown = sorted(set(data) - {"apiVersion", "kind", "metadata", "spec", "status"})
    unknown += _unknown_fields(data.get("spec"), ServiceLevelObjectiveSpec, "spec")
    if unknown:
        raise InvalidSpec([SpecError(file, document, field, "not a field of the CRD") for field in unknown])
    try:
        spec = ServiceLevelObjectiveSpec.model_validate(data.get("spec"))
        slo = to_objective(namespace, name, spec)
    except ValidationError as error:
        raise InvalidSpec(from_validation(error, file, document, "spec")) from None
    except ValueError as error:  # a rule between fields (budgeting and its slices)
        raise InvalidSpec([SpecError(file, document, "spec", str(error))]) from None
    origin = KubernetesObject(
        name=name,
        namespace=namespace,
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
    )
    return SloGroup(file, document, SpecFormat.BALLAST, (slo,), origin)


def _unknown_fields(value: Any, model: type[ApiModel], path: str) -> list[str]:
    """The fields of `value` that `model` (and its nested models) does not have, as dotted paths. The models drop
    unknown fields (for an older reader of a newer CRD); a file is checked as kubectl's strict validation would."""
    if not isinstance(value, dict):
        return []
    known = {field.alias or name: field for name, field in model.model_fields.items()}
    found = []
    for key, inner in value.items():
        field = known.get(key)
        if field is None:
            found.append(f"{path}.{key}")
            continue
        nested = [t for t in (field.annotation, *get_args(field.annotation)) if isinstance(t, type)]
        models = [t for t in nested if issubclass(t, ApiModel)]
        if models:
            found += _unknown_fields(inner, models[0], f"{path}.{key}")
    return found
