"""`data.inventory` for referential policies: the kinds a sync config names, watched, laid out as Gatekeeper's sync
lays them out (`cluster[apiVersion][kind][name]`, `namespace[ns][apiVersion][kind][name]`).

The kinds come from Gatekeeper `Config`s (`spec.sync.syncOnly: [{group, version, kind}]`: the policy files', and the
cluster's, which may change them at any time: the kinds are then watched anew) and from `BALLAST_SYNC_KINDS`
(`apiVersion/Kind`, comma-separated). Each is resolved by discovery and watched; a kind the API server does not serve
(the extensions/v1beta1 Ingress the library's sync.yaml still names) is skipped with a warning, as Gatekeeper skips
it. Changes are pushed to OPA as one document, at most every PUSH_INTERVAL (a burst of changes is one push). Until
every kind is listed and pushed once, the gate is not ready: a referential policy judged on a half-filled inventory
would allow what it should deny (a duplicate Ingress host, say). Kinds added later (a Config changed) do not make a
ready gate unready again: every replica would be at once, failing every admission request meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable

from ballast.kube import Informer
from ballast.kube.pacing import pause, until_any
from ballast.policy import PolicyEngine
from ballast.policy.exclusions import Exclusions
from ballast.policy_gate.cluster import Cluster, typed

log = logging.getLogger(__name__)

PUSH_INTERVAL = 0.1  # seconds


def parse_sync_kinds(entries: Iterable[str]) -> list[tuple[str, str]]:
    """`apps/v1/Deployment`, `v1/Namespace` → (apiVersion, kind); a malformed entry raises ValueError naming it."""
    kinds = []
    for entry in entries:
        api_version, _, kind = entry.strip().rpartition("/")
        if not api_version or not kind or api_version.count("/") > 1:
            raise ValueError(f"sync kind {entry!r} is not apiVersion/Kind (e.g. networking.k8s.io/v1/Ingress)")
        kinds.append((api_version, kind))
    return kinds


class Inventory:
    def __init__(
        self,
        cluster: Cluster,
        engine: PolicyEngine,
        kinds: Iterable[tuple[str, str]],
        exclusions: Callable[[], Exclusions] = Exclusions,
    ) -> None:
        self._cluster = cluster
        self._engine = engine
        self._exclusions = exclusions  # read at each push: a Config's "sync" exclusions may change
        self.kinds = sorted(set(kinds))
        self._informers: list[Informer] = []
        self._dirty = asyncio.Event()
        self._rewatch = asyncio.Event()
        self.pushed = asyncio.Event()

    def readiness(self) -> str | None:
        # Only the first sync holds readiness back. Kinds a Config adds later are pushed as soon as they are listed:
        # making every replica unready meanwhile would fail every admission request by the webhook's failure policy.
        return None if self.pushed.is_set() else "inventory not synced yet"

    def set_kinds(self, kinds: Iterable[tuple[str, str]]) -> None:
        """The kinds to keep from now on: watched anew if they changed (the objects of a kind no longer named leave
        the inventory at the next push)."""
        wanted = sorted(set(kinds))
        if wanted != self.kinds:
            self.kinds = wanted
            self._rewatch.set()

    def exclusions_changed(self) -> None:
        self._dirty.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._rewatch.clear()
            kinds = list(self.kinds)
            if not kinds:
                self._informers = []
                if self.pushed.is_set():  # kinds there were, none now: an empty inventory
                    await self._set_inventory()
                self.pushed.set()  # nothing to sync is synced
                await until_any(self._rewatch, stop)
                continue
            watching = asyncio.Event()  # until the kinds change or the gate stops
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._watch(kinds, watching))
                await until_any(self._rewatch, stop)
                watching.set()
            if not stop.is_set():
                log.info("sync kinds changed: watching them anew", extra={"kinds": [f"{v}/{k}" for v, k in self.kinds]})

    async def _watch(self, kinds: list[tuple[str, str]], stop: asyncio.Event) -> None:
        resources = []
        pending = list(kinds)
        while pending and not stop.is_set():
            api_version, kind = pending[0]
            try:
                resources.append(await self._cluster.resource(api_version, kind))
            except LookupError as exc:  # as Gatekeeper: a kind the API server does not serve is not synced
                log.warning("not synced: %s", exc)
            except Exception as exc:  # the API server away: discovery is asked again
                log.warning("discovery of %s/%s failed (%s); retrying", api_version, kind, exc)
                await pause(stop, 2.0)
                continue
            pending.pop(0)
        self._informers = [Informer(self._cluster.api, r, transform=typed(r)) for r in resources]
        for informer in self._informers:
            informer.subscribe(lambda *_: self._dirty.set())
        async with asyncio.TaskGroup() as tasks:
            for informer in self._informers:
                tasks.create_task(informer.run(stop))
            tasks.create_task(self._push(stop))

    async def _push(self, stop: asyncio.Event) -> None:
        for informer in self._informers:
            await until_any(informer.synced, stop)
        while not stop.is_set():
            self._dirty.clear()
            await self._set_inventory()
            await until_any(self._dirty, stop)
            await pause(stop, PUSH_INTERVAL)

    async def _set_inventory(self) -> None:
        excluded = self._exclusions()  # a Config's "sync" exclusions stay out of data.inventory
        objects = (
            obj
            for obj in itertools.chain.from_iterable(i.store.values() for i in self._informers)
            if not excluded.excludes("sync", obj)
        )
        try:
            await self._engine.set_inventory(objects)
        except Exception as exc:  # OPA restarting: it gets the inventory with everything else when it is back
            log.warning("inventory not pushed: %s", exc)
        else:
            if not self.pushed.is_set():
                log.info("inventory synced", extra={"kinds": [f"{v}/{k}" for v, k in self.kinds]})
            self.pushed.set()
