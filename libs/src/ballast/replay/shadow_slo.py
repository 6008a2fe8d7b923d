"""Alert backtesting: the tier alerts a candidate SLO (a new objective, or a new window set) would have fired over a
recorded window, compared with the ones the slo-engine did fire.

The SLI comes from the recorded cluster facts, as the slo-engine computes a WebApp's availability: up while ready
replicas meet the desired ones, the latest fact (of the WebApp, or of the Deployment it owns) deciding, time before
the first fact unknown and counted neither good nor bad. SLIs measured by Prometheus queries are not on the bus and
cannot be backtested from it. The candidate is evaluated with the library's evaluator at every `step` across the
window (a rule evaluation interval), each transition dated by the step it was seen in. What happened is the recorded
`evt.slo` burn alerts of the same SLO. Per tier, a candidate firing that overlaps a recorded one is the same alert
(earlier or later by the difference of their starts, when more than a step apart); one without a counterpart would
have fired, a recorded one without a counterpart would have been missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ballast.events.contracts.k8s import ObservedObject
from ballast.events.contracts.slo import AlertState, BurnAlert, BurnTier
from ballast.slo import AlertWindows, ServiceLevelObjective, WebAppAvailabilitySli
from ballast.slo.durations import format_duration
from ballast.slo.evaluation import BudgetState, Measurement, evaluate
from ballast.slo.periods import period_at
from ballast.slo.webapp_availability import replicas_up

_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


class NotBacktestable(ValueError):
    """A candidate whose SLI is not computed from the facts on the bus."""


@dataclass
class Availability:
    """One WebApp's up/down changes, oldest first: each holds from its time until the next."""

    changes: list[tuple[datetime, bool]] = field(default_factory=list)
    last_fact: datetime | None = None
    facts: int = 0

    def observe(self, at: datetime, fact: ObservedObject) -> None:
        up = replicas_up(fact)
        if up is None:
            return  # says nothing about replicas
        self.facts += 1
        if self.last_fact is not None and at < self.last_fact:
            return  # stale: a later fact decided already
        self.last_fact = at
        if not self.changes or self.changes[-1][1] != up:
            self.changes.append((at, up))

    def error_ratio(self, start: datetime, end: datetime) -> float:
        """The share of the observed part of [start, end) the WebApp was down."""
        observed = down = timedelta(0)
        for index, (since, up) in enumerate(self.changes):
            until = self.changes[index + 1][0] if index + 1 < len(self.changes) else end
            overlap = min(until, end) - max(since, start)
            if overlap > timedelta(0):
                observed += overlap
                if not up:
                    down += overlap
        return down / observed if observed > timedelta(0) else 0.0


@dataclass(frozen=True)
class Firing:
    tier: BurnTier
    start: datetime | None  # None: firing before the window began
    end: datetime | None  # None: still firing when it ended

    def overlaps(self, other: Firing) -> bool:
        return max(self.since, other.since) <= min(self.until, other.until)

    @property
    def since(self) -> datetime:
        return self.start or _EARLIEST

    @property
    def until(self) -> datetime:
        return self.end or _LATEST

    def as_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier.value,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }

    def text(self) -> str:
        start = self.start.isoformat() if self.start else "(before the window)"
        return f"{start} .. {self.end.isoformat() if self.end else '(still firing)'}"


def firings(transitions: Iterable[tuple[BurnTier, AlertState, datetime]]) -> list[Firing]:
    """Firing intervals from (tier, firing|resolved, since) transitions in time order."""
    open_since: dict[BurnTier, datetime | None] = {}
    found: list[Firing] = []
    for tier, state, since in transitions:
        if state is AlertState.FIRING:
            if tier not in open_since:
                open_since[tier] = since
        else:
            found.append(Firing(tier, open_since.pop(tier, None), since))
    found.extend(Firing(tier, start, None) for tier, start in open_since.items())
    return sorted(found, key=lambda f: (f.tier.value, f.since))


@dataclass(frozen=True)
class Candidate:
    slo: ServiceLevelObjective
    namespace: str
    cluster: str
    windows: AlertWindows

    @property
    def webapp(self) -> tuple[str, str]:
        sli = self.slo.sli
        if not isinstance(sli, WebAppAvailabilitySli):
            raise NotBacktestable(
                f"SLO {self.namespace}/{self.slo.name}: a {sli.kind} SLI is measured by Prometheus, not from the "
                "facts on the bus; only webapp_availability SLIs can be backtested from recorded events"
            )
        return (sli.namespace, sli.webapp)


