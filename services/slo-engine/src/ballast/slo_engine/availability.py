"""The availability SLI of WebApps, from the cluster facts on the bus (`evt.k8s`, ObservedObject).

A WebApp is up while its ready replicas meet the desired ones (a WebApp scaled to zero is up: nothing is missing),
down while they fall short or its Deployment is gone, and unknown before its first fact and after it is deleted:
unknown time is neither good nor bad. The latest fact decides, whether it came from the WebApp or from the Deployment
it owns; a fact handled after later ones (concurrent handlers, replicas, a redelivery) is placed at its own time.

A `WebAppRecord` is what the engine keeps per WebApp in the `slo-sli` bucket: its up/down changes (exact times, not
samples: a WebApp up for a month is one change) and the generations it rolled out, so that budgets are computed over
the whole SLO period whatever the K8S_EVENTS stream still holds, and survive restarts and failover.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ballast.events.contracts.k8s import ObservedObject
from ballast.slo.intervals import Interval, normalise
from ballast.slo.webapp_availability import replicas_up

# A record is one KV value (the server's default payload limit is 1 MiB; a change is ~60 bytes of JSON). Past this
# many settled changes the oldest are dropped, and the record counts them (`truncated`).
MAX_CHANGES = 10_000
# Facts kept as they came: at least the facts consumer's max_ack_pending (256), the most facts that can be handled
# between a fact's delivery and its handling, so none arrives later than this many facts after its successors.
RECENT_FACTS = 256


class Availability(enum.StrEnum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"  # deleted, or not observed yet


def availability_of(fact: ObservedObject, verb: str) -> Availability | None:
    """What a WebApp or Deployment fact says of the WebApp; None when it says nothing about replicas."""
    if verb == "deleted":
        # The WebApp gone: nothing to measure from then. Its Deployment gone: nothing serves until it is replaced.
        return Availability.UNKNOWN if fact.object.kind == "WebApp" else Availability.DOWN
    up = replicas_up(fact)
    if up is None:
        return None
    return Availability.UP if up else Availability.DOWN


class Change(BaseModel):
    """From `at` on (until the next change) the WebApp was `state`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: AwareDatetime
    state: Availability


