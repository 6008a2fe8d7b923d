"""The SLOs' budget states in JetStream KV (`SLO_BUDGETS`), and the transitions they publish once.

States are stored in shards: each SLO's under `_shards.<nnn>` (one of SHARDS keys, by a hash of its namespace and
name), as `<namespace>/<name>` in that shard's value. An evaluation reads the SLO's shard, evaluates against its
stored state, and writes the shard back with compare-and-set (a replica that lost the race reads again and evaluates
against the winner's state). The transitions found are written with the state, as unpublished, before they are
published, and cleared after: a process that dies between the write and the publish leaves them for the next
evaluation to publish. Their ids are fixed by the transition, so a publish repeated within the stream's duplicate
window is stored once. Nothing is ever reset: a restarted engine evaluates against the stored state, so it neither
forgets a firing tier nor tells it again; the per-SLO keys of the layout before shards (`<namespace>.<name>`) are
read too and carried over into their shards by the leader's first cycle.

A cycle evaluates every SLO at once (`evaluate_all`): against the shards the book last read or wrote (the whole
bucket, read in one pass at its first cycle), every shard holding a new state is written, all together and
acknowledged as they come, and the transitions of all of them are published together. Compare-and-set still guards
each shard: the SLOs of a shard whose copy is stale (another replica wrote) and those holding transitions left
unpublished go the one-by-one way, which reads it. A state whose figures did not move since the stored one (no
transition, the same within rounding) is not stored again until it is STATE_REFRESH old. A write per SLO (a message
published, stored, acknowledged and watched) was most of a cycle's cost when every state moved: shards make it a
few hundred writes whatever the number of SLOs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ballast.bus.kv import CaughtUp, Entry, KeyValue, KvConflict
from ballast.bus.publisher import Publisher
from ballast.events.contracts.slo import SloEvent, slo_event_type, slo_subject
from ballast.events.envelope import new_event
from ballast.events.registry import TypeRegistry
from ballast.events.trusted import trusted
from ballast.slo import AlertWindows, ServiceLevelObjective
from ballast.slo.evaluation import (
    BudgetState,
    EvaluationPlan,
    Figures,
    Measurement,
    Transition,
    evaluate,
    evaluate_planned,
    plan,
)

log = logging.getLogger(__name__)


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
    """One SLO's stored budget: its state and the transitions not yet known to be on the bus."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: BudgetState
    unpublished: tuple[UnpublishedEvent, ...] = ()


# SLOs are stored SHARDS to a key, hashed by namespace and name: a cycle that moves every SLO's figures writes a few
# hundred values, not one per SLO (each write is a message published, stored and acknowledged, and was most of a
# cycle's cost). 256 keeps a shard of 100,000 SLOs near 300 kB, inside the server's 1 MB message limit. Changing it
# moves SLOs between keys: it is part of the stored layout.
SHARDS = 256
SHARD_PREFIX = "_shards."  # no namespace starts with "_": never a key of the per-SLO layout before shards


def slo_id(namespace: str, name: str) -> str:
    """An SLO's name within its shard."""
    return f"{namespace}/{name}"


def shard_key(namespace: str, name: str) -> str:
    """The key of the shard holding the SLO's budget (crc32: the same in every process, unlike `hash`)."""
    return _shard_key(slo_id(namespace, name))


def _shard_key(sid: str) -> str:
    return f"{SHARD_PREFIX}{zlib.crc32(sid.encode()) % SHARDS:03d}"


def legacy_key(namespace: str, name: str) -> str:
    """Where the layout before shards kept the SLO's budget alone (`<namespace>.<name>`); read to carry it over."""
    return f"{namespace}.{name}"


