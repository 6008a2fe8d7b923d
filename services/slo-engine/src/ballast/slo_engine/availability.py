"""The availability SLI of WebApps, from the cluster facts on the bus (`evt.k8s`, ObservedObject).

A WebApp is up while its ready replicas meet the desired ones (a WebApp scaled to zero is up: nothing is missing).
Its error ratio over a window is the share of the window it was down, counted only over the time it has been
observed: before the first fact nothing is known, and unknown time is neither good nor bad. The latest fact decides,
whether it came from the WebApp or from the Deployment it owns; a fact older than the last change is stale and
dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ballast.events.contracts.k8s import ObservedObject
from ballast.slo.evaluation import Measurement


def is_available(fact: ObservedObject) -> bool | None:
    """Whether the fact shows the WebApp up; None when it says nothing about replicas."""
    if fact.replicas is None:
        return None
    return (fact.ready_replicas or 0) >= fact.replicas


def webapp_of(fact: ObservedObject) -> tuple[str, str] | None:
    """(namespace, name) of the WebApp a WebApp or Deployment fact is about; None for anything else."""
    if fact.object.kind == "WebApp":
        target = fact.object
    elif fact.object.kind == "Deployment" and fact.owner is not None and fact.owner.kind == "WebApp":
        target = fact.owner
    else:
        return None
    return (target.namespace or fact.object.namespace or "", target.name)


@dataclass
class AvailabilityHistory:
    """One WebApp's up/down changes, oldest first: each holds from its time until the next."""

    changes: list[tuple[datetime, bool]] = field(default_factory=list)
    last_fact: datetime | None = None

    def observe(self, at: datetime, available: bool) -> None:
        if self.last_fact is not None and at < self.last_fact:
            return  # stale: a later fact was applied already
        self.last_fact = at
        if not self.changes or self.changes[-1][1] != available:
            self.changes.append((at, available))

    def error_ratio(self, start: datetime, end: datetime) -> float:
        """The share of the observed part of [start, end) the WebApp was down."""
        observed = down = timedelta(0)
        for index, (since, available) in enumerate(self.changes):
            until = self.changes[index + 1][0] if index + 1 < len(self.changes) else end
            overlap = min(until, end) - max(since, start)
            if overlap > timedelta(0):
                observed += overlap
                if not available:
                    down += overlap
        return down / observed if observed > timedelta(0) else 0.0

    def measurement(self, windows: Iterable[timedelta], period_start: datetime, at: datetime) -> Measurement:
        return Measurement(
            at=at,
            windows={window: self.error_ratio(at - window, at) for window in windows},
            period=self.error_ratio(period_start, at),
        )

    def forget_before(self, cutoff: datetime) -> None:
        """Drops what lies wholly before `cutoff`, keeping the state that held at it."""
        while len(self.changes) > 1 and self.changes[1][0] <= cutoff:
            self.changes.pop(0)
