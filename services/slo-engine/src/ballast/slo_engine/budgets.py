"""The SLOs' budget states in JetStream KV (`SLO_BUDGETS`), and the transitions they publish once.

An evaluation reads the SLO's stored state, evaluates against it, and writes the new state with compare-and-set
(a replica that lost the race reads again and evaluates against the winner's state). The transitions found are
written with the state, as unpublished, before they are published, and cleared after: a process that dies between
the write and the publish leaves them for the next evaluation to publish. Their ids are fixed by the transition, so
a publish repeated within the stream's duplicate window is stored once. Nothing is ever reset: a restarted engine
evaluates against the stored state, so it neither forgets a firing tier nor tells it again.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import BaseModel, ConfigDict

from ballast.bus.kv import Entry, KeyValue, KvConflict
from ballast.bus.publisher import Publisher
from ballast.events.contracts.slo import SloEvent, slo_event_type, slo_subject
from ballast.events.envelope import new_event
from ballast.events.registry import TypeRegistry
from ballast.slo import AlertWindows, ServiceLevelObjective
from ballast.slo.evaluation import BudgetState, Measurement, Transition, evaluate


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


def budget_key(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


class BudgetBook:
    def __init__(
        self, kv: KeyValue[StoredBudget], publisher: Publisher, registry: TypeRegistry, cluster: str, source: str
    ) -> None:
        self._kv = kv
        self._publisher = publisher
        self._registry = registry
        self.cluster = cluster
        self.source = source

    async def state(self, namespace: str, name: str) -> BudgetState | None:
        entry = await self._kv.get(budget_key(namespace, name))
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
        if record.unpublished:
            await self._publish(record.unpublished)
            # A conflict means a newer state was stored, by an evaluation that published these first.
            with contextlib.suppress(KvConflict):
                await self._kv.update(key, StoredBudget(state=record.state), revision)
        return record.state

    async def forget(self, namespace: str, name: str) -> None:
        """Drops a deleted SLO's state (its history stays until the bucket's limits drop it)."""
        await self._kv.delete(budget_key(namespace, name))

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
