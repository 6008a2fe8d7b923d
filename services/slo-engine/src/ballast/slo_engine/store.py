"""The SLI facts the engine keeps in the `slo-sli` bucket: one record per WebApp (`webapp.<ns>.<name>`) and one
window per chaos run or incident (`cause.<kind>.<ns>.<digest>`).

Every replica handles a share of the facts (the consumers are shared), so writes are compare-and-set: a write that
lost the race reads the winner's record and applies its fact to that. `SliMirror` follows the bucket for the
evaluator, which measures from memory.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from pydantic import BaseModel

from ballast.bus.kv import CaughtUp, Entry, KeyValue, KvConflict
from ballast.runtime.stopping import until_stopped
from ballast.slo_engine.availability import WebAppRecord
from ballast.slo_engine.causes import CauseWindow

M = TypeVar("M", bound=BaseModel)
KeyChange = Callable[[M | None], M | None]  # a key's value (None: absent) to what it should be (None: as it was)
Pending = tuple[KeyChange[M], asyncio.Future[M | None]]  # a change not stored yet, and its caller's future


def webapp_key(namespace: str, name: str) -> str:
    return f"webapp.{namespace}.{name}"


async def update(kv: KeyValue[M], key: str, change: Callable[[M | None], M | None]) -> M | None:
    """Applies `change` to the key's value until the write wins; a change that returns the value unchanged (or None)
    writes nothing. Returns what is stored."""
    while True:
        entry = await kv.get(key)
        current = entry.value if entry is not None else None
        wanted = change(current)
        if wanted is None or wanted == current:
            return current
        try:
            if entry is None:
                await kv.create(key, wanted)
            else:
                await kv.update(key, wanted, entry.revision)
        except KvConflict:
            continue
        return wanted


class Coalescer(Generic[M]):
    """Writes the changes to one key that arrive while a write of it is under way together, in one write, against
    the value this process last read or wrote (no read before each write).

    Facts come in bursts about one WebApp (a rollout, a replica lost and replaced) and are handled concurrently: one
    write per burst rather than one read and one write per fact. Every change is in the store before its caller
    returns (the fact is acked after), and compare-and-set still guards each write: a copy made stale by another
    replica's write loses, is read again and the changes are applied to what is stored.

    `update_many` takes a batch's changes to many keys: their first writes go out together (`KeyValue.update_all`,
    one reply subscription and the acknowledgements as they come), and the records it has no copy of are read together
    (`KeyValue.get_all`). A write through nats-py's request per key took 71 µs of CPU (41 sent with the others), and
    the writes and first reads were about half of the ingest's cost beyond decoding and acknowledging the facts.
    """

    def __init__(self, kv: KeyValue[M], *, remember: int = 4096) -> None:
        self._kv = kv
        self._remember = remember
        # None: known absent; an entry with no value: deleted (its revision the tombstone's, which a write names)
        self._known: OrderedDict[str, Entry[M] | None] = OrderedDict()
        self._pending: dict[str, list[Pending[M]]] = {}
        self._writers: set[asyncio.Task[None]] = set()

    async def update(self, key: str, change: KeyChange[M]) -> M | None:
        """As `update`: applies `change` (returning the very value it was given, or None, writes nothing); returns
        what is stored once it is."""
        future: asyncio.Future[M | None] = asyncio.get_running_loop().create_future()
        waiting = self._pending.get(key)
        if waiting is not None:
            waiting.append((change, future))  # the key's writer takes it with its next write
        else:
            self._pending[key] = [(change, future)]
            writer = asyncio.create_task(self._write(key))
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await future

    async def update_many(self, changes: Mapping[str, KeyChange[M]]) -> dict[str, M | BaseException | None]:
        """`update` for many keys at once; per key, what is stored once it is, or the error that kept its change out.
        The keys this process is not writing yet are written together; a change to a key whose write is under way
        joins that key's next write."""
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[M | None]] = {}
        first: list[str] = []
        for key, change in changes.items():
            future: asyncio.Future[M | None] = loop.create_future()
            futures[key] = future
            waiting = self._pending.get(key)
            if waiting is not None:
                waiting.append((change, future))
            else:
                self._pending[key] = [(change, future)]
                first.append(key)
        if first:
            writer = asyncio.create_task(self._write_together(first))
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        outcomes = await asyncio.gather(*futures.values(), return_exceptions=True)
        return dict(zip(futures, outcomes, strict=True))

    async def _write_together(self, keys: list[str]) -> None:
        """Each key's pending changes in one write, all keys' writes sent together; then again, together, for the
        keys whose write lost (another replica wrote them: read again first) or that got more changes meanwhile,
        until none is left."""
        while keys:
            taken = {key: self._pending[key] for key in keys}
            for key in keys:
                self._pending[key] = []
            try:
                await self._apply_together(taken)
            except Exception as error:  # the bus failing: these changes are not known to be stored
                for batch in taken.values():
                    _settle(batch, error=error)
            still = []
            for key in keys:
                if self._pending[key]:
                    still.append(key)
                else:
                    del self._pending[key]  # no await since the check: nothing can have joined it
            keys = still

    async def _apply_together(self, taken: dict[str, list[Pending[M]]]) -> None:
        unknown = [key for key in taken if key not in self._known]
        read = dict(zip(unknown, await self._kv.get_all(unknown), strict=True))
        writes: list[tuple[str, M, int]] = []
        for key, batch in taken.items():
            entry = read[key] if key in read else self._known[key]
            current = entry.value if entry is not None else None
            try:
                wanted = _applied(current, batch)
            except Exception as error:  # this key's changes failed: the others still go
                _settle(batch, error=error)
                continue
            if wanted is None or wanted is current:
                self._keep(key, entry)
                _settle(batch, stored=current)
                continue
            writes.append((key, wanted, entry.revision if entry is not None else 0))
        for (key, wanted, _), outcome in zip(writes, await self._kv.update_all(writes), strict=True):
            if isinstance(outcome, KvConflict):
                # Another writer (or no answer): read again and apply them to that.
                self._known.pop(key, None)
                self._pending[key][:0] = taken[key]
                continue
            self._keep(key, Entry(key, outcome, wanted))
            _settle(taken[key], stored=wanted)

    async def _write(self, key: str) -> None:
        while batch := self._pending[key]:
            self._pending[key] = []
            try:
                stored = await self._apply(key, batch)
            except Exception as error:
                _settle(batch, error=error)
                continue
            _settle(batch, stored=stored)
        del self._pending[key]

    async def _apply(self, key: str, batch: list[Pending[M]]) -> M | None:
        while True:
            entry = self._known[key] if key in self._known else await self._kv.get(key)
            current = entry.value if entry is not None else None
            wanted = _applied(current, batch)
            if wanted is None or wanted is current:  # identity: comparing long records costs more than a write
                self._keep(key, entry)
                return current
            try:
                if entry is None:
                    revision = await self._kv.create(key, wanted)
                else:
                    revision = await self._kv.update(key, wanted, entry.revision)
            except KvConflict:
                self._known.pop(key, None)  # another writer: read what it stored
                continue
            self._keep(key, Entry(key, revision, wanted))
            return wanted

    def _keep(self, key: str, entry: Entry[M] | None) -> None:
        self._known[key] = entry
        self._known.move_to_end(key)
        while len(self._known) > self._remember:
            self._known.popitem(last=False)


