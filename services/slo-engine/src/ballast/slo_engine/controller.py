"""The SLO controller: reads each ServiceLevelObjective into the library model and writes its budget to the status.

A reconcile runs when an SLO's spec changes and when its budget state in the bucket does (`budget_changed`); it
writes the status only when it differs. An object that the CRD accepts but the model refuses (an unknown time zone,
say) gets Ready False with the reason and is not evaluated. A deleted SLO's budget state is dropped.

With a `RuleSync`, a spec change (a new generation) also writes the SLO's Prometheus rules, and a deletion removes
them. A measurer whose backend fails (`measuring_failed`) gets its SLOs a Measured False condition with the reason;
their budget figures stay as last evaluated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ballast.events.contracts.slo import BurnTier
from ballast.kube.apply import apply
from ballast.kube.conditions import Condition, ConditionStatus, set_condition
from ballast.kube.controller import Controller, ControllerMetrics, Result
from ballast.kube.handler import own_key
from ballast.kube.informer import Informer, ObjectKey
from ballast.kube.predicate import generation_changed
from ballast.kube.resource import Resource
from ballast.kube.rest import KubeApi
from ballast.slo import ServiceLevelObjective
from ballast.slo.crd import GROUP, KIND, SLOS, VERSION, ServiceLevelObjectiveSpec, to_objective
from ballast.slo.durations import format_duration
from ballast.slo.evaluation import BudgetState
from ballast.slo_engine.budgets import BudgetBook
from ballast.slo_engine.rules_sync import RuleSync

log = logging.getLogger(__name__)

SLO = Resource(GROUP, VERSION, SLOS, KIND)
FIELD_MANAGER = "ballast-slo-engine"
MAX_REFS = 10  # per cause in the status; svc.slo.status has them all


def _reason(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in error.errors())


def slo_status(
    obj: dict[str, Any],
    state: BudgetState | None,
    refused: str | None,
    now: datetime,
    unmeasured: str | None = None,
    not_evaluated: str | None = None,
) -> dict[str, Any]:
    """The status the object should have: its budget figures and Ready, Burning and BudgetExhausted conditions.
    `not_evaluated` says why no measurer of this engine can evaluate the (valid) SLO: Ready is False with it, rather
    than Unknown waiting for an evaluation that will not come."""
    old = obj.get("status") or {}
    conditions = [Condition.model_validate(c) for c in old.get("conditions", [])]
    generation = obj["metadata"].get("generation")

    def condition(type_: str, status: bool | ConditionStatus, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, status, reason, message, observed_generation=generation, now=now)

    status: dict[str, Any] = {"observedGeneration": generation}
    if refused is None and unmeasured is not None:
        condition("Measured", False, "ReaderFailing", f"kept as last evaluated; {unmeasured}")
    elif any(c.type == "Measured" for c in conditions):
        condition("Measured", True, "ReaderRecovered", "measured again")
    if refused is not None:
        condition("Ready", False, "InvalidSpec", refused)
    elif not_evaluated is not None:
        condition("Ready", False, "NotEvaluated", not_evaluated)
    elif state is None:
        condition("Ready", "Unknown", "AwaitingEvaluation", "no measurement evaluated yet")
    else:
        condition("Ready", True, "Evaluated", "the budget is evaluated")
        firing = [tier for tier in BurnTier if tier in state.firing]
        status |= {
            # Rounded for people (kubectl prints every digit); svc.slo.status has the exact figure.
            "budgetRemaining": round(state.budget_remaining, 4),
            "burnRates": [
                {"window": format_duration(window), "burnRate": rate} for window, rate in state.burn_rates.items()
            ],
            "firingTiers": [str(tier) for tier in firing],
            "evaluatedAt": state.evaluated_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
        if state.consumption:
            status["budgetConsumption"] = [
                {
                    "cause": str(part.cause),
                    "budgetConsumed": round(part.budget_consumed, 4),
                    "excluded": part.excluded,
                    "refs": list(part.refs[:MAX_REFS]),
                }
                for part in state.consumption
            ]
        if state.time_to_exhaustion is not None and state.time_to_exhaustion >= timedelta(seconds=1):
            status["timeToExhaustion"] = format_duration(
                timedelta(seconds=int(state.time_to_exhaustion.total_seconds()))
            )
        if firing:
            condition("Burning", True, f"{firing[0].capitalize()}BurnFiring", f"firing: {', '.join(firing)}")
        else:
            condition("Burning", False, "NotBurning", "no tier fires")
        exhausted = state.exhausted_since is not None
        condition(
            "BudgetExhausted",
            exhausted,
            "BudgetExhausted" if exhausted else "BudgetLeft",
            f"{state.budget_remaining:.2%} of the error budget left",
        )
    status["conditions"] = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conditions]
    return status


# The figures move at every evaluation while a budget burns: they are written at most this often, unless something
# people and printer columns act on changed with them (a tier, a condition, the generation).
STATUS_REFRESH = timedelta(seconds=30)
FIGURES = ("budgetRemaining", "burnRates", "timeToExhaustion", "budgetConsumption", "evaluatedAt")


def refresh_wait(old: dict[str, Any], new: dict[str, Any], now: datetime) -> float | None:
    """Seconds to hold a status write back when only the figures changed since a recent write; None: write now."""
    if "evaluatedAt" not in old or {k: v for k, v in old.items() if k not in FIGURES} != {
        k: v for k, v in new.items() if k not in FIGURES
    }:
        return None
    written = datetime.fromisoformat(old["evaluatedAt"])
    left = (written + STATUS_REFRESH - now).total_seconds()
    return left if left > 0 else None


class SloController:
    def __init__(
        self,
        api: KubeApi,
        book: BudgetBook,
        metrics: ControllerMetrics,
        *,
        workers: int = 4,
        rules: RuleSync | None = None,
        not_evaluated: Callable[[ServiceLevelObjective], str | None] = lambda slo: None,
    ) -> None:
        self._api = api
        self._book = book
        self.rules = rules
        self._not_evaluated = not_evaluated  # why the engine's measurers cannot evaluate an SLO, if they cannot
        self._rules_of: dict[ObjectKey, tuple[str, int]] = {}  # (uid, generation) whose rules were written
        self._unmeasured: dict[ObjectKey, str] = {}  # why a measurer could not read the SLO's SLI
        self.slos = Informer(api, SLO)
        self.controller: Controller[ObjectKey] = Controller("slo", self.reconcile, metrics, workers=workers)
        self.controller.watch(self.slos, own_key, generation_changed)
        # The SLOs that read into the model, by key: what the evaluator evaluates.
        self.objectives: dict[ObjectKey, ServiceLevelObjective] = {}

    def budget_changed(self, namespace: str, name: str) -> None:
        self.controller.enqueue((namespace, name))

    def measuring_failed(self, keys: Iterable[ObjectKey], reason: str | None) -> None:
        """A measurer's backend failed for these SLOs (`reason`), or answers again (None)."""
        for key in keys:
            if reason is None:
                self._unmeasured.pop(key, None)
            else:
                self._unmeasured[key] = reason
            self.controller.enqueue(key)

    async def prune_rules(self, stop: asyncio.Event) -> None:
        """Once the SLOs are listed: removes the rules of SLOs deleted while no engine watched."""
        if self.rules is not None and await self.controller.synced(stop):
            await self.rules.prune(self.slos.store)

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.slos.run(stop))
            tasks.create_task(self.controller.run(stop))

    async def reconcile(self, key: ObjectKey) -> Result:
        namespace, name = key
        obj = self.slos.store.get(key)
        if obj is None:
            self.objectives.pop(key, None)
            self._unmeasured.pop(key, None)
            if self.rules is not None:
                await self.rules.remove(namespace, name)
                self._rules_of.pop(key, None)
            await self._book.forget(namespace, name)
            return Result()
        refused: str | None = None
        try:
            self.objectives[key] = to_objective(namespace, name, ServiceLevelObjectiveSpec.model_validate(obj["spec"]))
        except ValidationError as error:
            self.objectives.pop(key, None)
            refused = _reason(error)
        await self._sync_rules(key, obj)
        state = await self._book.state(namespace, name) if refused is None else None
        objective = self.objectives.get(key)
        not_evaluated = self._not_evaluated(objective) if objective is not None else None
        now = datetime.now(UTC)
        status = slo_status(
            obj, state, refused, now.replace(microsecond=0), self._unmeasured.get(key), not_evaluated=not_evaluated
        )
        wait = refresh_wait(obj.get("status") or {}, status, now)
        if wait is not None:
            return Result(requeue_after=wait)
        if status != obj.get("status"):
            body = {
                "apiVersion": SLO.api_version,
                "kind": KIND,
                "metadata": {"name": name, "namespace": namespace},
                "status": status,
            }
            await apply(self._api, body, field_manager=FIELD_MANAGER, subresource="status", resource=SLO)
        return Result()

    async def _sync_rules(self, key: ObjectKey, obj: dict[str, Any]) -> None:
        """Writes the SLO's rules once per generation (a reconcile also runs at every evaluation)."""
        metadata = obj["metadata"]
        written = (metadata.get("uid", ""), metadata.get("generation", 0))
        if self.rules is None or self._rules_of.get(key) == written:
            return
        synced = await self.rules.sync(obj, self.objectives.get(key))
        if synced.unsupported is not None:
            log.debug("SLO %s/%s has no Prometheus rules: %s", *key, synced.unsupported)
        self._rules_of[key] = written