class BudgetShard(BaseModel):
    """The value kept under a shard key: the budgets of the SLOs hashed to it, by `<namespace>/<name>`.

    A value of the layout before shards (one `StoredBudget` under `<namespace>.<name>`) reads as a shard of one, so
    that the bucket is read with one model while such keys remain (the leader carries them over at its first cycle).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    budgets: dict[str, StoredBudget] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_one_budget(cls, value: Any) -> Any:
        if isinstance(value, dict) and "state" in value and "budgets" not in value:
            slo = value["state"].get("slo") if isinstance(value["state"], dict) else None
            if isinstance(slo, dict):
                return {"budgets": {slo_id(str(slo.get("namespace")), str(slo.get("name"))): value}}
        return value


EMPTY_SHARD: dict[str, StoredBudget] = {}


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


# SLOs a cycle evaluates between two turns of the event loop: about 10 ms of work.
YIELD_EVERY = 250


class Evaluand(NamedTuple):
    """One SLO to evaluate in a cycle."""

    slo: ServiceLevelObjective
    namespace: str
    windows: AlertWindows
    measurement: Measurement


Shards = dict[str, tuple[int, Mapping[str, StoredBudget]]]  # shard key -> (revision, budgets); absent: no such key


class BudgetBook:
    def __init__(
        self, kv: KeyValue[BudgetShard], publisher: Publisher, registry: TypeRegistry, cluster: str, source: str
    ) -> None:
        self._kv = kv
        self._publisher = publisher
        self._registry = registry
        self.cluster = cluster
        self.source = source
        # Told of every transition once it is on the bus, (namespace, name, payload) each: the leader's Kubernetes
        # Events (`slo_events`). Called in the evaluation's path, so it only queues.
        self.published: Callable[[Sequence[tuple[str, str, BaseModel]]], None] = lambda transitions: None
        # What this book last read or wrote per shard; None until the bucket is read once.
        self._known: Shards | None = None
        # Each SLO's (shard key, name in its shard): a cycle needs both for every SLO.
        self._where: dict[tuple[str, str], tuple[str, str]] = {}
        # Each SLO's evaluation plan, for as long as it is evaluated with the same spec and window table objects.
        self._plans: dict[tuple[str, str], EvaluationPlan] = {}

    @property
    def kv(self) -> KeyValue[BudgetShard]:
        """The bucket, for a view of it in the same process (its watch gets this book's writes undecoded)."""
        return self._kv

    def drop_copy(self) -> None:
        """Forgets the copy (a new term as leader: another leader wrote meanwhile); the next cycle reads the bucket."""
        self._known = None

    async def _load(self) -> Shards:
        """The whole bucket, read once (one pass of a watch, rather than a request per key); budgets still under
        the per-SLO keys of the layout before shards are carried over into their shards."""
        known: Shards = {}
        legacy: dict[str, list[tuple[str, int, str, StoredBudget]]] = {}
        async with self._kv.watch() as changes:
            async for change in changes:
                if isinstance(change, CaughtUp):
                    break
                if change.key.startswith(SHARD_PREFIX):
                    if change.value is not None:
                        known[change.key] = (change.revision, change.value.budgets)
                    else:
                        known.pop(change.key, None)
                elif change.value is not None:
                    for sid, record in change.value.budgets.items():
                        namespace, _, name = sid.partition("/")
                        entry = (change.key, change.revision, sid, record)
                        legacy.setdefault(shard_key(namespace, name), []).append(entry)
        for key, budgets in legacy.items():
            await self._carry_over(known, key, budgets)
        self._known = known
        return known

    async def _carry_over(self, known: Shards, key: str, budgets: list[tuple[str, int, str, StoredBudget]]) -> None:
        """Writes budgets of the layout before shards into their shard (the newer state where the shard has the SLO
        too: a replica of the older version may still have been writing), then deletes their old keys."""
        while True:
            revision, stored = known.get(key, (0, EMPTY_SHARD))
            merged = dict(stored)
            for _, _, sid, record in budgets:
                have = merged.get(sid)
                if have is None or record.state.evaluated_at > have.state.evaluated_at:
                    merged[sid] = record
            shard = BudgetShard(budgets=merged)
            try:
                known[key] = (await self._write(key, revision, shard), shard.budgets)
                break
            except KvConflict:
                await self._refresh(known, key)
        for old_key, old_revision, _, _ in budgets:
            with contextlib.suppress(KvConflict):  # written again since (an older replica): carried over next term
                await self._kv.delete(old_key, revision=old_revision)

    async def _refresh(self, known: Shards, key: str) -> None:
        entry = await self._kv.get(key)
        if entry is None or entry.value is None:
            known.pop(key, None)
        else:
            known[key] = (entry.revision, entry.value.budgets)

    async def evaluate_all(self, evaluands: Sequence[Evaluand]) -> list[BudgetState | Exception]:
        """Evaluates many SLOs at once: each one's new state, or the error evaluating it raised."""
        known = self._known if self._known is not None else await self._load()
        results: list[BudgetState | Exception | None] = [None] * len(evaluands)
        one_by_one: list[int] = []
        changed: dict[str, dict[str, tuple[int, StoredBudget]]] = {}  # shard -> SLO -> (evaluand, new record)
        for index, item in enumerate(evaluands):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                # A cycle of thousands of SLOs takes a second or so: meanwhile the loop runs what else waits now and
                # then (status requests, acks, the lease's renewal) rather than stalling the whole time.
                await asyncio.sleep(0)
            namespace, name = item.namespace, item.slo.name
            where = self._where.get((namespace, name))
            if where is None:
                sid = slo_id(namespace, name)
                where = self._where[(namespace, name)] = (_shard_key(sid), sid)
            key, sid = where
            stored = known.get(key, (0, EMPTY_SHARD))[1].get(sid)
            if stored is not None and stored.unpublished:
                one_by_one.append(index)  # left by a run that stopped before publishing them: publish first
                continue
            try:
                planned = self._plans.get((namespace, name))
                if planned is None or not planned.fits(item.slo, namespace, item.windows):
                    planned = self._plans[(namespace, name)] = plan(item.slo, namespace, item.windows)
                previous = stored.state if stored is not None else None
                evaluation = evaluate_planned(planned, self.cluster, item.measurement, previous)
            except Exception as error:
                results[index] = error
                continue
            if stored is not None and (
                evaluation.figures is None  # a measurement no newer than the state
                or (not evaluation.transitions and current(stored.state, evaluation.figures))
            ):
                results[index] = stored.state
                continue
            transitions = evaluation.transitions
            unpublished = tuple(UnpublishedEvent.of(namespace, name, t) for t in transitions) if transitions else ()
            record = trusted(StoredBudget, {"state": evaluation.state, "unpublished": unpublished})
            changed.setdefault(key, {})[sid] = (index, record)
        writes = []
        for key, news in changed.items():
            revision, stored_budgets = known.get(key, (0, EMPTY_SHARD))
            budgets = dict(stored_budgets)
            for sid, (_, record) in news.items():
                budgets[sid] = record
            writes.append((key, BudgetShard(budgets=budgets), revision))
        told: dict[str, dict[str, tuple[UnpublishedEvent, ...]]] = {}
        stale: set[str] = set()
        for (key, shard, _), outcome in zip(writes, await self._kv.update_all(writes), strict=True):
            if isinstance(outcome, KvConflict):
                known.pop(key, None)
                stale.add(key)
                # Another replica wrote to the shard meanwhile: read it and evaluate against it.
                one_by_one.extend(index for index, _ in changed[key].values())
                continue
            known[key] = (outcome, shard.budgets)
            for sid, (index, record) in changed[key].items():
                results[index] = record.state
                if record.unpublished:
                    told.setdefault(key, {})[sid] = record.unpublished
        if told:
            await self._publish(tuple(event for news in told.values() for events in news.values() for event in events))
            await self._clear_all(known, told)
        for index in one_by_one:
            item = evaluands[index]
            try:
                results[index] = await self.evaluate(item.slo, item.namespace, item.windows, item.measurement)
            except Exception as error:
                results[index] = error
        for key in stale - known.keys():
            await self._refresh(known, key)
        return [result if result is not None else RuntimeError("not evaluated") for result in results]

    async def _clear_all(self, known: Shards, told: dict[str, dict[str, tuple[UnpublishedEvent, ...]]]) -> None:
        """Clears the transitions published from their shards, all shards at once; a shard written meanwhile is
        read and cleared again (`_clear`)."""
        writes = []
        for key, news in told.items():
            revision, budgets = known[key]
            writes.append((key, BudgetShard(budgets=_cleared(budgets, news)), revision))
        for (key, shard, _), outcome in zip(writes, await self._kv.update_all(writes), strict=True):
            if isinstance(outcome, KvConflict):
                await self._clear(key, told[key])
            else:
                known[key] = (outcome, shard.budgets)

    async def _clear(self, key: str, told: Mapping[str, tuple[UnpublishedEvent, ...]]) -> None:
        """Clears published transitions from the shard as it is now: those still waiting there (a newer state of the
        SLO holds only its own, published by the evaluation that stored it)."""
        while True:
            entry = await self._kv.get(key)
            if entry is None or entry.value is None:
                return
            budgets = _cleared(entry.value.budgets, told)
            if budgets is entry.value.budgets:
                return
            try:
                self._remember(key, await self._kv.update(key, BudgetShard(budgets=budgets), entry.revision), budgets)
                return
            except KvConflict:
                continue

    async def state(self, namespace: str, name: str) -> BudgetState | None:
        """The SLO's stored state: this book's copy once its cycles keep one (the SLO controller asks after every
        evaluation, for every SLO), else read."""
        key, sid = shard_key(namespace, name), slo_id(namespace, name)
        if self._known is not None and key in self._known:
            held = self._known[key][1].get(sid)
            if held is not None:
                return held.state
        _, stored, _ = await self._read(namespace, name)
        return stored.state if stored is not None else None

    async def _read(
        self, namespace: str, name: str
    ) -> tuple[Entry[BudgetShard] | None, StoredBudget | None, Entry[BudgetShard] | None]:
        """The SLO's shard as stored, its budget, and the entry of its old per-SLO key when the budget is still
        there only (not carried over yet)."""
        entry = await self._kv.get(shard_key(namespace, name))
        sid = slo_id(namespace, name)
        stored = entry.value.budgets.get(sid) if entry is not None and entry.value is not None else None
        if stored is not None:
            return entry, stored, None
        old = await self._kv.get(legacy_key(namespace, name))
        if old is None or old.value is None or sid not in old.value.budgets:
            return entry, None, None
        return entry, old.value.budgets[sid], old

    async def evaluate(
        self, slo: ServiceLevelObjective, namespace: str, windows: AlertWindows, measurement: Measurement
    ) -> BudgetState:
        """Evaluates `measurement` against the stored state, stores the result and publishes its transitions."""
        key, sid = shard_key(namespace, slo.name), slo_id(namespace, slo.name)
        while True:
            entry, stored, old = await self._read(namespace, slo.name)
            if stored is not None and stored.unpublished:
                await self._publish(stored.unpublished)  # left by a run that stopped before publishing them
            previous = stored.state if stored is not None else None
            evaluation = evaluate(slo, namespace, self.cluster, windows, measurement, previous)
            if stored is not None and evaluation.state == stored.state and not stored.unpublished and old is None:
                return stored.state
            record = StoredBudget(
                state=evaluation.state,
                unpublished=tuple(UnpublishedEvent.of(namespace, slo.name, t) for t in evaluation.transitions),
            )
            budgets = dict(entry.value.budgets) if entry is not None and entry.value is not None else {}
            budgets[sid] = record
            try:
                revision = await self._write(key, entry.revision if entry else 0, BudgetShard(budgets=budgets))
            except KvConflict:
                continue  # another replica stored a state meanwhile: evaluate against it
            break
        self._remember(key, revision, budgets)
        if old is not None:
            with contextlib.suppress(KvConflict):
                await self._kv.delete(old.key, revision=old.revision)
        if record.unpublished:
            await self._publish(record.unpublished)
            await self._clear(key, {sid: record.unpublished})
        return record.state

    def _remember(self, key: str, revision: int, budgets: Mapping[str, StoredBudget]) -> None:
        if self._known is not None:
            self._known[key] = (revision, budgets)

    async def forget(self, namespace: str, name: str) -> None:
        """Drops a deleted SLO's state (its history stays until the bucket's limits drop it)."""
        self._where.pop((namespace, name), None)
        self._plans.pop((namespace, name), None)
        key, sid = shard_key(namespace, name), slo_id(namespace, name)
        while True:
            entry, _, old = await self._read(namespace, name)
            if old is not None:
                with contextlib.suppress(KvConflict):
                    await self._kv.delete(old.key, revision=old.revision)
                continue
            if entry is None or entry.value is None or sid not in entry.value.budgets:
                break
            budgets = {other: record for other, record in entry.value.budgets.items() if other != sid}
            try:
                self._remember(key, await self._kv.update(key, BudgetShard(budgets=budgets), entry.revision), budgets)
                return
            except KvConflict:
                continue
        if self._known is not None and key in self._known and sid in self._known[key][1]:
            await self._refresh(self._known, key)

    async def _write(self, key: str, revision: int, shard: BudgetShard) -> int:
        if revision == 0:
            return await self._kv.create(key, shard)
        return await self._kv.update(key, shard, revision)

    async def _publish(self, events: tuple[UnpublishedEvent, ...]) -> None:
        envelopes = []
        told: list[tuple[str, str, BaseModel]] = []
        for unpublished in events:
            ce_type = slo_event_type(unpublished.event)
            data = self._registry[ce_type].model.model_validate(unpublished.data)
            subject = f"{unpublished.namespace}/{unpublished.name}"
            envelope = new_event(ce_type, self.source, data, subject=subject, event_id=unpublished.id)
            envelopes.append((slo_subject(self.cluster, unpublished.namespace, unpublished.event), envelope))
            told.append((unpublished.namespace, unpublished.name, data))
        await self._publisher.publish_all(envelopes)
        try:
            self.published(told)
        except Exception:  # telling people is worth a log line, never a cycle
            log.exception("telling %d SLO transitions failed", len(told))


def _cleared(
    budgets: Mapping[str, StoredBudget], told: Mapping[str, tuple[UnpublishedEvent, ...]]
) -> Mapping[str, StoredBudget]:
    """`budgets` without the published transitions `told` (per SLO); the same object when none is still there."""
    cleared: dict[str, StoredBudget] | None = None
    for sid, events in told.items():
        record = budgets.get(sid)
        if record is not None and record.unpublished == events:
            cleared = dict(budgets) if cleared is None else cleared
            cleared[sid] = StoredBudget(state=record.state)
    return budgets if cleared is None else cleared
