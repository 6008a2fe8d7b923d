"""ConstraintTemplates and their constraints read from the cluster, as Gatekeeper reads them.

The templates (`templates.gatekeeper.sh/v1`) are watched; each one is compiled into the engine, then the CRD of its
constraint kind is generated and installed (`ballast.policy.crds`) and the constraints of that kind are watched. A
template OPA refuses gets the compiler's message on its status (`status.byPod[].errors`, `created: false`) and costs
nothing else: the other templates stay loaded, and a refused new version leaves the previous one in force. A
template deleted takes its constraint kind (CRD and constraints) with it, as in Gatekeeper.

One worker reconciles the templates, so OPA is never loading two versions of the same modules at once. Status
writes do not requeue (only a spec change, `metadata.generation`, does). Each replica writes its own entry in the
templates' and constraints' `status.byPod` (`pod_status`): what it loaded and, for a constraint, whether it enforces
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from ballast.kube import ApiError, Controller, ControllerMetrics, Informer, KubeApi, NotFound, Result, WatchEvent
from ballast.kube.handler import own_key
from ballast.kube.informer import ObjectKey
from ballast.kube.pacing import pause
from ballast.kube.predicate import generation_changed
from ballast.kube.resource import CUSTOM_RESOURCE_DEFINITION, Resource
from ballast.kube.rest import send_json
from ballast.policy import Constraint, ConstraintError, ConstraintTemplate, PolicyEngine, TemplateError
from ballast.policy.constraints import API_GROUP as CONSTRAINTS_GROUP
from ballast.policy.crds import STORED_VERSION, constraint_crd, crd_name, plural
from ballast.policy_gate.pod_status import Live, has_gone, write_by_pod

log = logging.getLogger(__name__)

TEMPLATE = Resource("templates.gatekeeper.sh", "v1", "constrainttemplates", "ConstraintTemplate", namespaced=False)
CRD_READY_TIMEOUT = 30.0


def constraint_resource(template: ConstraintTemplate) -> Resource:
    return Resource(CONSTRAINTS_GROUP, STORED_VERSION, plural(template), template.kind, namespaced=False)


class CrdNotReady(Exception):
    """The constraint CRD was refused or did not become Established; the message says why."""


@dataclass
class _ConstraintWatch:
    informer: Informer
    resource: Resource
    stop: asyncio.Event


OPERATIONS = ("audit", "webhook")  # what each replica does with what it loaded (Gatekeeper's `operations`)


class ClusterPolicies:
    def __init__(
        self,
        api: KubeApi,
        engine: PolicyEngine,
        metrics: ControllerMetrics,
        identity: str,
        live: Live = lambda: None,
        reassert_interval: float = 30.0,
    ) -> None:
        self._api = api
        self._reassert_interval = reassert_interval  # between looks for this replica's status entries gone missing
        self._engine = engine
        self._identity = identity
        self._live = live
        self.templates = Informer(api, TEMPLATE)
        self.controller: Controller[ObjectKey] = Controller("constrainttemplates", self._reconcile, metrics, workers=1)
        self.controller.watch(self.templates, own_key, generation_changed)
        # This replica's entry in each constraint's `status.byPod`, written when it loads (or refuses) a generation.
        self.constraint_status: Controller[tuple[str, str]] = Controller(
            "constraint-status", self._write_constraint_status, metrics, workers=2
        )
        self._refused: dict[tuple[str, str], str] = {}  # (kind, name) -> why this replica does not use it
        self._template_entries: dict[str, tuple[dict[str, Any], bool]] = {}  # name -> (its entry, `created`) written
        self._kinds: dict[str, str] = {}  # template name -> the kind loaded for it
        self._watches: dict[str, _ConstraintWatch] = {}  # kind -> its constraints' informer
        self._seen: set[str] = set()  # templates reconciled at least once (loaded or refused)
        self._tasks: asyncio.TaskGroup | None = None

    def readiness(self) -> str | None:
        if not self.templates.synced.is_set():
            return "ConstraintTemplates not listed yet"
        pending = {name for _, name in self.templates.store} - self._seen
        if pending:
            return f"ConstraintTemplates not loaded yet: {', '.join(sorted(pending))}"
        waiting = [kind for kind, watch in self._watches.items() if not watch.informer.synced.is_set()]
        return f"constraints not listed yet: {', '.join(sorted(waiting))}" if waiting else None

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            tasks.create_task(self.templates.run(stop))
            tasks.create_task(self.controller.run(stop))
            tasks.create_task(self.constraint_status.run(stop))
            tasks.create_task(self._reassert(stop))
            await stop.wait()
            for watch in self._watches.values():
                watch.stop.set()

    async def _reconcile(self, key: ObjectKey) -> Result:
        name = key[1]
        try:
            return await self._sync(name)
        finally:
            self._seen.add(name)

    async def _sync(self, name: str) -> Result:
        obj = self.templates.store.get(("", name))
        if obj is None:
            self._template_entries.pop(name, None)
            kind = self._kinds.pop(name, None)
            if kind is not None:
                await self._forget_kind(kind)
            return Result()
        generation = (obj.get("metadata") or {}).get("generation")
        try:
            template = ConstraintTemplate.from_manifest(obj)
            loaded = self._kinds.get(name)
            if loaded is not None and loaded != template.kind:
                await self._forget_kind(loaded)
                self._kinds.pop(name)
            await self._engine.add_template(template)
        except TemplateError as exc:
            log.error("ConstraintTemplate %s refused: %s", name, exc)
            await self._write_status(name, generation, created=name in self._kinds, errors=[("ingest_error", exc)])
            return Result()  # nothing to retry: the template itself must change
        self._kinds[name] = template.kind
        try:
            await self._install_crd(template)
        except (CrdNotReady, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.transient:
                raise
            log.error("constraint CRD of %s refused: %s", name, exc)
            await self._write_status(name, generation, created=False, errors=[("create_error", exc)])
            return Result()
        self._watch_constraints(template)
        await self._write_status(name, generation, created=True, errors=[])
        log.info("ConstraintTemplate loaded", extra={"template": name, "kind": template.kind})
        return Result()

    async def _forget_kind(self, kind: str) -> None:
        await self._engine.remove_template(kind)
        watch = self._watches.pop(kind, None)
        if watch is not None:
            watch.stop.set()
        # Gatekeeper removes the constraint kind with its template; the CRD's deletion removes its constraints.
        with contextlib.suppress(NotFound):
            path = CUSTOM_RESOURCE_DEFINITION.path(None, f"{kind.lower()}.{CONSTRAINTS_GROUP}")
            await send_json(self._api, "DELETE", path)
        log.info("constraint kind removed with its template", extra={"kind": kind})

    async def _install_crd(self, template: ConstraintTemplate) -> None:
        crd = constraint_crd(template)
        path = CUSTOM_RESOURCE_DEFINITION.path(None, crd_name(template))
        try:
            current = await send_json(self._api, "GET", path)
        except NotFound:
            await send_json(self._api, "POST", CUSTOM_RESOURCE_DEFINITION.collection(), body=crd)
        else:
            crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if current.get("spec") != crd["spec"] or current["metadata"].get("labels") != crd["metadata"]["labels"]:
                await send_json(self._api, "PUT", path, body=crd)
        await self._until_established(path)

    async def _until_established(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CRD_READY_TIMEOUT
        while True:
            current = await send_json(self._api, "GET", path)
            conditions = {c.get("type"): c for c in (current.get("status") or {}).get("conditions") or []}
            names = conditions.get("NamesAccepted") or {}
            if names.get("status") == "False":
                raise CrdNotReady(f"names not accepted: {names.get('message')}")
            if (conditions.get("Established") or {}).get("status") == "True":
                return
            if loop.time() >= deadline:
                raise CrdNotReady(f"not Established within {CRD_READY_TIMEOUT:.0f}s")
            await asyncio.sleep(0.1)

    def _watch_constraints(self, template: ConstraintTemplate) -> None:
        kind = template.kind
        if kind in self._watches:
            return

        resource = constraint_resource(template)
        informer = Informer(self._api, resource)
        engine = self._engine
        refused = self._refused
        status = self.constraint_status

        def changed(event: WatchEvent, new: dict[str, Any], old: dict[str, Any] | None) -> None:
            name = str((new.get("metadata") or {}).get("name"))
            if event == "DELETED":
                engine.remove_constraint(kind, name)
                refused.pop((kind, name), None)
                return
            try:
                engine.add_constraint(Constraint.from_manifest(new))
                refused.pop((kind, name), None)
            except ConstraintError as exc:
                log.error("constraint %s/%s not used: %s", kind, name, exc)
                engine.remove_constraint(kind, name)
                refused[(kind, name)] = str(exc)
            if generation_changed(event, new, old):  # not for its status written (this replica's, or the audit's)
                status.enqueue((kind, name))

        informer.subscribe(changed)
        watch = _ConstraintWatch(informer, resource, asyncio.Event())
        self._watches[kind] = watch
        assert self._tasks is not None, "run() first"
        self._tasks.create_task(informer.run(watch.stop))

    async def _write_status(
        self, name: str, generation: Any, *, created: bool, errors: list[tuple[str, Exception]]
    ) -> None:
        """Gatekeeper's template status: `created` and this replica's entry in `byPod` with the errors."""
        obj = self.templates.store.get(("", name)) or {}
        entry = {
            "id": self._identity,
            "observedGeneration": generation,
            "operations": list(OPERATIONS),
            "templateUID": (obj.get("metadata") or {}).get("uid"),
            "errors": [{"code": code, "message": str(exc)} for code, exc in errors],
        }
        self._template_entries[name] = (entry, created)
        await write_by_pod(self._api, TEMPLATE.path(None, name), self._identity, entry, self._live(), created=created)

    async def _reassert(self, stop: asyncio.Event) -> None:
        """Now and then, writes again this replica's entries missing from the status (dropped while its heartbeats
        were not seen, or a write lost)."""
        while not stop.is_set():
            await pause(stop, self._reassert_interval)
            if stop.is_set():
                return
            for (_, name), obj in list(self.templates.store.items()):
                written = self._template_entries.get(name)
                if written is None or self._has_entry(obj):
                    continue
                entry, created = written
                try:
                    await write_by_pod(
                        self._api, TEMPLATE.path(None, name), self._identity, entry, self._live(), created=created
                    )
                except ApiError as exc:  # the next pass tries again
                    log.warning("writing again this replica's status entry of %s failed: %s", name, exc)
            for kind, watch in list(self._watches.items()):
                for (_, name), obj in list(watch.informer.store.items()):
                    if not self._has_entry(obj):
                        self.constraint_status.enqueue((kind, name))

    def _has_entry(self, obj: dict[str, Any]) -> bool:
        entries = (obj.get("status") or {}).get("byPod")
        return isinstance(entries, list) and any(isinstance(e, dict) and e.get("id") == self._identity for e in entries)

    async def _write_constraint_status(self, key: tuple[str, str]) -> Result:
        """This replica's entry in a constraint's `byPod`: whether it enforces the generation it read, and why not."""
        kind, name = key
        watch = self._watches.get(kind)
        obj = watch.informer.store.get(("", name)) if watch is not None else None
        if watch is None or obj is None:
            return Result()  # deleted meanwhile: nothing to write to
        metadata = obj.get("metadata") or {}
        why = self._refused.get(key)
        entry = {
            "id": self._identity,
            "constraintUID": metadata.get("uid"),
            "enforced": why is None,
            "observedGeneration": metadata.get("generation"),
            "operations": list(OPERATIONS),
            "errors": [] if why is None else [{"code": "constraint_error", "message": why}],
        }
        await write_by_pod(self._api, watch.resource.path(None, name), self._identity, entry, self._live())
        return Result()

    async def prune_gone(self) -> int:
        """Drops the `byPod` entries of replicas gone from every template's and constraint's status; how many objects
        were written. Run by the leader now and then."""
        live = self._live()
        if live is None:
            return 0
        targets = [(TEMPLATE, obj) for obj in self.templates.store.values()]
        targets += [(w.resource, obj) for w in list(self._watches.values()) for obj in w.informer.store.values()]
        written = 0
        for resource, obj in targets:
            if not has_gone((obj.get("status") or {}).get("byPod"), self._identity, live):
                continue
            name = str((obj.get("metadata") or {}).get("name"))
            path = resource.path(None, name)
            try:
                written += await write_by_pod(self._api, path, self._identity, None, live)
            except ApiError as exc:  # the next pass tries again
                log.warning("dropping gone replicas from %s %s failed: %s", resource.kind, name, exc)
        return written
