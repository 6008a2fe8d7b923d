"""The error-budget policy: while an SLO's budget is exhausted (and its policy freezes deploys), changes to what the
service's WebApps run are refused, at admission and on the bus, unless they are a hotfix or a rollback.

- Which WebApps: those in the SLO's namespace named after the SLO's service, or labelled
  `platform.example.com/service: <service>`.
- What a change is: a new image or environment (`spec.image`, `spec.env`) — what a deploy changes. Scaling, resources,
  autoscaling and the rest stay allowed: they are how an incident is mitigated.
- Hotfix: the annotation `platform.example.com/hotfix-reason` with a reason lets the change through; the decision is
  logged as allowed with the freeze it overrode and the reason (`override_reason`), which the incident-bot opens on.
- Rollback: an image one of the WebApp's Deployment's ReplicaSets ran (Kubernetes keeps `revisionHistoryLimit` of
  them, as `kubectl rollout undo` uses them), with the environment unchanged. The reconciler keeps no image history of
  its own; the ReplicaSets are the cluster's record of what ran.

The state comes from the `evt.slo` budget_exhausted/budget_recovered events: replayed from PLATFORM_EVENTS at start
(the gate is not ready before it has caught up), then followed. Every replica reads them all itself (an ephemeral
reader, not a shared durable consumer, which would hand each replica only some). A gate restarted mid-freeze is
frozen again before it answers. The stream keeps 30 days: a freeze older than that with no recovery since is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ballast.bus import Bus
from ballast.events.catalogue import PLATFORM_EVENTS
from ballast.events.contracts.policy import ERROR_BUDGET_FREEZE, EnforcementAction
from ballast.events.contracts.slo import BudgetExhausted, BudgetRecovered, SloEvent, SloRef, slo_subject
from ballast.kube.pacing import pause
from ballast.policy import Constraint, Match, Violation

log = logging.getLogger(__name__)

HOTFIX_ANNOTATION = "platform.example.com/hotfix-reason"
SERVICE_LABEL = "platform.example.com/service"
FREEZE_KIND = ERROR_BUDGET_FREEZE
WEBAPP_API_GROUP = "platform.example.com"

PreviousImages = Callable[[str, str], Awaitable[set[str] | None]]  # (namespace, webapp) -> images ran, None: unknown


@dataclass(frozen=True)
class Freeze:
    slo: SloRef
    since: datetime
    budget_remaining: float
    threshold: float

    @property
    def constraint(self) -> Constraint:
        return Constraint(FREEZE_KIND, f"{self.slo.namespace}/{self.slo.name}", Match())

    def message(self, webapp: str) -> str:
        left = f"{self.budget_remaining:.1%} left" if self.budget_remaining > 0 else "overspent"
        return (
            f"the error budget of SLO {self.slo.namespace}/{self.slo.name} (service {self.slo.service}) is exhausted "
            f"since {self.since.isoformat()} ({left}, frozen at or below {self.threshold:.1%}): changes to the image "
            f"or environment of WebApp {webapp} are frozen until the budget recovers. A rollback to an image it ran "
            f"before is allowed; to deploy a hotfix, annotate the WebApp with {HOTFIX_ANNOTATION}=<reason> "
            "(recorded in the decision log)"
        )


@dataclass(frozen=True)
class FreezeVerdict:
    violations: tuple[Violation, ...] = ()
    override_reason: str | None = None


class FreezeBook:
    """The freezes in force, by SLO, from the budget transitions in the order of their `at`."""

    def __init__(self) -> None:
        self._freezes: dict[tuple[str, str], Freeze] = {}
        self._last_at: dict[tuple[str, str], datetime] = {}
        self.caught_up = asyncio.Event()

    def apply(self, transition: BudgetExhausted | BudgetRecovered) -> None:
        key = (transition.slo.namespace, transition.slo.name)
        last = self._last_at.get(key)
        if last is not None and transition.at <= last:
            return  # told again (a replay, a duplicate) or older than what is known
        self._last_at[key] = transition.at
        if isinstance(transition, BudgetExhausted) and transition.freeze_deploys:
            self._freezes[key] = Freeze(
                transition.slo, transition.at, transition.budget_remaining, transition.threshold
            )
            log.warning(
                "error budget freeze", extra={"slo": f"{key[0]}/{key[1]}", "slo_service": transition.slo.service}
            )
        elif self._freezes.pop(key, None) is not None:
            log.info("error budget freeze lifted", extra={"slo": f"{key[0]}/{key[1]}"})

    @property
    def freezes(self) -> list[Freeze]:
        return list(self._freezes.values())

    def in_namespace(self, namespace: str) -> bool:
        return any(f.slo.namespace == namespace for f in self._freezes.values())

    def for_webapp(self, namespace: str, name: str, labels: dict[str, str]) -> list[Freeze]:
        service = labels.get(SERVICE_LABEL)
        return [f for f in self._freezes.values() if f.slo.namespace == namespace and f.slo.service in (name, service)]

    async def follow(self, bus: Bus, cluster: str, stop: asyncio.Event) -> None:
        """Replays the stored transitions (then `caught_up` is set) and follows new ones until `stop`; a read that
        fails (NATS away at start) is started again: replaying what is known changes nothing."""
        while not stop.is_set():
            try:
                await self._replay_and_follow(bus, cluster, stop)
            except Exception:
                log.exception("reading evt.slo failed; reading again")
                await pause(stop, 1.0)

    async def _replay_and_follow(self, bus: Bus, cluster: str, stop: asyncio.Event) -> None:
        subjects = [slo_subject(cluster, "*", e) for e in (SloEvent.BUDGET_EXHAUSTED, SloEvent.BUDGET_RECOVERED)]
        info = await bus.js.stream_info(PLATFORM_EVENTS.name)
        last = info.state.last_seq
        async with bus.read(PLATFORM_EVENTS.name, subjects=subjects, until="last") as stored_events:
            async for stored in stored_events:
                self._take(stored.sequence, stored.event, stored.error)
                last = max(last, stored.sequence)
        self.caught_up.set()
        log.info("error budget state caught up", extra={"freezes": [f"{k[0]}/{k[1]}" for k in self._freezes]})
        following = asyncio.ensure_future(self._follow(bus, subjects, last + 1))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({following, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following

    async def _follow(self, bus: Bus, subjects: list[str], from_sequence: int) -> None:
        async with bus.read(PLATFORM_EVENTS.name, subjects=subjects, from_sequence=from_sequence) as stored_events:
            async for stored in stored_events:
                self._take(stored.sequence, stored.event, stored.error)

    def _take(self, sequence: int, event: Any, error: Exception | None) -> None:
        if event is None:  # not ours to dead-letter (a reader acknowledges nothing): said and skipped
            log.warning("evt.slo message %d skipped: %s", sequence, error)
            return
        if isinstance(event.data, BudgetExhausted | BudgetRecovered):
            self.apply(event.data)


# --- the verdict ---------------------------------------------------------------------------------------------------


def is_webapp(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "WebApp" and str(obj.get("apiVersion", "")).split("/")[0] == WEBAPP_API_GROUP


def what_runs(spec: dict[str, Any]) -> tuple[Any, Any]:
    """The part of a WebApp's spec a deploy changes."""
    return spec.get("image"), spec.get("env") or []


