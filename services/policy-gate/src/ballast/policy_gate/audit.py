"""The audit: objects already in the cluster judged against the constraints, as Gatekeeper's audit does, without
its memory trouble (gatekeeper#780, #1279).

- Which objects: the kinds the constraints' `spec.match.kinds` name (Gatekeeper's `--audit-match-kind-only`), each
  listed in chunks of `chunk_size` (`limit`/`continue`), judged chunk by chunk; nothing holds a whole kind. Workloads
  are judged alone (their pods exist and are audited as pods). A constraint matching any kind (`*` or no kinds) is
  audited over the kinds the others name.
- Where the findings go: every violation is an `AuditViolation` on `evt.policy` (published per chunk); each
  constraint's status gets `auditTimestamp`, `totalViolations` and the first `violations_limit` violations
  (Gatekeeper's `--constraint-violations-limit`, 20 by default: a constraint object is limited to 1.5 MB by etcd).
  Constraints read from files have no object to write to: their findings are on the bus only.
- When: every `interval` seconds, under leadership (one replica audits). And at once, before the first periodic run,
  when the gate comes back from an outage: every replica writes a heartbeat to the `policy-gate` bucket, and a gate
  that finds the last one older than OUTAGE_AFTER audits the objects written since (`creationTimestamp` and each
  manager's `managedFields[].time`: any write through the API server moves one), the ones the webhook could not
  judge while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from ballast.bus.kv import KeyValue
from ballast.bus.publisher import Publisher
from ballast.events import Envelope, new_event
from ballast.events.contracts.common import ObjectRef
from ballast.events.contracts.policy import (
    AuditTrigger,
    AuditViolation,
    ConstraintResult,
    PolicyEvent,
    policy_event_type,
    policy_subject,
)
from ballast.kube import NotFound
from ballast.kube.pacing import pause
from ballast.kube.resource import Resource
from ballast.kube.rest import send_json
from ballast.policy import Constraint, PolicyEngine, Violation, review_object
from ballast.policy.constraints import API_GROUP as CONSTRAINTS_GROUP
from ballast.policy.crds import STORED_VERSION
from ballast.policy.exclusions import Exclusions
from ballast.policy_gate.cluster import Cluster
from ballast.policy_gate.violation_events import ViolationEvents

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 5.0  # seconds between a gate's "alive" marks
OUTAGE_AFTER = timedelta(seconds=3 * HEARTBEAT_INTERVAL)  # a longer silence was an outage


class Alive(BaseModel):
    """The `policy-gate` bucket's value under `alive.<cluster>` (any replica) and `replica.<cluster>.<id>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: AwareDatetime
    gate: str


def alive_key(cluster: str) -> str:
    return f"alive.{cluster}"


def replica_key(cluster: str, identity: str) -> str:
    """A replica's heartbeat key: its identity with what a key cannot hold as `_` (the value holds it whole)."""
    return f"replica.{cluster}.{_KEY_UNSAFE.sub('_', identity)}"


_KEY_UNSAFE = re.compile(r"[^-/_=.a-zA-Z0-9]|^\.|\.$|\.(?=\.)")


class Heartbeat:
    """Marks the gate alive every HEARTBEAT_INTERVAL; `last_before_start` is the mark found before the first one."""

    def __init__(self, kv: KeyValue[Alive], cluster: str, identity: str) -> None:
        self._kv = kv
        self._key = alive_key(cluster)
        self._replica_key = replica_key(cluster, identity)
        self._identity = identity
        self.last_before_start: datetime | None = None
        self.read = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        entry = await self._kv.get(self._key)
        self.last_before_start = entry.value.at if entry is not None and entry.value is not None else None
        self.read.set()
        while not stop.is_set():
            alive = Alive(at=datetime.now(UTC), gate=self._identity)
            try:
                await self._kv.put(self._key, alive)  # the cluster's gate: any replica (outages)
                await self._kv.put(self._replica_key, alive)  # this replica (whose `byPod` entries stay)
            except Exception as exc:  # NATS away: the next beat tries again
                log.warning("heartbeat not written: %s", exc)
            await pause(stop, HEARTBEAT_INTERVAL)
        # Stopping: this replica's entries in the policies' status go at the leader's next pass, not OUTAGE_AFTER on.
        with contextlib.suppress(Exception):
            await self._kv.delete(self._replica_key)

    def outage_since(self, now: datetime) -> datetime | None:
        """When the gate was last seen alive, if it was away long enough to count as an outage."""
        last = self.last_before_start
        return last if last is not None and now - last > OUTAGE_AFTER else None