def _applied(current: M | None, batch: list[Pending[M]]) -> M | None:
    """The value after the batch's changes in turn (a change returning None leaves it as it was)."""
    wanted = current
    for change, _ in batch:
        changed = change(wanted)
        wanted = changed if changed is not None else wanted
    return wanted


def _settle(batch: list[Pending[M]], *, stored: M | None = None, error: BaseException | None = None) -> None:
    """Tells the batch's callers what is stored, or why their change is not."""
    for _, future in batch:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(stored)


class SliStore:
    def __init__(self, webapps: KeyValue[WebAppRecord], causes: KeyValue[CauseWindow]) -> None:
        self.webapps = webapps
        self.causes = causes
        self._webapp_writes = Coalescer(webapps)

    async def update_webapp(
        self, namespace: str, name: str, change: Callable[[WebAppRecord], WebAppRecord]
    ) -> WebAppRecord | None:
        return await self._webapp_writes.update(webapp_key(namespace, name), _on_record(namespace, name, change))

    async def update_webapps(
        self, changes: Mapping[tuple[str, str], Callable[[WebAppRecord], WebAppRecord]]
    ) -> dict[tuple[str, str], WebAppRecord | BaseException | None]:
        """`update_webapp` for many WebApps (namespace, name) at once, written together; per WebApp, its stored
        record or the error that kept its change out."""
        keys = {webapp_key(*webapp): webapp for webapp in changes}
        outcomes = await self._webapp_writes.update_many(
            {key: _on_record(*webapp, changes[webapp]) for key, webapp in keys.items()}
        )
        return {keys[key]: outcome for key, outcome in outcomes.items()}

    async def update_cause(
        self, key: str, change: Callable[[CauseWindow | None], CauseWindow | None]
    ) -> CauseWindow | None:
        return await update(self.causes, key, change)


def _on_record(namespace: str, name: str, change: Callable[[WebAppRecord], WebAppRecord]) -> KeyChange[WebAppRecord]:
    """`change` applied to the WebApp's record, a new one if it has none yet."""

    def apply(record: WebAppRecord | None) -> WebAppRecord:
        return change(record if record is not None else WebAppRecord(namespace=namespace, name=name))

    return apply


class SliMirror:
    """The bucket's current records in memory, kept by watches."""

    def __init__(self, store: SliStore) -> None:
        self._store = store
        self.webapps: dict[tuple[str, str], WebAppRecord] = {}
        self.causes: dict[str, CauseWindow] = {}
        self._caught_up = [False, False]
        self.caught_up = asyncio.Event()  # both watches have delivered what was stored when they started

    def _watch_caught_up(self, index: int) -> None:
        self._caught_up[index] = True
        if all(self._caught_up):
            self.caught_up.set()

    async def follow(self, stop: asyncio.Event) -> None:
        # As every watch follows: a term can end while a watch is still being opened, and Python 3.11's wait_for
        # (in nats-py's consumer creation) may lose the cancel then; waiting for the watch to end hung the stop.
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(until_stopped(self._follow_webapps(), stop))
            tasks.create_task(until_stopped(self._follow_causes(), stop))

    async def _follow_webapps(self) -> None:
        async with self._store.webapps.watch("webapp.>") as changes:
            async for change in changes:
                if isinstance(change, CaughtUp):
                    self._watch_caught_up(0)
                    continue
                if change.value is not None:
                    record = change.value
                    self.webapps[(record.namespace, record.name)] = record
                else:
                    self.webapps = {k: v for k, v in self.webapps.items() if webapp_key(*k) != change.key}

    async def _follow_causes(self) -> None:
        async with self._store.causes.watch("cause.>") as changes:
            async for change in changes:
                if isinstance(change, CaughtUp):
                    self._watch_caught_up(1)
                elif change.value is None:
                    self.causes.pop(change.key, None)
                else:
                    self.causes[change.key] = change.value
