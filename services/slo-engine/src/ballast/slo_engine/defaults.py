"""A default availability SLO for every WebApp: `<webapp>-availability` in the WebApp's namespace, owned by it (the
garbage collector deletes it with the WebApp), unless the WebApp carries the annotation
`platform.example.com/default-slo: "false"`; setting the annotation later deletes the default SLO.

The default is created once and then left to its users: an objective tuned by hand is not put back. Deleted by hand
while the WebApp still wants it, it is created again (the annotation is the way to switch it off). An SLO of that
name that the engine did not create is never touched.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ballast.kube.apply import delete
from ballast.kube.controller import Controller, ControllerMetrics, Result
from ballast.kube.errors import Conflict
from ballast.kube.handler import label_value, own_key
from ballast.kube.informer import Informer, ObjectKey
from ballast.kube.resource import WEBAPP
from ballast.kube.rest import KubeApi, send_json
from ballast.slo.crd import API_VERSION, KIND
from ballast.slo.objective import SLO_NAME
from ballast.slo_engine.controller import SLO

log = logging.getLogger(__name__)

DEFAULT_SLO_ANNOTATION = "platform.example.com/default-slo"
MANAGED_BY = ("app.kubernetes.io/managed-by", "ballast-slo-engine")
WEBAPP_LABEL = "platform.example.com/webapp"  # on a default SLO: the WebApp it measures
ALERT_NAME = "WebAppAvailabilityBurn"


def default_slo_name(webapp: str) -> str:
    return f"{webapp}-availability"


def wants_default_slo(webapp: dict[str, Any]) -> bool:
    annotations: dict[str, str] = webapp["metadata"].get("annotations") or {}
    return annotations.get(DEFAULT_SLO_ANNOTATION, "true").strip().lower() != "false"


def is_default_of(slo: dict[str, Any], webapp: dict[str, Any]) -> bool:
    """Whether the engine created `slo` for this very WebApp (not an earlier one of the same name)."""
    metadata = slo["metadata"]
    owned = any(ref.get("uid") == webapp["metadata"]["uid"] for ref in metadata.get("ownerReferences") or ())
    return owned and (metadata.get("labels") or {}).get(MANAGED_BY[0]) == MANAGED_BY[1]


def default_slo(webapp: dict[str, Any], objective: float, window: str) -> dict[str, Any]:
    """The default SLO of a WebApp (pure)."""
    metadata = webapp["metadata"]
    name = metadata["name"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": default_slo_name(name),
            "namespace": metadata["namespace"],
            "labels": {MANAGED_BY[0]: MANAGED_BY[1], WEBAPP_LABEL: name},
            "ownerReferences": [
                {
                    "apiVersion": WEBAPP.api_version,
                    "kind": WEBAPP.kind,
                    "name": name,
                    "uid": metadata["uid"],
                    "controller": True,
                },
            ],
        },
        "spec": {
            "service": name,
            "description": (
                f"Default availability SLO of WebApp {name}: up while its ready replicas meet the desired ones. "
                f'Annotate the WebApp {DEFAULT_SLO_ANNOTATION}: "false" to remove it.'
            ),
            "objective": objective,
            "window": {"type": "Rolling", "duration": window},
            "sli": {"webAppAvailability": {"webApp": name}},
            "alerting": {"name": ALERT_NAME},
        },
    }


class DefaultSlos:
    """Keeps each WebApp's default SLO; `slos` is the SLO controller's informer (one SLO cache per process)."""

    def __init__(
        self,
        api: KubeApi,
        slos: Informer,
        metrics: ControllerMetrics,
        *,
        objective: float,
        window: str,
        workers: int = 2,
    ) -> None:
        self._api = api
        self._slos = slos
        self._objective = objective
        self._window = window
        self.webapps = Informer(api, WEBAPP)
        self.controller: Controller[ObjectKey] = Controller("default-slo", self.reconcile, metrics, workers=workers)
        self.controller.watch(self.webapps, own_key)
        self.controller.watch(slos, label_value(WEBAPP_LABEL))

    async def run(self, stop: asyncio.Event) -> None:
        """Runs the WebApp informer and the controller; the SLO informer is run by its owner."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.webapps.run(stop))
            tasks.create_task(self.controller.run(stop))

    async def reconcile(self, key: ObjectKey) -> Result:
        namespace, name = key
        webapp = self.webapps.store.get(key)
        if webapp is None:
            return Result()  # gone: its default SLO goes with it (owner reference)
        slo_name = default_slo_name(name)
        existing = self._slos.store.get((namespace, slo_name))
        if not wants_default_slo(webapp):
            if existing is not None and is_default_of(existing, webapp):
                await delete(self._api, SLO, namespace, slo_name)
                log.info("default SLO removed as annotated", extra={"slo": f"{namespace}/{slo_name}"})
            return Result()
        if existing is not None or SLO_NAME.match(slo_name) is None or len(slo_name) > 253:
            return Result()  # there (ours or someone's), or no valid name to give it
        try:
            await send_json(
                self._api,
                "POST",
                SLO.collection(namespace),
                body=default_slo(webapp, self._objective, self._window),
            )
        except Conflict:
            return Result()  # created meanwhile (by us before the cache saw it, or by someone)
        log.info("default SLO created", extra={"slo": f"{namespace}/{slo_name}"})
        return Result()
