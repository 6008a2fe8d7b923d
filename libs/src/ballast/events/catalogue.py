"""Every subject, stream, consumer, event type and request/reply endpoint of Ballast, declared once.

Services publish and subscribe only through these declarations; `docs/asyncapi.yaml` is generated from this module
(`python -m ballast.events.asyncapi`) and a test fails when the committed document is stale.

Subjects:
  evt.k8s.<cluster>.<ns|_>.<Kind>.<verb>     observed cluster facts
  evt.<area>.<cluster>.<ns|_>.<event>        platform events (reconcile, slo, policy, chaos, incident, alert)
  cmd.<service>.<action>                     work items (work-queue stream)
  svc.<service>.<endpoint>                   request/reply (NATS micro)
  shadow.<run>.…                             replayed copies, never read by production consumers
  dlq.<consumer>                             dead letters, with the reason and the original headers
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import timedelta

from pydantic import BaseModel

from ballast.events import payloads as p
from ballast.events.registry import EventType, TypeRegistry

CLUSTER_SCOPED = "_"  # the namespace token of cluster-scoped objects


class Retention(enum.StrEnum):
    LIMITS = "limits"  # the replay log: acks remove nothing
    WORK_QUEUE = "workqueue"  # removed once the one consumer acks


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: Retention
    max_age: timedelta
    duplicate_window: timedelta
    description: str
    max_bytes: int = -1


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer shared by every replica of one service purpose (queue semantics)."""

    durable: str
    stream: str
    filter_subjects: tuple[str, ...]
    description: str
    # Redelivery delays after an ack timeout; the last one repeats. len(backoff) <= max_deliver.
    backoff: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    max_deliver: int = 6
    max_ack_pending: int = 256
    ack_wait: float = 30.0


@dataclass(frozen=True)
class EndpointSpec:
    """A request/reply endpoint served with NATS micro; callers get a typed response or a typed error."""

    service: str
    name: str
    request: type[BaseModel]
    response: type[BaseModel]
    description: str
    version: str = "1.0.0"

    @property
    def subject(self) -> str:
        return f"svc.{self.service}.{self.name}"


def k8s_subject(cluster: str, namespace: str | None, kind: str, verb: str) -> str:
    return f"evt.k8s.{cluster}.{namespace or CLUSTER_SCOPED}.{kind}.{verb}"


def platform_subject(area: str, cluster: str, namespace: str | None, event: str) -> str:
    return f"evt.{area}.{cluster}.{namespace or CLUSTER_SCOPED}.{event}"


def dead_letter_subject(durable: str) -> str:
    return f"dlq.{durable}"


# --- streams -------------------------------------------------------------------------------------------------------

