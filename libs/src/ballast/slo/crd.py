"""The ServiceLevelObjective API (platform.example.com/v1) as pydantic models, and its spec read into the library model.

They mirror deploy/crds/servicelevelobjectives.platform.example.com.yaml (camelCase on the wire, snake_case here).
The API server has checked an object against the CRD's schema and CEL rules already; `to_objective` hands it to
`ballast.slo.ServiceLevelObjective`, the model the Sloth and OpenSLO loaders fill, so the engine reads one model.

From a file (`ballast slo validate|generate`, `load_object`) nothing has checked the object yet, so it is checked as
the API server would: a field the CRD does not have is refused as kubectl's strict field validation would, the
schema's bounds and patterns apply (the models hold them; a test compares them with the CRD's), then the CRD's CEL
rules (`ballast.slo.crd_rules`) unless a schema error stops them, each refusal naming the field the API server names.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Final, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

# From the defining modules, not the package: the package's loaders read these objects too.
from ballast.slo.alerting import Alerting, AlertTier
from ballast.slo.budgeting import Budgeting, Occurrences, RatioTimeslices, Timeslices
from ballast.slo.crd_rules import broken_rules
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


# The CRD schema's bounds and patterns, held by the models too (a test compares them), so that a file is refused what
# the API server would refuse, naming the same field.
AlertName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]
Query = Annotated[str, Field(min_length=1, max_length=4096)]
Labels = Annotated[dict[str, Annotated[str, Field(max_length=1024)]], Field(max_length=32)]
Annotations = Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=32)]
NAME_LENGTH: Final = 253


class WindowType(enum.StrEnum):
    ROLLING = "Rolling"
    CALENDAR = "Calendar"


class Window(ApiModel):
    type: WindowType = WindowType.ROLLING
    duration: str = Field(pattern=r"^[1-9][0-9]{0,3}[mhdwMQY]$")
    start: datetime | None = None
    time_zone: str | None = Field(default=None, min_length=1, max_length=64)

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
    window: str = Field(min_length=2, max_length=16, pattern=r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$")
    target: float | None = Field(default=None, gt=0, le=1)


class EventRatio(ApiModel):
    error_query: Query | None = None
    good_query: Query | None = None
    total_query: Query


class RawErrorRatio(ApiModel):
    error_ratio_query: Query


class Latency(ApiModel):
    histogram: str = Field(max_length=256, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    selector: str = Field(default="", max_length=1024)
    threshold: str = Field(max_length=32, pattern=r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$")


class WebAppAvailability(ApiModel):
    web_app: str = Field(min_length=1, max_length=NAME_LENGTH)


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
    name: AlertName | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)

    def to_tier(self) -> AlertTier:
        return AlertTier(**self.model_dump())


class AlertingSpec(ApiModel):
    name: AlertName | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)
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
    service: str = Field(min_length=1, max_length=NAME_LENGTH)
    description: str = Field(default="", max_length=1024)
    objective: float = Field(gt=0, lt=100)
    window: Window
    budgeting_method: BudgetingMethod = BudgetingMethod.OCCURRENCES
    time_slices: TimeSlices | None = None
    sli: SliSpec
    # Absent: the budget is kept but no tier alerts (the library's default tiers are off).
    alerting: AlertingSpec | None = None
    min_request_rate: float | None = Field(default=None, gt=0)
    budget_policy: BudgetPolicy = BudgetPolicy()
    labels: Labels = Field(default_factory=dict)

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


# After a missing field, a value outside an enum, a string or map over its size or a value of the wrong type, the API
# server does not run the CEL rules (its Required, NotSupported, TooLong, TooMany and TypeInvalid errors) and says so.
_STOPPING: Final = frozenset(("missing", "enum", "literal_error", "string_too_long", "too_long"))
RULES_NOT_CHECKED: Final = (
    "some validation rules were not checked because the object was invalid; correct the existing errors to complete "
    "validation"
)


def _stops_rules(error_type: str) -> bool:
    return error_type in _STOPPING or error_type.endswith(("_type", "_parsing"))


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
    # The CRD's CEL rules, as the API server would apply them: each names its field, with the CRD's message.
    broken = [SpecError(file, document, rule.field, rule.message) for rule in broken_rules(data)]
    try:
        spec = ServiceLevelObjectiveSpec.model_validate(data.get("spec"))
    except ValidationError as error:
        schema = from_validation(error, file, document, "spec")
        if any(_stops_rules(detail["type"]) for detail in error.errors()):
            raise InvalidSpec([*schema, SpecError(file, document, "", RULES_NOT_CHECKED)]) from None
        raise InvalidSpec(schema + broken) from None
    if broken:
        raise InvalidSpec(broken)
    try:
        slo = to_objective(namespace, name, spec)
    except ValidationError as error:
        raise InvalidSpec(from_validation(error, file, document, "spec")) from None
    except ValueError as error:  # a rule of the library's model the CRD does not state
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
