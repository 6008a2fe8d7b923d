"""What else was going on while budget burned: chaos runs and open incidents, as time windows kept in the `slo-sli`
bucket (rollouts are kept with their WebApp's record, see availability.py).

A chaos run lasts from its `started` to its `completed` or `aborted` event and concerns its target WebApp (a run
targeting pods by label selector concerns every WebApp of its namespace: the engine cannot tell which pods are whose
without the cluster). An incident lasts from its opening until it is mitigated (the impact stopped), resolved or
closed, and concerns the SLOs of its service (in its namespace, when it names one). Events may arrive in any order
and more than once: each sets only what it tells, and an incident keeps the view of its latest transition.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ballast.events.contracts.chaos import ExperimentAborted, ExperimentCompleted, ExperimentStarted
from ballast.events.contracts.common import CLUSTER_SCOPED
from ballast.events.contracts.incident import IncidentStatus, IncidentTransition
from ballast.events.contracts.slo import BudgetCause
from ballast.slo.intervals import Interval


class CauseWindow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cause: BudgetCause
    ref: str = Field(min_length=1, description="the chaos run id or the incident id")
    namespace: str | None = Field(description="where it happened; None: an incident naming no namespace")
    webapp: str | None = Field(default=None, description="a chaos run's target WebApp; None: the whole namespace")
    service: str | None = Field(default=None, description="an incident's service")
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    seen: AwareDatetime | None = Field(default=None, description="an incident's latest transition applied")

    def concerns(self, namespace: str, webapp: str, service: str) -> bool:
        """Whether it bears on the SLO of `service` measured on `webapp` in `namespace`."""
        if self.cause is BudgetCause.CHAOS:
            return self.namespace == namespace and self.webapp in (None, webapp)
        return self.service == service and self.namespace in (None, namespace)

    def interval(self, now: datetime) -> Interval | None:
        """The time it covers up to `now`; None before its start is known."""
        if self.start is None:
            return None
        return (self.start, min(self.end, now) if self.end is not None else now)


def cause_key(cause: BudgetCause, namespace: str | None, ref: str) -> str:
    # Run and incident ids may hold characters a key may not (`:` in run ids): a digest names the key.
    digest = hashlib.sha256(ref.encode()).hexdigest()[:24]
    return f"cause.{cause}.{namespace or CLUSTER_SCOPED}.{digest}"


def chaos_window(event: ExperimentStarted | ExperimentCompleted | ExperimentAborted) -> tuple[str, CauseWindow]:
    """The key and the window this event alone tells of its run."""
    namespace = event.target.namespace
    window = CauseWindow(
        cause=BudgetCause.CHAOS,
        ref=event.run_id,
        namespace=namespace,
        webapp=event.target.webapp,
        start=event.at if isinstance(event, ExperimentStarted) else None,
        end=None if isinstance(event, ExperimentStarted) else event.at,
    )
    return cause_key(BudgetCause.CHAOS, namespace, event.run_id), window


_STATUS_TIME = {
    IncidentStatus.OPEN: "opened_at",
    IncidentStatus.ACKNOWLEDGED: "acknowledged_at",
    IncidentStatus.MITIGATED: "mitigated_at",
    IncidentStatus.RESOLVED: "resolved_at",
    IncidentStatus.CLOSED: "closed_at",
}


def incident_window(event: IncidentTransition) -> tuple[str, CauseWindow]:
    ends = [t for t in (event.mitigated_at, event.resolved_at, event.closed_at) if t is not None]
    reopened = event.status in (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED) and not ends
    window = CauseWindow(
        cause=BudgetCause.INCIDENT,
        ref=event.incident_id,
        namespace=event.namespace,
        service=event.service,
        start=event.opened_at,
        end=None if reopened else min(ends),
        seen=getattr(event, _STATUS_TIME[event.status]),
    )
    return cause_key(BudgetCause.INCIDENT, event.namespace, event.incident_id), window


def merged(stored: CauseWindow | None, told: CauseWindow) -> CauseWindow:
    """What to store once `told` is applied to `stored` (equal to `stored` when it adds nothing)."""
    if stored is None:
        return told
    if told.cause is BudgetCause.INCIDENT:
        newer = stored.seen is None or (told.seen is not None and told.seen >= stored.seen)
        return told if newer else stored
    return stored.model_copy(update={"start": stored.start or told.start, "end": stored.end or told.end})
