"""Gatekeeper's `Config` read from the cluster, as Gatekeeper reads it: one object (`config` in the gate's Gatekeeper
namespace, `BALLAST_GATEKEEPER_CONFIG`), whose `spec.match` leaves namespaces out of processes and whose
`spec.sync.syncOnly` names the kinds kept in `data.inventory`. It adds to what the policy files' Configs say.

Gatekeeper's own CRD (`configs.config.gatekeeper.sh`) must be installed for there to be one; while it is not, the gate
says so once and looks again every CRD_RECHECK seconds, and the policy files' Configs are all there is (so the gate is
ready without it). A Config the gate cannot read (a bad `spec.match` entry) is refused naming the entry, and what was
in force stays; its deletion takes its exclusions and sync kinds away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ballast.kube import Informer, KubeApi, NotFound, WatchEvent
from ballast.kube.pacing import pause, until_any
from ballast.kube.resource import CUSTOM_RESOURCE_DEFINITION, Resource
from ballast.kube.rest import send_json
from ballast.policy.documents import DocumentError
from ballast.policy.exclusions import Exclusions, config_exclusions
from ballast.policy.policyset import CONFIG_GROUP, sync_only

log = logging.getLogger(__name__)

CONFIG = Resource(CONFIG_GROUP, "v1alpha1", "configs", "Config")
CRD_RECHECK = 30.0  # seconds between looks for Gatekeeper's Config CRD while it is not installed

SyncKinds = list[tuple[str, str]]  # (apiVersion, kind)
ConfigChanged = Callable[[Exclusions, SyncKinds], None]


def config_location(value: str) -> tuple[str, str] | None:
    """`namespace/name` → (namespace, name); "" → None (no Config read from the cluster). ValueError otherwise."""
    if not value:
        return None
    namespace, _, name = value.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"Gatekeeper Config {value!r} is not namespace/name (e.g. gatekeeper-system/config)")
    return namespace, name


class ClusterConfig:
    def __init__(self, api: KubeApi, namespace: str, name: str, changed: ConfigChanged) -> None:
        self._api = api
        self.namespace, self.name = namespace, name
        self._changed = changed
        self.synced = asyncio.Event()  # the Config listed (or its CRD found missing): the gate can judge
        self.problem: str | None = None  # why the Config in the cluster is not in force
        self.in_force: tuple[Exclusions, SyncKinds] = (Exclusions(), [])

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def run(self, stop: asyncio.Event) -> None:
        told_missing = False
        while not stop.is_set():
            if not await self._crd_installed(stop):
                if not told_missing:
                    log.info("no Gatekeeper Config CRD (%s): Configs come from the policy files only", CONFIG.name)
                    told_missing = True
                self.synced.set()
                await pause(stop, CRD_RECHECK)
                continue
            log.info("reading Gatekeeper Config %s from the cluster", self.key)
            informer = Informer(
                self._api, CONFIG, namespace=self.namespace, field_selector=f"metadata.name={self.name}"
            )
            informer.subscribe(self._on_event)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(informer.run(stop))
                await until_any(informer.synced, stop)
                self.synced.set()
            return

    async def _crd_installed(self, stop: asyncio.Event) -> bool:
        path = CUSTOM_RESOURCE_DEFINITION.path(None, CONFIG.name)
        delay = 0.2
        while not stop.is_set():
            try:
                await send_json(self._api, "GET", path)
                return True
            except NotFound:
                return False
            except Exception as exc:  # the API server away: asked again
                log.warning("looking for the Gatekeeper Config CRD failed (%s); retrying", exc)
                await pause(stop, delay)
                delay = min(delay * 2, 10.0)
        return False

    def _on_event(self, event: WatchEvent, new: dict[str, Any], _: dict[str, Any] | None) -> None:
        if event == "DELETED":
            self.problem = None
            self._apply(Exclusions(), [], "deleted")
            return
        try:
            exclusions, kinds = Exclusions.of(config_exclusions(new)), sync_only(new)
        except DocumentError as exc:
            self.problem = f"Gatekeeper Config {self.key} refused: {exc}"
            log.error("%s; what was in force stays", self.problem)
            return
        self.problem = None
        self._apply(exclusions, kinds, "read")

    def _apply(self, exclusions: Exclusions, kinds: SyncKinds, what: str) -> None:
        if (exclusions, kinds) == self.in_force:
            return
        self.in_force = (exclusions, kinds)
        log.info(
            "Gatekeeper Config %s %s",
            self.key,
            what,
            extra={
                "excluded": [
                    {"namespaces": list(e.namespaces), "processes": sorted(e.processes)} for e in exclusions.entries
                ],
                "sync": [f"{v}/{k}" for v, k in kinds],
            },
        )
        self._changed(exclusions, kinds)
