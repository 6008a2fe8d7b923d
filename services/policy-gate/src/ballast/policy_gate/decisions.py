"""The decision log: every verdict of the gate as a `PolicyDecision` on `evt.policy.<cluster>.<ns>.<decision>`.

Recording costs the verdict nothing: the caller hands over how to build its events, and one background task builds
and publishes what has been recorded, in batches (one round of acknowledgements for all the decisions made meanwhile),
yielding to the event loop between events, so that requests arriving meanwhile are not held up by the log. `drain`
waits for what is still to be published, at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from ballast.bus.publisher import Publisher
from ballast.events import Envelope, new_event
from ballast.events.contracts.common import ManifestRef
from ballast.events.contracts.policy import (
    ERROR_BUDGET_FREEZE,
    ConstraintResult,
    Decision,
    DecisionSource,
    EnforcementAction,
    Operation,
    PolicyDecision,
    decision_event,
    policy_event_type,
    policy_subject,
)
from ballast.policy import Violation

log = logging.getLogger(__name__)

BATCH = 64  # decisions published in one round at most


def verdict(violations: Sequence[Violation], override_reason: str | None = None) -> Decision:
    """As `PolicyDecision` requires: a hotfix reason overrides error-budget freezes, never another denial."""
    actions = {v.enforcement_action for v in violations}
    if any(
        v.enforcement_action is EnforcementAction.DENY
        and (v.constraint.kind != ERROR_BUDGET_FREEZE or override_reason is None)
        for v in violations
    ):
        return Decision.DENIED
    if EnforcementAction.WARN in actions:
        return Decision.WARNED
    return Decision.ALLOWED


def constraint_results(violations: Sequence[Violation]) -> tuple[ConstraintResult, ...]:
    return tuple(
        ConstraintResult(
            kind=v.constraint.kind,
            name=v.constraint.name,
            enforcement_action=v.enforcement_action,
            message=v.message,
        )
        for v in violations
    )


class DecisionLog:
    def __init__(self, publisher: Publisher, cluster: str) -> None:
        self.cluster = cluster
        self.source = f"/clusters/{cluster}/policy-gate"
        self.publisher = publisher
        self._pending: deque[Callable[[], Sequence[tuple[str, Envelope[BaseModel]]]]] = deque()
        self._worker: asyncio.Task[None] | None = None

    def decision(
        self,
        *,
        source: DecisionSource,
        request_uid: str,
        operation: Operation,
        obj: ManifestRef,
        requested_by: str,
        violations: Sequence[Violation],
        latency_ms: float,
        override_reason: str | None = None,
        manifest: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> tuple[str, Envelope[BaseModel]]:
        """The event of one object's verdict and its subject."""
        payload = PolicyDecision(
            cluster=self.cluster,
            source=source,
            request_uid=request_uid,
            operation=operation,
            object=obj,
            requested_by=requested_by,
            decision=verdict(violations, override_reason),
            constraints=constraint_results(violations),
            override_reason=override_reason,
            manifest=manifest,
            latency_ms=latency_ms,
            at=at or _now(),
        )
        where = f"{obj.namespace}/{obj.name}" if obj.namespace else obj.name
        event: Envelope[BaseModel] = new_event(
            policy_event_type(decision_event(payload.decision)),
            self.source,
            payload,
            subject=f"{obj.kind}/{where}",
            event_id=f"{source}:{request_uid}:{obj.kind}/{obj.namespace or ''}/{obj.name}:{payload.decision}",
        )
        return policy_subject(self.cluster, obj.namespace, decision_event(payload.decision)), event

    def record(self, build: Callable[[], Sequence[tuple[str, Envelope[BaseModel]]]]) -> None:
        """Queues decisions: `build` makes their events (subject, event) when the log gets to them."""
        self._pending.append(build)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._publish_pending())

    async def _publish_pending(self) -> None:
        while self._pending:
            events: list[tuple[str, Envelope[BaseModel]]] = []
            while self._pending and len(events) < BATCH:
                build = self._pending.popleft()
                try:
                    events.extend(build())
                except Exception:  # a decision that cannot be logged must not stop the others
                    log.exception("decision log: a decision could not be made into an event")
                await asyncio.sleep(0)  # a request that came in meanwhile goes first
            try:
                await self.publisher.publish_all(events)
            except Exception:  # the verdict was given; a lost log entry must not become a failed check
                log.exception("decision log: %d decisions not published", len(events))

    async def drain(self) -> None:
        if self._worker is not None:
            await self._worker


def _now() -> datetime:
    return datetime.now(UTC)