def containers_run(pod_spec: dict[str, Any]) -> list[tuple[Any, Any, Any]]:
    """The same of a rendered or live pod template: each container's name, image and environment."""
    return [(c.get("name"), c.get("image"), c.get("env") or []) for c in pod_spec.get("containers") or []]


async def judge_change(
    freezes: list[Freeze],
    *,
    namespace: str,
    name: str,
    annotations: dict[str, str],
    new_images: set[str],
    image_only: bool,
    previous_images: PreviousImages,
) -> FreezeVerdict:
    """The verdict on a change to what a frozen WebApp runs: a hotfix (overridden, the reason kept), a rollback
    (allowed, with a warning saying so), or refused with each freeze's message."""
    if not freezes:
        return FreezeVerdict()
    reason = (annotations.get(HOTFIX_ANNOTATION) or "").strip()
    if reason:
        found = tuple(_violation(f, name, EnforcementAction.DENY) for f in freezes)
        return FreezeVerdict(found, override_reason=reason)
    if image_only and new_images:
        ran = await previous_images(namespace, name)
        if ran is not None and new_images <= ran:
            return FreezeVerdict(
                tuple(
                    Violation(
                        f.constraint,
                        f"rollback of WebApp {name} to {', '.join(sorted(new_images))}, an image it ran before, "
                        f"allowed during the freeze of SLO {f.slo.namespace}/{f.slo.name}",
                        EnforcementAction.WARN,
                    )
                    for f in freezes
                )
            )
    return FreezeVerdict(tuple(_violation(f, name, EnforcementAction.DENY) for f in freezes))


def _violation(freeze: Freeze, webapp: str, action: EnforcementAction) -> Violation:
    return Violation(freeze.constraint, freeze.message(webapp), action)


async def judge_webapp(
    book: FreezeBook, new: dict[str, Any] | None, old: dict[str, Any] | None, previous_images: PreviousImages
) -> FreezeVerdict:
    """A WebApp created or updated (at admission): frozen if what it runs changes."""
    if new is None or not is_webapp(new):
        return FreezeVerdict()
    metadata = new.get("metadata") or {}
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    freezes = book.for_webapp(namespace, name, metadata.get("labels") or {})
    if not freezes:
        return FreezeVerdict()
    new_runs = what_runs(new.get("spec") or {})
    if old is not None and what_runs(old.get("spec") or {}) == new_runs:
        return FreezeVerdict()  # scaling, resources, annotations: not a deploy
    old_runs = what_runs((old or {}).get("spec") or {})
    image_only = old is not None and old_runs[1] == new_runs[1]
    return await judge_change(
        freezes,
        namespace=namespace,
        name=name,
        annotations=metadata.get("annotations") or {},
        new_images={str(new_runs[0])},
        image_only=image_only,
        previous_images=previous_images,
    )


def owning_webapp(manifest: dict[str, Any]) -> str | None:
    for ref in (manifest.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == "WebApp":
            return str(ref.get("name"))
    return None


def rendered_deployments(manifests: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The rendered Deployments of WebApps, with their WebApp's name."""
    found = []
    for manifest in manifests:
        if manifest.get("kind") == "Deployment" and (owner := owning_webapp(manifest)) is not None:
            found.append((owner, manifest))
    return found
