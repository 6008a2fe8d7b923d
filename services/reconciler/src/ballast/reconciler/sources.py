"""What the WebApp controller watches, and how a change maps to the WebApp it concerns.

WebApps and Tenants by their own key; each child kind by its controller owner (or, failing that, the instance label
every child carries); pods by that label, since they belong to a ReplicaSet, not to the WebApp. Children and pods are
watched across namespaces with the managed-by label, so the caches hold only what the reconciler made.

The ServiceMonitor kind exists only where the prometheus-operator's CRD is installed: its CRD is watched, and the
ServiceMonitor informer runs (and monitoring is rendered) only while the CRD is Established — found at start or when
it appears, dropped when it goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ballast.kube.handler import controller_owner, first_of, label_value
from ballast.kube.informer import Informer, WatchHandler
from ballast.kube.pacing import until_any
from ballast.kube.resource import CUSTOM_RESOURCE_DEFINITION, DEPLOYMENT, POD, SERVICE_MONITOR, TENANT, WEBAPP
from ballast.kube.rest import KubeApi
from ballast.reconciler.children import CHILD_KINDS, ChildKind, ChildType, slim_pod
from ballast.reconciler.memory import WebAppKey
from ballast.reconciler.render import INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL

log = logging.getLogger(__name__)

PODS_BY_WEBAPP = "webapp"
# Children are found by their controller owner; the label is the fallback for one whose owner reference was removed.
owning_webapp = first_of(controller_owner(WEBAPP.kind), label_value(INSTANCE_LABEL))
pod_webapp = label_value(INSTANCE_LABEL)


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


class WebAppSources:
    def __init__(self, api: KubeApi) -> None:
        self._api = api
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
        self._relist_handlers: list[Callable[[ChildType], None]] = []
        self.webapps = Informer(api, WEBAPP)
        self.tenants = Informer(api, TENANT)
        self.children: dict[ChildType, Informer] = {
            kind.type: self._child_informer(kind) for kind in CHILD_KINDS if not kind.optional
        }
        self.pods = Informer(api, POD, label_selector=selector, transform=slim_pod)
        # A status from a scan of every pod would cost O(pods) per reconcile, O(pods²) across a cluster.
        self.pods.add_index(PODS_BY_WEBAPP, pod_webapp)
        self.service_monitor_crd = Informer(
            api, CUSTOM_RESOURCE_DEFINITION, field_selector=f"metadata.name={SERVICE_MONITOR.name}"
        )
        self.service_monitors_enabled = False
        self._optional_handlers: list[WatchHandler] = []
        self._crd_changed = asyncio.Event()
        self._settled = asyncio.Event()
        self._on_optional_kinds: Callable[[], None] = lambda: None
        self.service_monitor_crd.subscribe(lambda _event, _new, _old: self._crd_changed.set())

    def _child_informer(self, kind: ChildKind) -> Informer:
        informer = Informer(
            self._api, kind.resource, label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}", transform=kind.slim
        )
        informer.on_relist(lambda: self._relisted(kind.type))
        return informer

    def _relisted(self, kind: ChildType) -> None:
        for handler in self._relist_handlers:
            handler(kind)

    @property
    def always(self) -> list[Informer]:
        """The informers that run from the start (the optional kinds' come and go with their CRD)."""
        return [self.webapps, self.tenants, self.pods, self.service_monitor_crd, *self.children.values()]

    @property
    def deployments(self) -> Informer:
        return self.children[DEPLOYMENT.type_key]

    def subscribe_optional(self, handler: WatchHandler) -> None:
        """`handler` for the optional kinds' changes, while they are watched."""
        self._optional_handlers.append(handler)

    def on_child_relist(self, handler: Callable[[ChildType], None]) -> None:
        """`handler(kind)` after a child kind's cache was relisted following a gap in its watch (the optional kinds'
        included)."""
        self._relist_handlers.append(handler)

    async def settled(self, stop: asyncio.Event) -> bool:
        """Waits until it is known whether the optional kinds are served (and, where they are, their caches have
        synced); False if `stop` came first."""
        await until_any(self._settled, stop)
        return self._settled.is_set()

    def on_optional_kinds(self, changed: Callable[[], None]) -> None:
        """`changed()` once an optional kind starts or stops being watched (every WebApp renders differently)."""
        self._on_optional_kinds = changed

    # -- lookups for a reconcile -------------------------------------------------------------------------------------

    def cached_children(self, key: WebAppKey) -> dict[ChildType, dict[str, Any] | None]:
        return {kind: informer.store.get(key) for kind, informer in self.children.items()}

    def deployment_of(self, key: WebAppKey) -> dict[str, Any] | None:
        return self.deployments.store.get(key)

    def pods_of(self, key: WebAppKey) -> list[dict[str, Any]]:
        return self.pods.by_index(PODS_BY_WEBAPP, key)

    def has_children(self, key: WebAppKey) -> bool:
        return bool(self.pods_of(key)) or any(key in informer.store for informer in self.children.values())

    # -- the optional kinds ------------------------------------------------------------------------------------------

    def _crd_established(self) -> bool:
        crd = self.service_monitor_crd.store.get(("", SERVICE_MONITOR.name))
        return crd is not None and _established(crd)

    async def run_optional_kinds(self, stop: asyncio.Event) -> None:
        """Runs the ServiceMonitor informer while its CRD is Established."""
        kind = next(kind for kind in CHILD_KINDS if kind.resource is SERVICE_MONITOR)
        await until_any(self.service_monitor_crd.synced, stop)
        while not stop.is_set():
            self._crd_changed.clear()  # before looking: a change from here on wakes the wait below
            if self._crd_established():
                await self._watch_optional(kind, stop)
            else:
                self._settled.set()
                await until_any(self._crd_changed, stop)

    async def _watch_optional(self, kind: ChildKind, stop: asyncio.Event) -> None:
        """Watches the kind until its CRD goes or `stop`. Monitoring is rendered only once its cache has synced, so
        a reconcile never takes a ServiceMonitor not listed yet for a missing one."""
        informer = self._child_informer(kind)
        for handler in self._optional_handlers:
            informer.subscribe(handler)
        ended = asyncio.Event()
        running = asyncio.ensure_future(informer.run(ended))
        try:
            while not informer.synced.is_set():
                self._crd_changed.clear()
                if stop.is_set() or not self._crd_established():
                    return
                await until_any(informer.synced, self._crd_changed, stop)
            self._settled.set()
            self.children[kind.type] = informer
            self.service_monitors_enabled = True
            log.info("%s installed: watching and rendering %s", kind.resource.name, kind.resource.kind)
            self._on_optional_kinds()
            while not stop.is_set():
                self._crd_changed.clear()
                if not self._crd_established():
                    return
                await until_any(self._crd_changed, stop)
        finally:
            ended.set()
            await running
            if self.children.pop(kind.type, None) is not None:
                self.service_monitors_enabled = False
                log.info("%s removed: no longer rendering %s", kind.resource.name, kind.resource.kind)
                self._on_optional_kinds()
