"""Every subject, stream, consumer, event type, command and request/reply endpoint of Ballast, declared once.

The streams and consumers are declared here; the event types, commands and endpoints by each area's contract
(`ballast.events.contracts`), which this module gathers. Services publish and subscribe only through these
declarations; `docs/asyncapi.yaml` is generated from this module (`python -m ballast.events.asyncapi`) and a test fails
when the committed document is stale.

Subjects:
  evt.k8s.<cluster>.<ns|_>.<Kind>.<verb>     observed cluster facts
  evt.<area>.<cluster>.<ns|_>.<event>        platform events (reconcile, slo, policy, chaos, incident, alert, replay)
  cmd.<service>.<action>                     work items (work-queue stream)
  svc.<service>.<endpoint>                   request/reply (NATS micro)
  dlq.<consumer>                             dead letters, with the reason and the original headers
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import timedelta

from ballast.events.contracts.chaos import CHAOS_COMMANDS, CHAOS_EVENT_TYPES
from ballast.events.contracts.incident import INCIDENT_ENDPOINTS, INCIDENT_EVENT_TYPES
from ballast.events.contracts.k8s import K8S_EVENT_TYPES
from ballast.events.contracts.policy import POLICY_CHECK, POLICY_EVENT_TYPES
from ballast.events.contracts.reconcile import RECONCILE_EVENT_TYPES
from ballast.events.contracts.replay import REPLAY_EVENT_TYPES
from ballast.events.contracts.slo import SLO_EVENT_TYPES, SLO_STATUS
from ballast.events.registry import EndpointSpec, EventSpec, TypeRegistry


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
        "evt.replay.>",
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
SLO_SLI = BucketSpec(
    name="slo-sli",
    description=(
        "What the slo-engine measures budgets from, over whole SLO periods (longer than the streams keep facts): "
        "each WebApp's availability changes and rollouts, and the chaos runs and incidents budget is attributed to."
    ),
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
POLICY_GATE = BucketSpec(
    name="policy-gate",
    description="When a policy-gate was last alive, per cluster (a gate coming back audits what was admitted "
    "while none was) and per replica (whose entries in the policies' status stay).",
)
SLACK_THREADS = BucketSpec(
    name="incident-slack",
    description="Each incident's Slack channel and card message, and what was posted there once.",
    history=5,
)
BUCKETS: tuple[BucketSpec, ...] = (SLO_BUDGETS, SLO_SLI, INCIDENTS, SLACK_THREADS, CHAOS_RUNS, POLICY_GATE)


# --- event types, commands, endpoints -------------------------------------------------------------------------------

EVENT_TYPES: tuple[EventSpec, ...] = (
    *K8S_EVENT_TYPES,
    *RECONCILE_EVENT_TYPES,
    *SLO_EVENT_TYPES,
    *POLICY_EVENT_TYPES,
    *CHAOS_EVENT_TYPES,
    *INCIDENT_EVENT_TYPES,
    *REPLAY_EVENT_TYPES,
)
COMMAND_TYPES: tuple[EventSpec, ...] = CHAOS_COMMANDS
ENDPOINTS: tuple[EndpointSpec, ...] = (POLICY_CHECK, SLO_STATUS, *INCIDENT_ENDPOINTS)

REGISTRY = TypeRegistry((*EVENT_TYPES, *COMMAND_TYPES))


# --- consumers -----------------------------------------------------------------------------------------------------
# Each service declares its durables here as its domain logic lands; tests and benchmarks build their own specs.

SLO_ENGINE_FACTS = ConsumerSpec(
    durable="slo-engine-facts",
    stream=K8S_EVENTS.name,
    filter_subjects=("evt.k8s.*.*.WebApp.*", "evt.k8s.*.*.Deployment.*"),
    description="WebApp and Deployment facts: the availability of WebApps, for their SLOs' budgets.",
)
SLO_ENGINE_CAUSES = ConsumerSpec(
    durable="slo-engine-causes",
    stream=PLATFORM_EVENTS.name,
    filter_subjects=(
        "evt.reconcile.>",
        "evt.chaos.*.*.started",
        "evt.chaos.*.*.completed",
        "evt.chaos.*.*.aborted",
        "evt.incident.>",
    ),
    description="Rollouts, chaos runs and incidents: what budget consumption is attributed to.",
)
INCIDENT_SIGNALS = ConsumerSpec(
    durable="incident-bot-signals",
    stream=PLATFORM_EVENTS.name,
    filter_subjects=(
        "evt.slo.*.*.page_burn_firing",
        "evt.slo.*.*.page_burn_resolved",
        "evt.slo.*.*.ticket_burn_firing",
        "evt.slo.*.*.ticket_burn_resolved",
        "evt.reconcile.*.*.degraded",
        "evt.reconcile.*.*.reconciled",  # a degraded WebApp's recovery
        "evt.chaos.*.*.aborted",
        "evt.policy.*.*.allowed",  # hotfix overrides are allowed (or warned) decisions with an override reason
        "evt.policy.*.*.warned",
    ),
    description="The incident-bot's detection: burn tiers, degraded WebApps, aborted chaos runs, hotfix overrides.",
)
SLACK_CARDS = ConsumerSpec(
    durable="incident-bot-slack",
    stream=PLATFORM_EVENTS.name,
    filter_subjects=("evt.incident.>",),
    description="Incident transitions and escalations shown in Slack: each incident's channel and card.",
)

CONSUMERS: tuple[ConsumerSpec, ...] = (SLO_ENGINE_FACTS, SLO_ENGINE_CAUSES, INCIDENT_SIGNALS, SLACK_CARDS)


@dataclass(frozen=True)
class Catalogue:
    streams: tuple[StreamSpec, ...] = STREAMS
    buckets: tuple[BucketSpec, ...] = BUCKETS
    event_types: tuple[EventSpec, ...] = EVENT_TYPES
    commands: tuple[EventSpec, ...] = COMMAND_TYPES
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
