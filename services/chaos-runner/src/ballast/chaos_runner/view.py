"""Every runner's picture of the `chaos-runs` bucket, kept current by one KV watch: the runs with their revisions,
the stop requests, the kill switch and the holds. Pure bookkeeping plus the questions asked of it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ballast.chaos_runner.state import (
    CONTROL_KEY,
    ChaosState,
    Control,
    Hold,
    RunPhase,
    RunRecord,
    StopRequest,
)
from ballast.events.contracts.chaos import AbortReason
from ballast.events.contracts.slo import BurnTier


@dataclass(frozen=True)
class Blocked:
    """Why a run may not go on (or start): the reason its abort event carries and what caused it."""

    reason: AbortReason
    detail: str


@dataclass
class ChaosView:
    runs: dict[str, tuple[int, RunRecord]] = field(default_factory=dict)  # run id → (revision, record)
    stops: dict[str, StopRequest] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    control: Control | None = None
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)

    def apply(self, key: str, revision: int, value: ChaosState | None) -> None:
        prefix, _, rest = key.partition(".")
        record = value.root if value is not None else None
        if key == CONTROL_KEY:
            self.control = record if isinstance(record, Control) else None
        elif prefix == "run":
            if isinstance(record, RunRecord):
                self.runs[rest] = (revision, record)
            else:
                self.runs.pop(rest, None)
        elif prefix == "stop":
            if isinstance(record, StopRequest):
                self.stops[rest] = record
            else:
                self.stops.pop(rest, None)
        elif prefix == "hold":
            if isinstance(record, Hold):
                self.holds[key] = record
            else:
                self.holds.pop(key, None)

    @property
    def kill_switch(self) -> Control | None:
        return self.control if self.control is not None and self.control.kill_switch else None

    def running(self) -> list[RunRecord]:
        return [record for _, record in self.runs.values() if record.phase is RunPhase.RUNNING]

    def blocked(self, run_id: str | None, namespace: str, service: str, tiers: tuple[BurnTier, ...]) -> Blocked | None:
        """What stops a run against (namespace, service) aborting on `tiers`: its own stop request, the kill
        switch, a hold over its target. None: it may go on."""
        if run_id is not None and (stop := self.stops.get(run_id)) is not None:
            return Blocked(stop.reason, stop.detail)
        if (control := self.kill_switch) is not None:
            return Blocked(AbortReason.KILL_SWITCH, f"kill switch engaged by {control.by}: {control.reason}")
        for hold in self.holds.values():
            if hold.covers(namespace, service) and (hold.tier is None or hold.tier in tiers):
                return Blocked(hold.abort_reason, hold.reason)
        return None
