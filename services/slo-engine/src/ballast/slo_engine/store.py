"""The SLI facts the engine keeps in the `slo-sli` bucket: one record per WebApp (`webapp.<ns>.<name>`) and one
window per chaos run or incident (`cause.<kind>.<ns>.<digest>`).

Every replica handles a share of the facts (the consumers are shared), so writes are compare-and-set: a write that
lost the race reads the winner's record and applies its fact to that. `SliMirror` follows the bucket for the
evaluator, which measures from memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

from ballast.bus.kv import CaughtUp, KeyValue, KvConflict
from ballast.slo_engine.availability import WebAppRecord
from ballast.slo_engine.causes import CauseWindow

M = TypeVar("M", bound=BaseModel)


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


class SliStore:
    def __init__(self, webapps: KeyValue[WebAppRecord], causes: KeyValue[CauseWindow]) -> None:
        self.webapps = webapps
        self.causes = causes

    async def update_webapp(
        self, namespace: str, name: str, change: Callable[[WebAppRecord], WebAppRecord]
    ) -> WebAppRecord | None:
        def apply(record: WebAppRecord | None) -> WebAppRecord:
            return change(record if record is not None else WebAppRecord(namespace=namespace, name=name))

        return await update(self.webapps, webapp_key(namespace, name), apply)

    async def update_cause(
        self, key: str, change: Callable[[CauseWindow | None], CauseWindow | None]
    ) -> CauseWindow | None:
        return await update(self.causes, key, change)


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
        async with asyncio.TaskGroup() as tasks:
            followers = [
                tasks.create_task(self._follow_webapps()),
                tasks.create_task(self._follow_causes()),
            ]
            await stop.wait()
            for follower in followers:
                follower.cancel()

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