K8S_EVENTS = StreamSpec(
    name="K8S_EVENTS",
    subjects=("evt.k8s.>",),
    retention=Retention.LIMITS,
    max_age=timedelta(days=7),
    duplicate_window=timedelta(minutes=10),
    description="Observed cluster facts; kept for the replay horizon.",
)
PLATFORM_EVENTS = StreamSpec(
    name="PLATFORM_EVENTS",
    subjects=(
        "evt.reconcile.>",
        "evt.slo.>",
        "evt.policy.>",
        "evt.chaos.>",
        "evt.incident.>",
        "evt.alert.>",
    ),
    retention=Retention.LIMITS,
    max_age=timedelta(days=30),
    duplicate_window=timedelta(minutes=10),
    description="What the platform's services decided and did.",
)
COMMANDS = StreamSpec(
    name="COMMANDS",
    subjects=("cmd.>",),
    retention=Retention.WORK_QUEUE,
    max_age=timedelta(days=1),
    duplicate_window=timedelta(minutes=2),
    description="Work items, each removed once handled.",
)
DEAD_LETTERS = StreamSpec(
    name="DEAD_LETTERS",
    subjects=("dlq.>", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"),
    retention=Retention.LIMITS,
    max_age=timedelta(days=30),
    duplicate_window=timedelta(minutes=10),
    description=(
        "Messages a consumer rejected or gave up on, with the reason and the original headers; plus the server's "
        "max-deliveries advisories for messages whose handler never answered."
    ),
)
STREAMS: tuple[StreamSpec, ...] = (K8S_EVENTS, PLATFORM_EVENTS, COMMANDS, DEAD_LETTERS)


# --- key-value buckets ---------------------------------------------------------------------------------------------
# State a service keeps between restarts and shares between its replicas, with compare-and-set on each key's revision.
# Facts stay in the streams above; a bucket holds only the current state derived from them (and a short history).


@dataclass(frozen=True)
class BucketSpec:
    """A JetStream key-value bucket (file storage): `history` revisions kept per key, entries older than `max_age`
    removed (None: kept until deleted)."""

    name: str
    description: str
    history: int = 1
    max_age: timedelta | None = None


SLO_BUDGETS = BucketSpec(
    name="slo-budgets",
    description="Error-budget state per SLO: remaining budget, burn rates and the tiers firing.",
    history=5,
)
INCIDENTS = BucketSpec(
    name="incidents",
    description="Incident state per incident: status, timeline marks and who was told.",
    history=10,
)
CHAOS_RUNS = BucketSpec(
    name="chaos-runs",
    description="Chaos runs and the faults each recorded, so an interrupted run can be reverted.",
    history=5,
    max_age=timedelta(days=30),
)
BUCKETS: tuple[BucketSpec, ...] = (SLO_BUDGETS, INCIDENTS, CHAOS_RUNS)


# --- event types ---------------------------------------------------------------------------------------------------

K8S_VERBS = ("created", "updated", "deleted")
OBSERVED_KINDS = ("WebApp", "Deployment", "Pod")


def k8s_event_type(kind: str, verb: str) -> str:
    return f"io.k8s.{kind.lower()}.{verb}.v1"


def _observed_types() -> list[EventType]:
    types = [
        EventType(
            ce_type=k8s_event_type(kind, verb),
            model=p.ObservedObject,
            subject=f"evt.k8s.{{cluster}}.{{namespace}}.{kind}.{verb}",
            description=f"A {kind} was {verb} in the cluster (seen on the watch).",
        )
        for kind in OBSERVED_KINDS
        for verb in K8S_VERBS
    ]
    types += [
        EventType(
            ce_type=f"io.k8s.pod.{problem.value}.v1",
            model=p.PodIssue,
            subject=f"evt.k8s.{{cluster}}.{{namespace}}.Pod.{problem.value}",
            description=f"A Pod of a workload is in trouble: {problem.value.replace('_', ' ')}.",
        )
        for problem in p.PodProblem
    ]
    return types


RECONCILE_OUTCOMES = {
    "reconciled": "A WebApp's children match its spec.",
    "drift_repaired": "A child changed or deleted by someone else was put back.",
    "degraded": "A WebApp cannot reach its desired state; the message says why.",
    "policy_denied": "The policy gate refused the WebApp's rendered manifests.",
    "deleted": "A WebApp and its children are gone.",
}


def reconcile_event_type(outcome: str) -> str:
    return f"io.ballast.webapp.{outcome}.v1"


EVENT_TYPES: tuple[EventType, ...] = (
    *_observed_types(),
    *(
        EventType(
            ce_type=reconcile_event_type(outcome),
            model=p.ReconcileOutcome,
            subject=f"evt.reconcile.{{cluster}}.{{namespace}}.{outcome}",
            description=description,
        )
        for outcome, description in RECONCILE_OUTCOMES.items()
    ),
)

REGISTRY = TypeRegistry(EVENT_TYPES)


# --- request/reply endpoints ---------------------------------------------------------------------------------------

POLICY_CHECK = EndpointSpec(
    service="policy",
    name="check",
    request=p.PolicyCheckRequest,
    response=p.PolicyCheckResponse,
    description="Judge rendered manifests against the active policies before they are applied.",
)
ENDPOINTS: tuple[EndpointSpec, ...] = (POLICY_CHECK,)


# --- consumers -----------------------------------------------------------------------------------------------------
# Each service declares its durables here as its domain logic lands; tests and benchmarks build their own specs.

CONSUMERS: tuple[ConsumerSpec, ...] = ()


@dataclass(frozen=True)
class Catalogue:
    streams: tuple[StreamSpec, ...] = STREAMS
    buckets: tuple[BucketSpec, ...] = BUCKETS
    event_types: tuple[EventType, ...] = EVENT_TYPES
    endpoints: tuple[EndpointSpec, ...] = ENDPOINTS
    consumers: tuple[ConsumerSpec, ...] = CONSUMERS
    registry: TypeRegistry = field(default_factory=lambda: REGISTRY)

    def stream_for(self, subject: str) -> StreamSpec:
        for stream in self.streams:
            if any(_matches(pattern, subject) for pattern in stream.subjects):
                return stream
        raise LookupError(f"no stream captures subject {subject!r}")


def _matches(pattern: str, subject: str) -> bool:
    pattern_tokens, subject_tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(pattern_tokens):
        if token == ">":
            return len(subject_tokens) > index
        if index >= len(subject_tokens) or (token != "*" and token != subject_tokens[index]):
            return False
    return len(pattern_tokens) == len(subject_tokens)


CATALOGUE = Catalogue()
