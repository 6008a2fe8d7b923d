"""The ChaosExperiment API (platform.example.com/v1) as pydantic models.

They mirror deploy/crds/chaosexperiments.platform.example.com.yaml (camelCase on the wire, snake_case here; a test
compares the two). The API server has checked an object against the CRD's schema and CEL rules already; these models
give the runner typed access and the defaults of an object read before the CRD's defaulting ran.
"""

from __future__ import annotations

import enum
import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ballast.events.contracts.chaos import FaultEngine, FaultKind
from ballast.events.contracts.slo import BurnTier
from ballast.kube.resource import Resource

GROUP = "platform.example.com"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ChaosExperiment"
CHAOS_EXPERIMENT = Resource(GROUP, VERSION, "chaosexperiments", KIND)

# A namespace opts in to chaos with this label; the runner refuses targets anywhere else.
CHAOS_NAMESPACE_LABEL = "chaos.platform.example.com/enabled"

_DURATION = re.compile(r"^([1-9][0-9]{0,3})(s|m|h)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> timedelta:
    """`30s`, `5m`, `1h`: the CRD's duration pattern."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h")
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


class ApiModel(BaseModel):
    # Fields the model does not know are dropped rather than refused: a newer CRD must not break an older runner.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Selector(ApiModel):
    match_labels: dict[str, str] = Field(min_length=1)


class Target(ApiModel):
    namespace: str | None = None
    web_app: str | None = None
    selector: Selector | None = None


class FaultType(enum.StrEnum):
    POD_DELETE = "PodDelete"
    POD_EVICT = "PodEvict"
    NODE_CORDON = "NodeCordon"
    NODE_DRAIN = "NodeDrain"
    SCALE_DOWN = "ScaleDown"

    @property
    def contract(self) -> FaultKind:
        return _FAULT_KINDS[self]


_FAULT_KINDS = {
    FaultType.POD_DELETE: FaultKind.POD_DELETE,
    FaultType.POD_EVICT: FaultKind.POD_EVICT,
    FaultType.NODE_CORDON: FaultKind.NODE_CORDON,
    FaultType.NODE_DRAIN: FaultKind.NODE_DRAIN,
    FaultType.SCALE_DOWN: FaultKind.SCALE_DOWN,
}


class Fault(ApiModel):
    kind: FaultType
    force: bool = False
    grace_period_seconds: int | None = Field(default=None, ge=0)
    replicas: int | None = Field(default=None, ge=0)


class Engine(enum.StrEnum):
    NATIVE = "Native"
    LITMUS = "Litmus"

    @property
    def contract(self) -> FaultEngine:
        return FaultEngine.NATIVE if self is Engine.NATIVE else FaultEngine.LITMUS


class LitmusSettings(ApiModel):
    service_account: str = "litmus-admin"


class SelectionMode(enum.StrEnum):
    ONE = "One"
    ALL = "All"
    FIXED = "Fixed"
    FIXED_PERCENT = "FixedPercent"
    RANDOM_MAX_PERCENT = "RandomMaxPercent"


class Selection(ApiModel):
    mode: SelectionMode = SelectionMode.ONE
    value: int | None = Field(default=None, ge=1)


class BlastRadius(ApiModel):
    max_percent: int = Field(default=34, ge=1, le=100)
    max_pods: int | None = Field(default=None, ge=1)


class HttpCheck(ApiModel):
    url: str
    expect_status: int = 200
    timeout_seconds: float = 2.0


class Hypothesis(ApiModel):
    min_ready_replicas: int | None = Field(default=None, ge=0)
    max_burn_rate: float | None = Field(default=None, gt=0)
    slo: str | None = None
    http: HttpCheck | None = None
    check_interval_seconds: float = Field(default=2.0, ge=0.2)


class Abort(ApiModel):
    on_burn_tiers: tuple[BurnTier, ...] = (BurnTier.PAGE,)
    budget_left_below_percent: float | None = Field(default=None, ge=0, le=100)


class Budget(ApiModel):
    max_spend_percent: float = Field(gt=0, le=100)


class ConcurrencyPolicy(enum.StrEnum):
    FORBID = "Forbid"
    REPLACE = "Replace"
    ALLOW = "Allow"


class Schedule(ApiModel):
    cron: str
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    suspend: bool = False


class ChaosExperimentSpec(ApiModel):
    target: Target
    service: str | None = None
    fault: Fault
    engine: Engine = Engine.NATIVE
    litmus: LitmusSettings | None = None
    duration: str
    interval: str | None = None
    selection: Selection = Selection()
    blast_radius: BlastRadius = BlastRadius()
    hypothesis: Hypothesis = Hypothesis()
    abort: Abort = Abort()
    budget: Budget | None = None
    schedule: Schedule | None = None
    dry_run: bool = False

    @property
    def duration_delta(self) -> timedelta:
        return parse_duration(self.duration)

    @property
    def interval_delta(self) -> timedelta | None:
        return parse_duration(self.interval) if self.interval else None


class Experiment(BaseModel):
    """One ChaosExperiment object, as the runner reads it."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    uid: str
    generation: int
    spec: ChaosExperimentSpec

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> Experiment:
        metadata = obj["metadata"]
        return cls(
            namespace=metadata["namespace"],
            name=metadata["name"],
            uid=metadata["uid"],
            generation=metadata.get("generation", 1),
            spec=ChaosExperimentSpec.model_validate(obj["spec"]),
        )

    @property
    def target_namespace(self) -> str:
        return self.spec.target.namespace or self.namespace

    @property
    def service(self) -> str:
        """The service whose SLOs and incidents govern the experiment (the CRD requires one for a selector)."""
        return self.spec.service or self.spec.target.web_app or self.name
