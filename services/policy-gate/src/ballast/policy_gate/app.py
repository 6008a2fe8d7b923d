"""Wiring of the policy-gate service: its settings, the bus check, the admission webhook, the error-budget state and,
with the cluster watched, Namespaces, ConstraintTemplates and constraints, the sync inventory and the audit."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Self, cast

from pydantic import DirectoryPath, Field, FilePath, field_validator, model_validator
from pydantic_settings import NoDecode

from ballast.bus import Bus
from ballast.events.catalogue import POLICY_GATE
from ballast.events.contracts.policy import POLICY_CHECK, PolicyCheckRequest
from ballast.kube import ControllerMetrics
from ballast.kube.client import api_client
from ballast.kube.pacing import pause, until_any
from ballast.kube.recorder import EventRecorder
from ballast.policy.exclusions import Exclusions
from ballast.policy_gate.admission import admission_routes
from ballast.policy_gate.audit import Alive, Auditor, Heartbeat
from ballast.policy_gate.cluster import Cluster
from ballast.policy_gate.gate import Gate
from ballast.policy_gate.gatekeeper_config import ClusterConfig, config_location
from ballast.policy_gate.pod_status import Live, Replicas
from ballast.policy_gate.sources import ClusterPolicies
from ballast.policy_gate.sync import Inventory, parse_sync_kinds
from ballast.policy_gate.violation_events import REPORTING_CONTROLLER, ViolationEvents
from ballast.runtime import PORTS, HttpsSettings, ServiceApp
from ballast.runtime.leases import LeaseSettings

NAME = "policy-gate"

log = logging.getLogger(__name__)


class PolicyGateSettings(HttpsSettings, LeaseSettings):
    http_port: int = Field(default=PORTS[NAME].health, ge=0, le=65535)
    https_port: int = Field(
        default=cast(int, PORTS[NAME].webhook),  # the gate's entry there has one
        ge=0,
        le=65535,
        description="the admission webhook; 0 picks a free port",
    )
    opa_binary: FilePath | None = Field(default=None, description="the opa the gate runs itself on 127.0.0.1")
    opa_url: str | None = Field(default=None, pattern=r"^https?://", description="an OPA run beside the gate")
    opa_split_at: int | None = Field(
        default=None,
        ge=2,
        description="from this many checks a decision goes to OPA as two requests at once; unset: one request",
    )
    policy_dir: DirectoryPath | None = Field(
        default=None,
        description="ConstraintTemplates, constraints, ExpansionTemplates and Gatekeeper Configs (YAML/JSON)",
    )
    watch_cluster: bool = Field(
        default=False,
        description="read Namespaces, ConstraintTemplates, constraints and sync kinds from the cluster, and audit it",
    )
    kubeconfig: str | None = Field(default=None, description="path; unset: KUBECONFIG, then in-cluster config")
    sync_kinds: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="comma-separated apiVersion/Kind kept in data.inventory, e.g. networking.k8s.io/v1/Ingress",
    )
    audit_interval: float = Field(default=60.0, ge=0, description="seconds between audits; 0: no periodic audit")
    audit_chunk_size: int = Field(default=500, ge=1, le=10000, description="objects per list request")
    constraint_violations_limit: int = Field(default=20, ge=0, le=500, description="violations kept per constraint")
    lease_name: str = "ballast-policy-gate-audit"
    gatekeeper_config: str = Field(
        default="gatekeeper-system/config",
        description="namespace/name of the Gatekeeper Config read from the cluster (with WATCH_CLUSTER; needs "
        "Gatekeeper's Config CRD); empty: none",
    )
    emit_admission_events: bool = Field(
        default=False,
        description="a Kubernetes Event per admission violation (FailedAdmission, WarningAdmission, DryrunViolation), "
        "as Gatekeeper's --emit-admission-events; needs WATCH_CLUSTER",
    )
    emit_audit_events: bool = Field(
        default=False,
        description="a Kubernetes Event per violation the audit finds (AuditViolation), as Gatekeeper's "
        "--emit-audit-events; needs WATCH_CLUSTER",
    )
    events_namespace: str | None = Field(
        default=None, description="where those Events are written; unset: LEASE_NAMESPACE (the gate's own)"
    )
    events_involved_namespace: bool = Field(
        default=False, description="write those Events in the namespace of the object they are about instead"
    )
    status_repair_interval: float = Field(
        default=30.0,
        gt=0,
        description="seconds between the leader's passes dropping gone replicas' byPod entries, and each replica's "
        "looks for its own gone missing",
    )

    @field_validator("sync_kinds", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return tuple(k.strip() for k in value.split(",") if k.strip()) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_opa(self) -> Self:
        if (self.opa_binary is None) == (self.opa_url is None):
            raise ValueError("set exactly one of BALLAST_OPA_BINARY (run OPA here) and BALLAST_OPA_URL (use that OPA)")
        parse_sync_kinds(self.sync_kinds)  # a malformed entry stops start-up naming it
        config_location(self.gatekeeper_config)
        if self.sync_kinds and not self.watch_cluster:
            raise ValueError("BALLAST_SYNC_KINDS needs BALLAST_WATCH_CLUSTER=true")
        if (self.emit_admission_events or self.emit_audit_events) and not self.watch_cluster:
            raise ValueError(
                "BALLAST_EMIT_ADMISSION_EVENTS and BALLAST_EMIT_AUDIT_EVENTS need BALLAST_WATCH_CLUSTER=true "
                "(the gate writes Events through the Kubernetes API)"
            )
        return self

    @property
    def emits_events(self) -> bool:
        return self.emit_admission_events or self.emit_audit_events


class ClusterParts:
    """What the gate runs against the cluster, made once the gate is open (they feed its engine)."""

    def __init__(self, settings: PolicyGateSettings, gate: Gate, metrics: ControllerMetrics, live: Live) -> None:
        assert gate.cluster is not None
        self.cluster = gate.cluster
        self.violation_events: ViolationEvents | None = None
        if settings.emits_events:
            recorder = EventRecorder(gate.cluster.api, controller=REPORTING_CONTROLLER, instance=settings.identity)
            namespace = settings.events_namespace or settings.lease_namespace
            involved = settings.events_involved_namespace
            self.violation_events = ViolationEvents(recorder, namespace, involved_namespace=involved)
            if settings.emit_admission_events:
                gate.violation_events = self.violation_events
        self.policies = ClusterPolicies(
            gate.cluster.api, gate.engine, metrics, settings.identity, live, settings.status_repair_interval
        )
        self._sync_kinds = [*parse_sync_kinds(settings.sync_kinds), *gate.sync_kinds]  # the settings' and files'
        self.inventory = Inventory(gate.cluster, gate.engine, self._sync_kinds, lambda: gate.exclusions)
        self.auditor = Auditor(
            gate.cluster,
            gate.engine,
            gate.decisions.publisher,
            settings.cluster,
            chunk_size=settings.audit_chunk_size,
            violations_limit=settings.constraint_violations_limit,
            exclusions=lambda: gate.exclusions,
            events=self.violation_events if settings.emit_audit_events else None,
        )
        location = config_location(settings.gatekeeper_config)
        self.config = None if location is None else ClusterConfig(gate.cluster.api, *location, self._config_changed)
        self._gate = gate

    def _config_changed(self, exclusions: Exclusions, kinds: list[tuple[str, str]]) -> None:
        self._gate.set_cluster_exclusions(exclusions)
        self.inventory.exclusions_changed()
        self.inventory.set_kinds([*self._sync_kinds, *kinds])

    def readiness(self) -> str | None:
        if not self.cluster.namespaces.synced.is_set():
            return "Namespaces not listed yet"
        if self.config is not None and not self.config.synced.is_set():
            return f"Gatekeeper Config {self.config.key} not read yet"
        return self.policies.readiness() or self.inventory.readiness()

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            if self.violation_events is not None:
                tasks.create_task(self.violation_events.recorder.run(stop))
            tasks.create_task(self.cluster.namespaces.run(stop))
            tasks.create_task(self.policies.run(stop))
            if self.config is not None:
                tasks.create_task(self.config.run(stop))
                # The inventory starts with the Config's sync kinds, not without them and then again.
                await until_any(self.config.synced, stop)
            tasks.create_task(self.inventory.run(stop))


def build(settings: PolicyGateSettings) -> ServiceApp:
    app = ServiceApp(NAME, settings)
    controller_metrics = ControllerMetrics(app.registry)
    api = None
    if settings.watch_cluster:

        async def open_api(_: Bus) -> Any:
            return await api_client(settings.kubeconfig)

        async def close_api(client: Any) -> None:
            await client.close()

        api = app.lifespan("kubernetes", open_api, close_api)

    async def open_gate(bus: Bus) -> Gate:
        opened = await Gate.open(
            bus,
            cluster=settings.cluster,
            opa_binary=settings.opa_binary,
            opa_url=settings.opa_url,
            policy_dir=settings.policy_dir,
            wait=settings.connect_wait,
            cluster_view=Cluster(api.value) if api is not None else None,
            split_at=settings.opa_split_at,
        )
        return opened  # what it loaded is frozen out of the collector's way with the rest of start-up (ServiceApp)

    gate = app.lifespan("gate", open_gate, Gate.close)
    app.readiness("opa", lambda: gate.value.readiness() if gate.is_open else None)

    async def check(request: Any) -> Any:
        return await gate.value.check(cast(PolicyCheckRequest, request))

    app.serve(POLICY_CHECK, check)
    app.https(admission_routes(lambda: gate.value))
    app.background(lambda bus, stop: gate.value.supervise(bus, stop))
    app.background(lambda bus, stop: gate.value.freezes.follow(bus, settings.cluster, stop))
    if api is None:
        return app

    async def open_replicas(bus: Bus) -> Replicas:
        return Replicas(await bus.kv(POLICY_GATE, Alive), settings.cluster, settings.identity)

    replicas = app.lifespan("replicas", open_replicas)

    async def open_parts(_: Bus) -> ClusterParts:
        return ClusterParts(settings, gate.value, controller_metrics, lambda: replicas.value.live())

    async def open_heartbeat(bus: Bus) -> Heartbeat:
        return Heartbeat(await bus.kv(POLICY_GATE, Alive), settings.cluster, settings.identity)

    parts = app.lifespan("cluster", open_parts)
    heartbeat = app.lifespan("heartbeat", open_heartbeat)
    app.readiness("cluster", lambda: parts.value.readiness() if parts.is_open else None)
    app.background(lambda _, stop: parts.value.run(stop))
    app.background(lambda _, stop: heartbeat.value.run(stop))
    app.background(lambda _, stop: replicas.value.follow(stop))

    async def prune_gone(lost: asyncio.Event) -> None:
        """The leader drops the status entries of replicas gone, and their long-silent heartbeats."""
        while not lost.is_set():
            try:
                await parts.value.policies.prune_gone()
                await replicas.value.forget_gone()
            except Exception:  # the API server or NATS away: the next pass tries again
                log.exception("dropping the status entries of gone replicas failed")
            await pause(lost, settings.status_repair_interval)

    async def audit(_: Bus, lost: asyncio.Event) -> None:
        while parts.value.readiness() is not None:  # an audit before the constraints are loaded would find nothing
            await pause(lost, 0.2)
            if lost.is_set():
                return
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(prune_gone(lost))
            await parts.value.auditor.run(lost, interval=settings.audit_interval, heartbeat=heartbeat.value)

    app.lead(lambda: settings.elector(api.value), audit)
    return app
