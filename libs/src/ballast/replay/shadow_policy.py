"""What a candidate policy set would have decided about the objects the policy-gate judged in a recorded window.

Each recorded decision (`evt.policy.*.*.allowed|denied|warned`, a `PolicyDecision` carrying the object as judged in
`manifest`) is judged again by a `PolicyEngine` loaded with the candidate ConstraintTemplates and constraints, on the
real OPA, as the gate reviews it (an apply as a CREATE, a delete with the object as the old object). The verdict
follows the contract's rule; an ErrorBudgetFreeze finding is not a template's and is kept as recorded. A decision
changes when its verdict or the set of constraints it violates does. Decisions recorded without the object cannot be
judged again and are counted apart. Nothing is published and nothing is applied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ballast.events.contracts.policy import (
    ConstraintResult,
    Decision,
    EnforcementAction,
    Operation,
    PolicyDecision,
)
from ballast.policy import PolicyEngine, Review, Violation, review_admission_request, review_object

BUDGET_FREEZE = "ErrorBudgetFreeze"  # the gate's own finding, from the error budget, not from a template


@dataclass(frozen=True)
class RecordedDecision:
    sequence: int  # in the recorded stream
    event_id: str
    decision: PolicyDecision


def verdict(results: Sequence[ConstraintResult], override_reason: str | None) -> Decision:
    """The decision the constraints make (the rule `PolicyDecision` checks): a hotfix's reason overrides the
    error-budget freeze only, never another policy's denial."""
    actions = {r.enforcement_action for r in results}
    denials = [r for r in results if r.enforcement_action is EnforcementAction.DENY]
    if any(r.kind != BUDGET_FREEZE or override_reason is None for r in denials):
        return Decision.DENIED
    if EnforcementAction.WARN in actions:
        return Decision.WARNED
    return Decision.ALLOWED


def review_of(decision: PolicyDecision) -> Review:
    manifest: dict[str, Any] = decision.manifest or {}
    if decision.operation is Operation.DELETE:
        return review_admission_request({"operation": "DELETE", "oldObject": manifest})
    operation = "CREATE" if decision.operation is Operation.APPLY else decision.operation.value.upper()
    return review_object(manifest, operation=operation)


def constraint_results(violations: Sequence[Violation]) -> tuple[ConstraintResult, ...]:
    return tuple(
        ConstraintResult(
            kind=v.constraint.kind, name=v.constraint.name, enforcement_action=v.enforcement_action, message=v.message
        )
        for v in violations
    )


def _key(result: ConstraintResult) -> tuple[str, str, str]:
    return (result.kind, result.name, result.enforcement_action.value)


@dataclass(frozen=True)
class ChangedDecision:
    sequence: int
    event_id: str
    at: datetime
    object: str  # Kind namespace/name
    operation: str
    requested_by: str
    recorded: Decision
    candidate: Decision
    added: tuple[ConstraintResult, ...]  # violated under the candidate only
    removed: tuple[ConstraintResult, ...]  # violated as recorded only

    def as_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "event_id": self.event_id,
            "at": self.at.isoformat(),
            "object": self.object,
            "operation": self.operation,
            "requested_by": self.requested_by,
            "recorded": self.recorded.value,
            "candidate": self.candidate.value,
            "added": [r.model_dump(mode="json") for r in self.added],
            "removed": [r.model_dump(mode="json") for r in self.removed],
        }


@dataclass
class PolicyDiff:
    decisions: int = 0
    not_recorded: list[str] = field(default_factory=list)  # event ids of decisions without the object
    unchanged: int = 0
    changed: list[ChangedDecision] = field(default_factory=list)

    @property
    def by_change(self) -> Counter[str]:
        return Counter(f"{c.recorded.value}->{c.candidate.value}" for c in self.changed)

    def as_json(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "judged_again": self.decisions - len(self.not_recorded),
            "not_recorded": len(self.not_recorded),
            "unchanged": self.unchanged,
            "changed": len(self.changed),
            "by_change": dict(sorted(self.by_change.items())),
            "changes": [c.as_json() for c in self.changed],
        }

    def text(self) -> list[str]:
        lines = [
            f"decisions: {self.decisions} recorded, {self.decisions - len(self.not_recorded)} judged again, "
            f"{self.unchanged} unchanged, {len(self.changed)} changed"
            + (f", {len(self.not_recorded)} without the object (not judged)" if self.not_recorded else "")
        ]
        for change, count in sorted(self.by_change.items()):
            lines.append(f"  {change}: {count}")
        for c in self.changed:
            lines.append(
                f"{c.at.isoformat()} {c.object} ({c.operation} by {c.requested_by}): "
                f"{c.recorded.value} -> {c.candidate.value}"
            )
            lines.extend(f"    + {r.kind}/{r.name} [{r.enforcement_action.value}] {r.message}" for r in c.added)
            lines.extend(f"    - {r.kind}/{r.name} [{r.enforcement_action.value}] {r.message}" for r in c.removed)
        return lines


async def diff(engine: PolicyEngine, recorded: AsyncIterator[RecordedDecision], *, batch: int = 64) -> PolicyDiff:
    """Judges every recorded decision again with `engine` (the candidate policies) and lists what changes."""
    found = PolicyDiff()
    pending: list[RecordedDecision] = []

    async def judge() -> None:
        verdicts = await engine.review([review_of(r.decision) for r in pending])
        for item, violations in zip(pending, verdicts, strict=True):
            _compare(found, item, violations)
        pending.clear()

    async for item in recorded:
        found.decisions += 1
        if item.decision.manifest is None:
            found.not_recorded.append(item.event_id)
            continue
        pending.append(item)
        if len(pending) >= batch:
            await judge()
    if pending:
        await judge()
    return found


def _compare(found: PolicyDiff, item: RecordedDecision, violations: Sequence[Violation]) -> None:
    recorded = item.decision
    kept = tuple(r for r in recorded.constraints if r.kind == BUDGET_FREEZE)
    candidate_results = (*constraint_results(violations), *kept)
    candidate = verdict(candidate_results, recorded.override_reason)
    before = {_key(r): r for r in recorded.constraints}
    after = {_key(r): r for r in candidate_results}
    if candidate is recorded.decision and before.keys() == after.keys():
        found.unchanged += 1
        return
    ref = recorded.object
    where = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    found.changed.append(
        ChangedDecision(
            sequence=item.sequence,
            event_id=item.event_id,
            at=recorded.at,
            object=f"{ref.kind} {where}",
            operation=recorded.operation.value,
            requested_by=recorded.requested_by,
            recorded=recorded.decision,
            candidate=candidate,
            added=tuple(r for k, r in after.items() if k not in before),
            removed=tuple(r for k, r in before.items() if k not in after),
        )
    )