def backtest(
    candidate: Candidate, availability: Availability, start: datetime, end: datetime, step: timedelta
) -> list[Firing]:
    """The candidate's tier transitions at every step from `start` to `end` (both included), as firing intervals."""
    state: BudgetState | None = None
    transitions: list[tuple[BurnTier, AlertState, datetime]] = []
    windows = candidate.windows.windows()
    at = start
    while at <= end:
        period = period_at(candidate.slo.window, at)
        measurement = Measurement(
            at=at,
            windows={w: availability.error_ratio(at - w, at) for w in windows},
            period=availability.error_ratio(period.start, at),
        )
        evaluation = evaluate(
            candidate.slo, candidate.namespace, candidate.cluster, candidate.windows, measurement, state
        )
        state = evaluation.state
        for transition in evaluation.transitions:
            if isinstance(transition.payload, BurnAlert):
                transitions.append((transition.payload.tier, transition.payload.state, transition.payload.since))
        at += step
    return firings(transitions)


@dataclass(frozen=True)
class Matched:
    recorded: Firing
    candidate: Firing
    start_shift: timedelta | None  # candidate start - recorded start; None when either began before the window


@dataclass
class SloDiff:
    slo: str
    objective: float
    windows: AlertWindows
    start: datetime
    end: datetime
    step: timedelta
    facts: int
    recorded: list[Firing]
    candidate: list[Firing]
    same: list[Matched] = field(default_factory=list)
    shifted: list[Matched] = field(default_factory=list)
    would_fire: list[Firing] = field(default_factory=list)
    would_miss: list[Firing] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        def matched(m: Matched) -> dict[str, Any]:
            return {
                "tier": m.recorded.tier.value,
                "recorded": m.recorded.as_json(),
                "candidate": m.candidate.as_json(),
                "start_shift_seconds": m.start_shift.total_seconds() if m.start_shift is not None else None,
            }

        return {
            "slo": self.slo,
            "objective": self.objective,
            "windows": {
                tier.value: [
                    {
                        "short": format_duration(c.short_window),
                        "long": format_duration(c.long_window),
                        "budget_percent": c.error_budget_percent,
                    }
                    for c in (self.windows.tier(tier).quick, self.windows.tier(tier).slow)
                ]
                for tier in BurnTier
            },
            "evaluated": {
                "from": self.start.isoformat(),
                "to": self.end.isoformat(),
                "step": format_duration(self.step),
            },
            "facts": self.facts,
            "recorded": [f.as_json() for f in self.recorded],
            "candidate": [f.as_json() for f in self.candidate],
            "same": [matched(m) for m in self.same],
            "shifted": [matched(m) for m in self.shifted],
            "would_fire": [f.as_json() for f in self.would_fire],
            "would_miss": [f.as_json() for f in self.would_miss],
        }

    def text(self) -> list[str]:
        lines = [
            f"SLO {self.slo} (objective {self.objective:g}%): {self.facts} facts, evaluated every "
            f"{format_duration(self.step)} from {self.start.isoformat()} to {self.end.isoformat()}",
            f"  recorded alerts {len(self.recorded)}, candidate alerts {len(self.candidate)}: {len(self.same)} same, "
            f"{len(self.shifted)} shifted, {len(self.would_fire)} would fire, {len(self.would_miss)} would be missed",
        ]
        for m in self.shifted:
            assert m.start_shift is not None
            direction = "later" if m.start_shift > timedelta(0) else "earlier"
            lines.append(
                f"  {m.recorded.tier.value}: fired {format_duration(abs(m.start_shift))} {direction}: "
                f"{m.candidate.text()} (recorded {m.recorded.text()})"
            )
        lines.extend(f"  {f.tier.value}: would fire {f.text()}" for f in self.would_fire)
        lines.extend(f"  {f.tier.value}: would be missed {f.text()}" for f in self.would_miss)
        return lines


def compare(
    candidate: Candidate,
    recorded: Sequence[Firing],
    backtested: Sequence[Firing],
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
    facts: int,
) -> SloDiff:
    result = SloDiff(
        f"{candidate.namespace}/{candidate.slo.name}",
        candidate.slo.objective,
        candidate.windows,
        start,
        end,
        step,
        facts,
        list(recorded),
        list(backtested),
    )
    unmatched = list(recorded)
    for firing in backtested:
        partner = next((r for r in unmatched if r.tier is firing.tier and r.overlaps(firing)), None)
        if partner is None:
            result.would_fire.append(firing)
            continue
        unmatched.remove(partner)
        shift = firing.start - partner.start if firing.start and partner.start else None
        pair = Matched(partner, firing, shift)
        (result.shifted if shift is not None and abs(shift) > step else result.same).append(pair)
    result.would_miss.extend(unmatched)
    return result
