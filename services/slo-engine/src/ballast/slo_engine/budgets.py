"""The SLOs' budget states in JetStream KV (`SLO_BUDGETS`), and the transitions they publish once.

An evaluation reads the SLO's stored state, evaluates against it, and writes the new state with compare-and-set
(a replica that lost the race reads again and evaluates against the winner's state). The transitions found are
written with the state, as unpublished, before they are published, and cleared after: a process that dies between
the write and the publish leaves them for the next evaluation to publish. Their ids are fixed by the transition, so
a publish repeated within the stream's duplicate window is stored once. Nothing is ever reset: a restarted engine
evaluates against the stored state, so it neither forgets a firing tier nor tells it again.

A cycle evaluates every SLO at once (`evaluate_all`): against the states the book last read or wrote (the whole
bucket, read in one pass at its first cycle), all new states are written together and acknowledged as they come,
and the transitions of all of them are published together. Compare-and-set still guards each key: an SLO whose copy
is stale (another replica wrote) or that holds transitions left unpublished goes the one-by-one way, which reads it.
A state whose figures did not move since the stored one (no transition, the same within rounding) is not stored again
until it is STATE_REFRESH old: most SLOs most cycles, and a write per SLO per cycle was most of a cycle's cost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

from ballast.bus.kv import CaughtUp, Entry, KeyValue, KvConflict
from ballast.bus.publisher import Publisher
from ballast.events.contracts.slo import SloEvent, slo_event_type, slo_subject
from ballast.events.envelope import new_event
from ballast.events.registry import TypeRegistry
from ballast.slo import AlertWindows, ServiceLevelObjective
from ballast.slo.evaluation import BudgetState, Figures, Measurement, Transition, evaluate


class UnpublishedEvent(BaseModel):
    """A transition written with the state it led to, not yet known to be on the bus."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: SloEvent
    id: str
    namespace: str
    name: str
    data: dict[str, Any]  # the payload as JSON; its model is the catalogue's for the event type

    @classmethod
    def of(cls, namespace: str, name: str, transition: Transition) -> UnpublishedEvent:
        return cls(
            event=transition.event,
            id=transition.id,
            namespace=namespace,
            name=name,
            data=transition.payload.model_dump(mode="json"),
        )


