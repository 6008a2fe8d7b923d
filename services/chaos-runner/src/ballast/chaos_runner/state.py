"""What the runners share in the `chaos-runs` bucket, so that any replica can stop, revert or refuse a run.

Keys (one bucket, one value type told apart by `kind`):
  run.<run_id>    a run: its owner and heartbeat, and every fault it recorded BEFORE applying it (with its expiry)
  stop.<run_id>   a request to abort one run (a stop command, a burn event, a hold): the owner reacts to it
  control         the kill switch
  hold.<digest>   chaos held against a namespace and/or service (a pause command, an open incident)

Only a run's owner writes its `run.` key while it lives (compare-and-set on the revision); another runner takes the
key over (also by compare-and-set) to revert the faults of a run whose owner is gone.
"""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel

from ballast.events.contracts.chaos import (
    AbortReason,
    ChaosTarget,
    ExperimentRef,
    FaultEngine,
    FaultKind,
)
from ballast.events.contracts.slo import BurnTier

CONTROL_KEY = "control"


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FaultState(enum.StrEnum):
    RECORDED = "recorded"  # written before it is applied: a runner dying now leaves something to check
    APPLIED = "applied"
    REVERTED = "reverted"  # reverted and verified
    REVERT_FAILED = "revert_failed"


class Touched(Record):
    """An object a fault changed or removed."""

    kind: Literal["Pod", "Node", "Deployment", "ChaosEngine"]
    namespace: str | None = None
    name: str
    uid: str = ""


class FaultRecord(Record):
    sequence: int = Field(ge=1)
    kind: FaultKind
    objects: tuple[Touched, ...]
    undo: dict[str, int] = Field(default_factory=dict, description="what reverting restores, e.g. replicas")
    expires_at: AwareDatetime
    state: FaultState = FaultState.RECORDED
    detail: str = ""


class RunPhase(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"


class RunRecord(Record):
    kind: Literal["run"] = "run"
    run_id: str
    experiment: ExperimentRef
    owner: str
    heartbeat_at: AwareDatetime
    started_at: AwareDatetime
    phase: RunPhase = RunPhase.RUNNING
    target: ChaosTarget
    service: str
    fault: FaultKind
    engine: FaultEngine = FaultEngine.NATIVE
    dry_run: bool = False
    abort_on_tiers: tuple[BurnTier, ...] = (BurnTier.PAGE,)
    abort_budget_below: float | None = Field(default=None, description="fraction of the budget left")
    faults: tuple[FaultRecord, ...] = ()
    litmus_engine: str | None = Field(default=None, description="the ChaosEngine's name, for the Litmus engine")
    outcome: str | None = None

    def with_fault(self, fault: FaultRecord) -> RunRecord:
        others = tuple(f for f in self.faults if f.sequence != fault.sequence)
        return self.model_copy(update={"faults": tuple(sorted((*others, fault), key=lambda f: f.sequence))})

    @property
    def open_faults(self) -> tuple[FaultRecord, ...]:
        return tuple(f for f in self.faults if f.state in (FaultState.RECORDED, FaultState.APPLIED))


class StopRequest(Record):
    kind: Literal["stop"] = "stop"
    reason: AbortReason
    detail: str
    at: AwareDatetime


class Control(Record):
    kind: Literal["control"] = "control"
    kill_switch: bool
    reason: str
    by: str
    at: AwareDatetime


class HoldSource(enum.StrEnum):
    PAUSE = "pause"  # a cmd.chaos.pause
    INCIDENT = "incident"  # an incident open for the service
    BURN = "burn"  # a burn tier firing for one of the service's SLOs
    BUDGET = "budget"  # one of the service's SLOs has its budget exhausted


class Hold(Record):
    """Chaos held against a scope until the hold is deleted (a resume, the incident resolved, the tier resolved, the
    budget recovered)."""

    kind: Literal["hold"] = "hold"
    source: HoldSource
    namespace: str | None = None
    service: str | None = None
    tier: BurnTier | None = Field(default=None, description="a burn hold: only runs aborting on this tier")
    abort_reason: AbortReason
    reason: str
    by: str
    at: AwareDatetime

    def covers(self, namespace: str, service: str) -> bool:
        return (self.namespace in (None, namespace)) and (self.service in (None, service))


class ChaosState(RootModel[Annotated[RunRecord | StopRequest | Control | Hold, Field(discriminator="kind")]]):
    """The bucket's value: one of the records above."""


def run_key(run_id: str) -> str:
    return f"run.{run_id}"


def stop_key(run_id: str) -> str:
    return f"stop.{run_id}"


def hold_key(source: HoldSource, namespace: str | None, service: str | None, detail: str = "") -> str:
    """One key per source and scope (and SLO and tier for a burn): an incident's resolution lifts its own hold, not
    a pause someone else set on the same service."""
    scope = f"{source}/{namespace or '*'}/{service or '*'}/{detail}"
    return f"hold.{hashlib.sha256(scope.encode()).hexdigest()[:16]}"


def run_id_for(experiment_uid: str, token: str) -> str:
    """A run's id: the experiment's uid and a token of what asked for it (a request id, a schedule's due time),
    hashed to the characters a key allows; the same request gives the same run."""
    return f"{experiment_uid}-{hashlib.sha256(token.encode()).hexdigest()[:12]}"


def stale(record: RunRecord, now: datetime, orphan_after: float) -> bool:
    """Whether the owner stopped beating long enough ago to count as gone."""
    return (now - record.heartbeat_at).total_seconds() > orphan_after
