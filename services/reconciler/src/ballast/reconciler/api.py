"""The WebApp and Tenant API (platform.example.com/v1) as pydantic models.

They mirror the CRDs in deploy/crds: the same field names (camelCase on the wire, snake_case in Python), bounds and
defaults, so an object the API server accepted parses, and a model built in Python serialises to what the API server
would have stored (a test keeps the defaults of both in step).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from ballast.kube.conditions import Condition

GROUP = "platform.example.com"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
WEBAPPS = "webapps"
TENANTS = "tenants"
# Set on each of a tenant's namespaces by the reconciler; read by the webapp-pod-security admission policy.
MAX_POD_SECURITY_LABEL = f"{GROUP}/max-pod-security"

# Kubernetes' quantity syntax (as in the CRDs: no sign, since negative amounts make no sense here).
QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
Quantity = Annotated[int, Field(ge=0)] | Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY_PATTERN)]
DnsLabel = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]


class ApiModel(BaseModel):
    # Fields the model does not know are dropped rather than refused: a newer CRD must not break an older reader.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class NetworkPolicyMode(StrEnum):
    STRICT = "strict"
    STANDARD = "standard"
    NONE = "none"


class PodSecurityLevel(StrEnum):
    """A Pod Security Standard, from the most restrictive to the most permissive."""

    RESTRICTED = "restricted"
    BASELINE = "baseline"
    PRIVILEGED = "privileged"

    def allows(self, requested: PodSecurityLevel) -> bool:
        """Whether a tenant at this level may run pods at `requested` (the admission policy's rule)."""
        order = list(PodSecurityLevel)
        return order.index(requested) <= order.index(self)


class ResourceAmounts(ApiModel):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(ApiModel):
    requests: ResourceAmounts | None = None
    limits: ResourceAmounts | None = None


class EnvVar(ApiModel):
    name: str = Field(min_length=1, max_length=256)
    value: str = ""


class Autoscaling(ApiModel):
    enabled: bool = False
    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int | None = Field(default=None, ge=1, le=100)
    target_cpu_utilization: int = Field(default=80, ge=1, le=100, alias="targetCPUUtilization")


class Monitoring(ApiModel):
    enabled: bool = True
    # A Prometheus duration such as 30s, 1m or 1m30s.
    scrape_interval: str = Field(
        default="30s", min_length=2, max_length=16, pattern=r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"
    )


class Security(ApiModel):
    network_policy: NetworkPolicyMode = NetworkPolicyMode.STRICT
    pod_security_standard: PodSecurityLevel = PodSecurityLevel.RESTRICTED


class WebAppSpec(ApiModel):
    image: str = Field(min_length=1, max_length=512)
    replicas: int = Field(default=1, ge=1, le=100)
    port: int = Field(default=8080, ge=1, le=65535)
    env: list[EnvVar] | None = Field(default=None, max_length=100)
    resources: Resources | None = None
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    security: Security = Field(default_factory=Security)


class WebAppStatus(ApiModel):
    observed_generation: int | None = None
    # The Deployment's counts. `replicas` and `selector` are also what the scale subresource reports.
    replicas: int | None = None
    desired_replicas: int | None = None
    ready_replicas: int | None = None
    updated_replicas: int | None = None
    available_replicas: int | None = None
    selector: str | None = None
    conditions: list[Condition] = Field(default_factory=list)


class ObjectMeta(ApiModel):
    """The parts of metav1.ObjectMeta the reconciler reads."""

    name: str
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class WebApp(ApiModel):
    api_version: Literal["platform.example.com/v1"] = "platform.example.com/v1"
    kind: Literal["WebApp"] = "WebApp"
    metadata: ObjectMeta
    spec: WebAppSpec
    status: WebAppStatus | None = None


class TenantQuota(ApiModel):
    hard: dict[str, Quantity] | None = Field(default=None, max_length=64)


class TenantLimitRange(ApiModel):
    default: ResourceAmounts | None = None
    default_request: ResourceAmounts | None = None


class TenantSpec(ApiModel):
    namespaces: list[DnsLabel] = Field(min_length=1, max_length=256)
    quota: TenantQuota | None = None
    limit_range: TenantLimitRange | None = None
    max_pod_security: PodSecurityLevel = PodSecurityLevel.RESTRICTED


class TenantStatus(ApiModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)


class Tenant(ApiModel):
    api_version: Literal["platform.example.com/v1"] = "platform.example.com/v1"
    kind: Literal["Tenant"] = "Tenant"
    metadata: ObjectMeta
    spec: TenantSpec
    status: TenantStatus | None = None


def to_manifest(obj: WebApp | Tenant) -> dict[str, Any]:
    """The object as the API expects it in a request body: camelCase, no unset optional fields."""
    return obj.model_dump(mode="json", by_alias=True, exclude_none=True)
