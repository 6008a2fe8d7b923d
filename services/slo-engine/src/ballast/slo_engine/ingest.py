"""The bus facts the engine keeps: WebApp availability from `evt.k8s`, rollouts from `evt.reconcile`, chaos runs
from `evt.chaos` and incidents from `evt.incident`, each written to the `slo-sli` bucket before it is acknowledged.

A fact is dated by its event's time (when it was observed), not by when it is handled, so a backlog handled after a
restart lands where it belongs. A fact dated in the future would stretch a state over time that has not happened: it
is refused (dead-lettered with the reason), as is a fact about a WebApp that names none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from ballast.bus.consumer import Delivery, Reject
from ballast.events.contracts.chaos import ExperimentAborted, ExperimentCompleted, ExperimentStarted
from ballast.events.contracts.incident import IncidentTransition
from ballast.events.contracts.k8s import ObservedObject
from ballast.events.contracts.reconcile import ReconcileOutcome
from ballast.slo.webapp_availability import webapp_of
from ballast.slo_engine.availability import Fact, WebAppRecord, availability_of
from ballast.slo_engine.causes import CauseWindow, chaos_window, incident_window, merged
from ballast.slo_engine.store import SliStore

log = logging.getLogger(__name__)

# Clocks of the machines publishing facts and of this one differ a little; more than this is a wrong date.
MAX_CLOCK_SKEW = timedelta(minutes=2)


class FactIngest:
    def __init__(
        self,
        store: SliStore,
        *,
        cluster: str,
        retention: timedelta,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._cluster = cluster
        self._retention = retention
        self._now = now

    def _dated(self, delivery: Delivery) -> datetime:
        at = delivery.event.time
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        if at - self._now() > MAX_CLOCK_SKEW:
            raise Reject(f"the event is dated {at.isoformat()}, in the future: its time cannot be placed in a window")
        return at

    async def on_fact(self, delivery: Delivery) -> None:
        """A WebApp or Deployment fact from `evt.k8s`."""
        found = self._fact(delivery)
        if found is not None:
            keep_after = self._now() - self._retention
            await self._store.update_webapp(*found[0], lambda record: record.observe_all((found[1],), keep_after))

    async def on_facts(self, deliveries: Sequence[Delivery]) -> list[Exception | None]:
        """A batch of facts (the batch consumer's handler): the facts about one WebApp are applied in order and
        written together, every WebApp's write at once. Per fact: None once stored, or why not (a `Reject`, or the
        write's failure: the fact is delivered again)."""
        outcomes: list[Exception | None] = [None] * len(deliveries)
        by_webapp: dict[tuple[str, str], list[tuple[int, Fact]]] = {}
        for index, delivery in enumerate(deliveries):
            try:
                found = self._fact(delivery)
            except Reject as rejected:
                outcomes[index] = rejected
                continue
            if found is not None:
                by_webapp.setdefault(found[0], []).append((index, found[1]))
        if not by_webapp:
            return outcomes
        keep_after = self._now() - self._retention

        def observing(facts: list[tuple[int, Fact]]) -> Callable[[WebAppRecord], WebAppRecord]:
            return lambda record: record.observe_all((fact for _, fact in facts), keep_after)

        stored = await self._store.update_webapps({target: observing(facts) for target, facts in by_webapp.items()})
        for target, facts in by_webapp.items():
            outcome = stored[target]
            if isinstance(outcome, Exception):  # not stored: these facts come back
                for index, _ in facts:
                    outcomes[index] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        return outcomes

    def _fact(self, delivery: Delivery) -> tuple[tuple[str, str], Fact] | None:
        """The WebApp a fact is about and what it tells of it; None for a fact that tells nothing."""
        fact = delivery.event.data
        if not isinstance(fact, ObservedObject) or fact.cluster != self._cluster:
            return None  # another kind (the filter lets only these through) or another cluster's fact
        target = webapp_of(fact)
        if target is None:
            return None  # a Deployment no WebApp owns
        if not target[0]:
            raise Reject(f"the {fact.object.kind} fact {fact.object.name!r} names no namespace")
        verb = delivery.subject.rsplit(".", 1)[-1]
        state = availability_of(fact, verb)
        if state is None:
            return None
        collected = fact.object.kind == "Deployment" and verb == "deleted"
        return target, Fact(self._dated(delivery), state, collected)

    async def on_cause(self, delivery: Delivery) -> None:
        """A rollout, chaos or incident event from PLATFORM_EVENTS."""
        event = delivery.event.data
        if getattr(event, "cluster", self._cluster) != self._cluster:
            return
        if isinstance(event, ReconcileOutcome):
            at = self._dated(delivery)
            webapp = event.webapp
            if not webapp.namespace:
                raise Reject(f"the reconcile outcome of WebApp {webapp.name!r} names no namespace")
            if delivery.subject.endswith(".deleted"):
                return
            keep_after, generation = self._now() - self._retention, event.generation
            await self._store.update_webapp(
                webapp.namespace, webapp.name, lambda record: record.rolled_out(generation, at, keep_after)
            )
            return
        window: tuple[str, CauseWindow] | None = None
        if isinstance(event, ExperimentStarted | ExperimentCompleted | ExperimentAborted):
            if event.dry_run:
                return  # nothing was injected
            window = chaos_window(event)
        elif isinstance(event, IncidentTransition):
            window = incident_window(event)
        if window is None:
            return
        key, told = window
        if told.start is not None and told.start - self._now() > MAX_CLOCK_SKEW:
            raise Reject(f"{told.cause} {told.ref} starts {told.start.isoformat()}, in the future")
        await self._store.update_cause(key, lambda stored: merged(stored, told))
