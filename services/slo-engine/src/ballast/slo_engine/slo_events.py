"""Kubernetes Events on a ServiceLevelObjective when it burns: a tier starting or stopping to fire, the budget
exhausted or recovered, as `kubectl describe slo <name>` and `kubectl events --for slo/<name>` show them.

The bus (`evt.slo`) is what the platform acts on; these tell the people looking at the object, with the figures
that made the transition. They are recorded once the transition is on the bus (the budget book tells them after
publishing) through the kit's recorder: written in the background, a repeat by the same leader within ten minutes
counted on the first Event, a refused write logged. A transition a leader stored but died before publishing is told
by the next one, which may then write its Event a second time (the bus keeps it once, by its id). An SLO read only
from files (no object) gets none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from ballast.events.contracts.slo import AlertState, BudgetExhausted, BudgetRecovered, BurnAlert, WindowBurn
from ballast.kube.informer import ObjectKey
from ballast.kube.recorder import EventKind, EventRecorder, Regarding
from ballast.slo.durations import format_duration

REPORTING_CONTROLLER = "platform.example.com/slo-engine"  # who wrote an Event, as `kubectl events` shows it

Told = tuple[str, str, BaseModel]  # namespace, name, the transition's payload


def _burning(windows: Sequence[WindowBurn]) -> WindowBurn:
    """The condition that made the tier fire (both windows over its factor), else its first."""
    return next((w for w in windows if min(w.short_burn_rate, w.long_burn_rate) > w.factor), windows[0])


def describe(payload: BaseModel) -> tuple[EventKind, str, str] | None:
    """An Event's type, reason and note for a transition's payload; None for a payload it does not describe."""
    if isinstance(payload, BurnAlert):
        tier = str(payload.tier).capitalize()
        left = f"{payload.budget_remaining:.2%} of the error budget left"
        if payload.state is AlertState.RESOLVED:
            return "Normal", f"{tier}BurnResolved", f"{payload.tier} burn resolved; {left}"
        burn = _burning(payload.windows)
        rates = (
            f"{burn.long_burn_rate:.1f}x over {format_duration(burn.long_window)} and {burn.short_burn_rate:.1f}x over "
            f"{format_duration(burn.short_window)} (fires above {burn.factor:g}x)"
        )
        tte = payload.time_to_exhaustion
        whole = timedelta(seconds=int(tte.total_seconds())) if tte is not None else timedelta(0)
        exhaustion = f", spent in {format_duration(whole)} at this rate" if whole else ""
        return "Warning", f"{tier}BurnFiring", f"{payload.tier} burn firing: {rates}; {left}{exhaustion}"
    if isinstance(payload, BudgetExhausted):
        frozen = "; non-hotfix deploys of the service are frozen" if payload.freeze_deploys else ""
        note = f"{payload.budget_remaining:.2%} of the error budget left (exhausted at {payload.threshold:.0%}){frozen}"
        return "Warning", "BudgetExhausted", note
    if isinstance(payload, BudgetRecovered):
        lifted = "; the deploy freeze is lifted" if payload.freeze_deploys else ""
        note = f"{payload.budget_remaining:.2%} of the error budget left (above {payload.threshold:.0%}){lifted}"
        return "Normal", "BudgetRecovered", note
    return None


class SloEvents:
    """Tells published transitions as Events on their SLO objects (found in `objects`, the controller's cache)."""

    def __init__(
        self,
        recorder: EventRecorder,
        objects: Callable[[ObjectKey], Mapping[str, Any] | None],
        api_version: str,
        kind: str,
    ) -> None:
        self.recorder = recorder
        self._objects = objects
        self._api_version = api_version
        self._kind = kind

    def told(self, transitions: Sequence[Told]) -> None:
        for namespace, name, payload in transitions:
            described = describe(payload)
            found = self._objects((namespace, name))
            uid = (found or {}).get("metadata", {}).get("uid")
            if described is None or not uid:
                continue
            regarding = Regarding(self._api_version, self._kind, namespace, name, uid)
            self.recorder.record(regarding, described[0], described[1], "Evaluate", described[2])