class Rollout(BaseModel):
    """A generation of the WebApp first reconciled at `at`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: int
    at: AwareDatetime


class WebAppRecord(BaseModel):
    """One WebApp's availability history and rollouts, oldest first.

    The latest facts are kept as they came (`recent`, by time), older ones only as changes (`settled`): facts are
    handled concurrently, by several replicas, and a backlog spans hours, so a fact may be handled after later ones;
    within the last RECENT_FACTS it still lands where it belongs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str
    name: str
    settled: tuple[Change, ...] = Field(default=(), description="changes before the recent facts")
    recent: tuple[Change, ...] = Field(default=(), description="the latest facts, by time")
    rollouts: tuple[Rollout, ...] = ()
    truncated: int = Field(default=0, ge=0, description="changes dropped over MAX_CHANGES, ever")

    @property
    def changes(self) -> tuple[Change, ...]:
        """Every change of state, oldest first: from each one's time until the next, the WebApp was in its state."""
        merged = list(self.settled)
        for fact in self.recent:
            if not merged or merged[-1].state is not fact.state:
                merged.append(fact)
        return tuple(merged)

    @property
    def last_fact(self) -> datetime | None:
        """The time of the latest fact applied."""
        latest = self.recent or self.settled
        return latest[-1].at if latest else None

    def observe(self, at: datetime, state: Availability, keep_after: datetime) -> Self:
        """The record with the fact applied (itself when it was applied already, or came too late to place)."""
        return self.observe_all((Fact(at, state),), keep_after)

    def observe_all(self, facts: Iterable[Fact], keep_after: datetime) -> Self:
        """The record with the facts applied in turn, as `observe` would one after another, copied once (a burst of
        facts about one WebApp comes in one batch); itself when none changed it."""
        settled, recent = list(self.settled), list(self.recent)
        truncated = self.truncated
        changed = False
        for at, state, collected in facts:
            if collected and (recent or settled) and (recent or settled)[-1].state is Availability.UNKNOWN:
                continue  # the garbage collector removing a deleted WebApp's Deployment: nothing is down
            if settled and recent and at < recent[0].at:
                continue  # too late to place
            # `recent` is in time order: find the fact's place by bisection.
            place = bisect.bisect_right(recent, at, key=_at)
            same_time = place
            while same_time > 0 and recent[same_time - 1].at == at:
                same_time -= 1
                if recent[same_time].state is state:
                    break  # applied already
            else:
                recent.insert(place, Change(at=at, state=state))
                while len(recent) > RECENT_FACTS:
                    _settle(settled, recent.pop(0))
                settled, truncated = _trim(settled, recent, keep_after, truncated)
                changed = True
        if not changed:
            return self
        return self.model_copy(
            update={
                "settled": tuple(settled),
                "recent": tuple(recent),
                "rollouts": tuple(r for r in self.rollouts if r.at >= keep_after),
                "truncated": truncated,
            }
        )

    def rolled_out(self, generation: int, at: datetime, keep_after: datetime) -> Self:
        """The record with a rollout of `generation` at `at` (only its first report counts)."""
        if any(r.generation == generation for r in self.rollouts):
            return self
        rollouts = sorted((*self.rollouts, Rollout(generation=generation, at=at)), key=lambda r: r.at)
        recent = list(self.recent)
        settled, truncated = _trim(list(self.settled), recent, keep_after, self.truncated)
        return self.model_copy(
            update={
                "settled": tuple(settled),
                "recent": tuple(recent),
                "rollouts": tuple(r for r in rollouts if r.at >= keep_after),
                "truncated": truncated,
            }
        )

    def spans(self, start: datetime, end: datetime) -> tuple[list[Interval], list[Interval]]:
        """(observed, down) within [start, end): the state of the last change holds until `end`."""
        observed: list[Interval] = []
        down: list[Interval] = []
        changes = self.changes
        for index, change in enumerate(changes):
            until = changes[index + 1].at if index + 1 < len(changes) else end
            span = (max(change.at, start), min(until, end))
            if span[0] >= span[1] or change.state is Availability.UNKNOWN:
                continue
            observed.append(span)
            if change.state is Availability.DOWN:
                down.append(span)
        return normalise(observed), normalise(down)

    def error_ratio(self, start: datetime, end: datetime) -> float:
        """The share of the observed part of [start, end) the WebApp was down."""
        observed, down = self.spans(start, end)
        seen = sum((e - s for s, e in observed), timedelta(0))
        return sum((e - s for s, e in down), timedelta(0)) / seen if seen > timedelta(0) else 0.0

    def up_again(self, after: datetime) -> datetime | None:
        """The first moment at or after `after` the WebApp is up; None if it has not been up since."""
        changes = self.changes
        held = [c for c in changes if c.at <= after]
        if held and held[-1].state is Availability.UP:
            return after
        return next((c.at for c in changes if c.at > after and c.state is Availability.UP), None)


def _at(change: Change) -> datetime:
    return change.at


class Fact(NamedTuple):
    """What a cluster fact tells of a WebApp: its state from `at` on. `collected`: a deleted WebApp's Deployment
    removed by the garbage collector, which tells nothing once the WebApp's deletion is known."""

    at: datetime
    state: Availability
    collected: bool = False


def _trim(
    settled: list[Change], recent: list[Change], keep_after: datetime, truncated: int
) -> tuple[list[Change], int]:
    """Facts older than `keep_after` settled and settled changes before it dropped, keeping the one that held at
    `keep_after` (it says what the state was from there), and at most MAX_CHANGES of them (the others counted in
    `truncated`). `recent` is trimmed in place; the settled changes kept and the new count are returned."""
    while recent and recent[0].at <= keep_after:
        _settle(settled, recent.pop(0))
    first = 0
    while first + 1 < len(settled) and settled[first + 1].at <= keep_after:
        first += 1
    dropped = max(0, len(settled) - first - MAX_CHANGES)
    if first or dropped:
        settled = settled[first + dropped :]
    return settled, truncated + dropped


def _settle(settled: list[Change], fact: Change) -> None:
    if not settled or settled[-1].state is not fact.state:
        settled.append(fact)