def written_since(obj: dict[str, Any], since: datetime) -> bool:
    """Whether the object was created or written through the API server at or after `since` (second precision, as
    the API server records it: the second of `since` itself counts)."""
    metadata = obj.get("metadata") or {}
    floor = since.replace(microsecond=0)
    stamps = [metadata.get("creationTimestamp"), *(m.get("time") for m in metadata.get("managedFields") or [])]
    return any(_parse_time(s) >= floor for s in stamps if isinstance(s, str))


def _parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass
class _Findings:
    total: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AuditReport:
    trigger: AuditTrigger
    started_at: datetime
    objects: int
    violations: int
    by_constraint: dict[str, int]


class Auditor:
    def __init__(
        self,
        cluster: Cluster,
        engine: PolicyEngine,
        publisher: Publisher,
        cluster_name: str,
        *,
        chunk_size: int = 500,
        violations_limit: int = 20,
        exclusions: Callable[[], Exclusions] = Exclusions,
        events: ViolationEvents | None = None,
    ) -> None:
        self._exclusions = exclusions  # read at each audit: a Config in the cluster may change them
        self._violation_events = events  # Kubernetes Events for what it finds (BALLAST_EMIT_AUDIT_EVENTS)
        self._cluster = cluster
        self._engine = engine
        self._publisher = publisher
        self._cluster_name = cluster_name
        self._source = f"/clusters/{cluster_name}/policy-gate"
        self.chunk_size = chunk_size
        self.violations_limit = violations_limit
        self.last: AuditReport | None = None

    async def run(self, stop: asyncio.Event, *, interval: float, heartbeat: Heartbeat | None) -> None:
        """The outage audit if one is due, then the periodic one every `interval` seconds (none if 0), until `stop`."""
        if heartbeat is not None:
            await heartbeat.read.wait()
            since = heartbeat.outage_since(datetime.now(UTC))
            if since is not None:
                log.warning("the gate was away since %s: auditing what was written meanwhile", since.isoformat())
                await self._audit_logged(AuditTrigger.OUTAGE_GAP, since)
        while not stop.is_set() and interval > 0:
            await self._audit_logged(AuditTrigger.PERIODIC, None)
            await pause(stop, interval)
        await stop.wait()

    async def _audit_logged(self, trigger: AuditTrigger, since: datetime | None) -> None:
        try:
            report = await self.audit(trigger, since=since)
        except Exception:  # the API server or OPA away: the next run tries again
            log.exception("audit (%s) failed", trigger)
            return
        log.info(
            "audit done",
            extra={
                "trigger": str(trigger),
                "objects": report.objects,
                "violations": report.violations,
                "by_constraint": report.by_constraint,
            },
        )

    async def audit(self, trigger: AuditTrigger, *, since: datetime | None = None) -> AuditReport:
        """One run over every audited kind; `since` keeps only the objects written at or after it (and leaves the
        constraints' status to the periodic audit, which sees everything)."""
        started_at = datetime.now(UTC)
        constraints = [c for kind in self._engine.constraints.values() for c in kind.values()]
        findings = {c.key: _Findings() for c in constraints}
        exclusions = self._exclusions()
        objects = 0
        for resource in await self._audited_kinds(constraints):
            async for chunk in self._chunks(resource):
                if since is not None:
                    chunk = [o for o in chunk if written_since(o, since)]
                if exclusions.entries:  # the namespaces a Config leaves out of "audit"
                    chunk = [o for o in chunk if not exclusions.excludes("audit", o)]
                if not chunk:
                    continue
                objects += len(chunk)
                reviews = [
                    review_object(o, namespace=self._cluster.namespace((o.get("metadata") or {}).get("namespace")))
                    for o in chunk
                ]
                verdicts = await self._engine.review(reviews, expand=False)
                events = []
                for obj, violations in zip(chunk, verdicts, strict=True):
                    for violation in violations:
                        found = findings.setdefault(violation.constraint.key, _Findings())
                        found.total += 1
                        if len(found.kept) < self.violations_limit:
                            found.kept.append(_status_entry(obj, violation))
                        events.append(self._event(trigger, started_at, obj, violation))
                        if self._violation_events is not None:
                            self._violation_events.audit(obj, violation)
                if events:
                    await self._publisher.publish_all(events)
        if since is None:
            for constraint in constraints:
                await self._write_status(constraint, started_at, findings[constraint.key])
        report = AuditReport(
            trigger,
            started_at,
            objects,
            sum(f.total for f in findings.values()),
            {key: f.total for key, f in findings.items() if f.total},
        )
        self.last = report
        return report

    async def _audited_kinds(self, constraints: list[Constraint]) -> list[Resource]:
        named: set[tuple[str, str]] = set()
        for constraint in constraints:
            for groups, kinds in constraint.match.kinds:
                for group in groups or ("",):
                    for kind in kinds:
                        if group != "*" and kind != "*":
                            named.add((group, kind))
        resources = []
        for group, kind in sorted(named):
            try:
                resources.append(await self._cluster.preferred(group, kind))
            except LookupError as exc:
                log.info("not audited: %s", exc)
        return resources

    async def _chunks(self, resource: Resource) -> AsyncIterator[list[dict[str, Any]]]:
        token = ""
        while True:
            query = [("limit", str(self.chunk_size))] + ([("continue", token)] if token else [])
            body = await send_json(self._cluster.api, "GET", resource.collection(), query=query, timeout=60)
            items = body.get("items") or []
            for item in items:  # a list's items carry neither; the review shows them as the API server sends objects
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
            yield items
            token = (body.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    def _event(
        self, trigger: AuditTrigger, started_at: datetime, obj: dict[str, Any], violation: Violation
    ) -> tuple[str, Envelope[BaseModel]]:
        metadata = obj.get("metadata") or {}
        namespace = metadata.get("namespace") or None
        constraint = violation.constraint
        payload = AuditViolation(
            cluster=self._cluster_name,
            trigger=trigger,
            audit_started_at=started_at,
            constraint=ConstraintResult(
                kind=constraint.kind,
                name=constraint.name,
                enforcement_action=violation.enforcement_action,
                message=violation.message,
            ),
            object=ObjectRef(
                api_version=str(obj.get("apiVersion")),
                kind=str(obj.get("kind")),
                namespace=namespace,
                name=str(metadata.get("name")),
                uid=str(metadata.get("uid", "")),
            ),
            resource_version=str(metadata.get("resourceVersion", "")),
        )
        where = f"{namespace}/{metadata.get('name')}" if namespace else str(metadata.get("name"))
        event: Envelope[BaseModel] = new_event(
            policy_event_type(PolicyEvent.AUDIT_VIOLATION),
            self._source,
            payload,
            subject=f"{obj.get('kind')}/{where}",
            event_id=(
                f"{started_at.isoformat()}:{constraint.key}:{metadata.get('uid', '')}:{metadata.get('resourceVersion')}"
            ),
        )
        return policy_subject(self._cluster_name, namespace, PolicyEvent.AUDIT_VIOLATION), event

    async def _write_status(self, constraint: Constraint, started_at: datetime, found: _Findings) -> None:
        path = f"/apis/{CONSTRAINTS_GROUP}/{STORED_VERSION}/{constraint.kind.lower()}/{constraint.name}/status"
        body = {
            "status": {
                "auditTimestamp": started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "totalViolations": found.total,
                "violations": found.kept,
            }
        }
        with contextlib.suppress(NotFound):  # a constraint from the policy files: no object to write to
            await send_json(
                self._cluster.api,
                "PATCH",
                path,
                headers={"Content-Type": "application/merge-patch+json"},
                body=body,
            )


def _status_entry(obj: dict[str, Any], violation: Violation) -> dict[str, Any]:
    """One entry of `status.violations`, as Gatekeeper writes it."""
    metadata = obj.get("metadata") or {}
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    entry = {
        "enforcementAction": str(violation.enforcement_action),
        "group": group,
        "version": version,
        "kind": obj.get("kind"),
        "name": metadata.get("name"),
        "message": violation.message,
    }
    if metadata.get("namespace"):
        entry["namespace"] = metadata["namespace"]
    return entry