class StoredBudget(BaseModel):
    """The value kept per SLO in the bucket, under `<namespace>.<name>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: BudgetState
    unpublished: tuple[UnpublishedEvent, ...] = ()


# A state whose figures did not move (beyond what any reader shows) is not stored again each cycle, only this often:
# its `evaluated_at` (the status's evaluatedAt, the `evaluated` gauge) lags by up to this much. As the SLO's status in
# Kubernetes (controller.STATUS_REFRESH).
STATE_REFRESH = timedelta(seconds=30)
# Figures as close as this are the same: budget left and burn rates to a thousandth of a percent of the budget.
FIGURE_TOLERANCE = 1e-5


def _close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= FIGURE_TOLERANCE * max(1.0, abs(a), abs(b))


def current(stored: BudgetState, new: Figures) -> bool:
    """Whether the stored state still tells what the new figures do: its figures the same within the tolerance, stored
    less than STATE_REFRESH before, and the same period (a rolling period moves with every evaluation: the same when
    both are rolling periods of one length). Cheapest checks first: it runs for every SLO every cycle."""
    if not _close(stored.budget_remaining, new.budget_remaining):
        return False
    if new.evaluated_at - stored.evaluated_at >= STATE_REFRESH or len(stored.burn_rates) != len(new.burn_rates):
        return False
    for window, rate in new.burn_rates.items():
        was = stored.burn_rates.get(window)
        if was is None or not _close(was, rate):
            return False
    if stored.period_start != new.period_start and not (
        stored.evaluated_at - stored.period_start == stored.period == new.period == new.evaluated_at - new.period_start
    ):
        return False
    if (stored.time_to_exhaustion is None) != (new.time_to_exhaustion is None):
        return False
    if (
        stored.time_to_exhaustion is not None
        and new.time_to_exhaustion is not None
        and not _close(stored.time_to_exhaustion.total_seconds(), new.time_to_exhaustion.total_seconds())
    ):
        return False
    return (
        stored.objective == new.objective
        and stored.firing == new.firing
        and stored.exhausted_since == new.exhausted_since
        and (stored.slo is new.slo or stored.slo == new.slo)
        and stored.consumption == new.consumption
    )


def budget_key(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


class Evaluand(NamedTuple):
    """One SLO to evaluate in a cycle."""

    slo: ServiceLevelObjective
    namespace: str
    windows: AlertWindows
    measurement: Measurement


class BudgetBook:
    def __init__(
        self, kv: KeyValue[StoredBudget], publisher: Publisher, registry: TypeRegistry, cluster: str, source: str
    ) -> None:
        self._kv = kv
        self._publisher = publisher
        self._registry = registry
        self.cluster = cluster
        self.source = source
        # What this book last read or wrote per key (revision 0: absent); None until the bucket is read once.
        self._known: dict[str, tuple[int, StoredBudget | None]] | None = None

    def drop_copy(self) -> None:
        """Forgets the copy (a new term as leader: another leader wrote meanwhile); the next cycle reads the bucket."""
        self._known = None

    async def _load(self) -> dict[str, tuple[int, StoredBudget | None]]:
        """The whole bucket, read once (one pass of a watch, rather than a request per key)."""
        known: dict[str, tuple[int, StoredBudget | None]] = {}
        async with self._kv.watch() as changes:
            async for change in changes:
                if isinstance(change, CaughtUp):
                    break
                known[change.key] = (change.revision, change.value)
        self._known = known
        return known

    async def evaluate_all(self, evaluands: Sequence[Evaluand]) -> list[BudgetState | Exception]:
        """Evaluates many SLOs at once: each one's new state, or the error evaluating it raised."""
        known = self._known if self._known is not None else await self._load()
        results: list[BudgetState | Exception | None] = [None] * len(evaluands)
        one_by_one: list[int] = []
        writes: list[tuple[str, StoredBudget, int]] = []
        written: list[int] = []
        for index, item in enumerate(evaluands):
            key = budget_key(item.namespace, item.slo.name)
            revision, stored = known.get(key, (0, None))
            if stored is not None and stored.unpublished:
                one_by_one.append(index)  # left by a run that stopped before publishing them: publish first
                continue
            try:
                evaluation = evaluate(
                    item.slo,
                    item.namespace,
                    self.cluster,
                    item.windows,
                    item.measurement,
                    stored.state if stored is not None else None,
                )
            except Exception as error:
                results[index] = error
                continue
            if stored is not None and (
                evaluation.figures is None  # a measurement no newer than the state
                or (not evaluation.transitions and current(stored.state, evaluation.figures))
            ):
                results[index] = stored.state
                continue
            unpublished = tuple(UnpublishedEvent.of(item.namespace, item.slo.name, t) for t in evaluation.transitions)
            writes.append((key, StoredBudget(state=evaluation.state, unpublished=unpublished), revision))
            written.append(index)
        outcomes = await self._kv.update_all(writes)
        told: list[tuple[str, StoredBudget, int]] = []
        for index, (key, record, _), outcome in zip(written, writes, outcomes, strict=True):
            if isinstance(outcome, KvConflict):
                known.pop(key, None)
                one_by_one.append(index)  # another replica wrote meanwhile: read it and evaluate against it
                continue
            known[key] = (outcome, record)
            results[index] = record.state
            if record.unpublished:
                told.append((key, record, outcome))
        if told:
            await self._publish(tuple(event for _, record, _ in told for event in record.unpublished))
            cleared = [(key, StoredBudget(state=record.state), revision) for key, record, revision in told]
            for (key, record, _), outcome in zip(cleared, await self._kv.update_all(cleared), strict=True):
                if isinstance(outcome, KvConflict):
                    known.pop(key, None)  # a newer state was stored, by an evaluation that published these first
                else:
                    known[key] = (outcome, record)
        for index in one_by_one:
            item = evaluands[index]
            try:
                results[index] = await self.evaluate(item.slo, item.namespace, item.windows, item.measurement)
            except Exception as error:
                results[index] = error
        return [result if result is not None else RuntimeError("not evaluated") for result in results]

    async def state(self, namespace: str, name: str) -> BudgetState | None:
        """The SLO's stored state: this book's copy once its cycles keep one (the SLO controller asks after every
        evaluation, for every SLO), else read."""
        key = budget_key(namespace, name)
        if self._known is not None and key in self._known:
            stored = self._known[key][1]
            return stored.state if stored is not None else None
        entry = await self._kv.get(key)
        return entry.value.state if entry is not None and entry.value is not None else None

    async def evaluate(
        self, slo: ServiceLevelObjective, namespace: str, windows: AlertWindows, measurement: Measurement
    ) -> BudgetState:
        """Evaluates `measurement` against the stored state, stores the result and publishes its transitions."""
        key = budget_key(namespace, slo.name)
        while True:
            entry = await self._kv.get(key)
            stored = entry.value if entry is not None else None
            if stored is not None and stored.unpublished:
                await self._publish(stored.unpublished)  # left by a run that stopped before publishing them
            previous = stored.state if stored is not None else None
            evaluation = evaluate(slo, namespace, self.cluster, windows, measurement, previous)
            if stored is not None and evaluation.state == stored.state and not stored.unpublished:
                return stored.state
            record = StoredBudget(
                state=evaluation.state,
                unpublished=tuple(UnpublishedEvent.of(namespace, slo.name, t) for t in evaluation.transitions),
            )
            try:
                revision = await self._write(key, entry, record)
            except KvConflict:
                continue  # another replica stored a state meanwhile: evaluate against it
            break
        self._remember(key, revision, record)
        if record.unpublished:
            await self._publish(record.unpublished)
            # A conflict means a newer state was stored, by an evaluation that published these first.
            with contextlib.suppress(KvConflict):
                cleared = StoredBudget(state=record.state)
                self._remember(key, await self._kv.update(key, cleared, revision), cleared)
        return record.state

    def _remember(self, key: str, revision: int, record: StoredBudget | None) -> None:
        if self._known is not None:
            self._known[key] = (revision, record)

    async def forget(self, namespace: str, name: str) -> None:
        """Drops a deleted SLO's state (its history stays until the bucket's limits drop it)."""
        await self._kv.delete(budget_key(namespace, name))
        if self._known is not None:
            self._known.pop(budget_key(namespace, name), None)

    async def _write(self, key: str, entry: Entry[StoredBudget] | None, record: StoredBudget) -> int:
        if entry is None:
            return await self._kv.create(key, record)
        return await self._kv.update(key, record, entry.revision)

    async def _publish(self, events: tuple[UnpublishedEvent, ...]) -> None:
        envelopes = []
        for unpublished in events:
            ce_type = slo_event_type(unpublished.event)
            data = self._registry[ce_type].model.model_validate(unpublished.data)
            subject = f"{unpublished.namespace}/{unpublished.name}"
            envelope = new_event(ce_type, self.source, data, subject=subject, event_id=unpublished.id)
            envelopes.append((slo_subject(self.cluster, unpublished.namespace, unpublished.event), envelope))
        await self._publisher.publish_all(envelopes)
