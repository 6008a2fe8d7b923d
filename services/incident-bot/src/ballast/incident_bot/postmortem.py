"""An incident's postmortem, written from the event log: a pure function of the incident record and the events
around it, rendered as Markdown and as JSON.

The same record and events give byte-identical documents (no clock is read, events are de-duplicated by their
CloudEvents id and ordered by time, kind and id; numbers are kept as the services reported them), so a regenerated
postmortem has the same sha256 digest as the first.

Which events belong to the incident: its own lifecycle events (`evt.incident`, by incident id) and, within the
window from `lookback` before it opened until it was closed (or resolved), the events about its service — by
namespace when the incident has one, else by the service's name: burn tiers and budget transitions (`evt.slo`),
rollouts, drift repairs and degradations (`evt.reconcile`), policy denials, warnings and hotfix overrides
(`evt.policy`), and chaos runs (`evt.chaos`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ballast.events.contracts.chaos import (
    ChaosRunFact,
    ExperimentAborted,
    ExperimentCompleted,
    ExperimentScheduled,
    ExperimentStarted,
    FaultInjected,
    SteadyStateChecked,
)
from ballast.events.contracts.incident import (
    SUPPORTING_ROLES,
    IncidentEscalated,
    IncidentRole,
    IncidentStatus,
    IncidentTransition,
    IncidentUpdated,
    Severity,
)
from ballast.events.contracts.policy import AuditViolation, Decision, PolicyDecision
from ballast.events.contracts.reconcile import ReconcileOutcome, WebAppOutcome, reconcile_event_type
from ballast.events.contracts.slo import AlertState, BudgetExhausted, BudgetTransition, BurnAlert
from ballast.events.envelope import Envelope

DEFAULT_LOOKBACK = timedelta(hours=2)  # changes this long before the incident opened are trigger candidates

_OUTCOME_BY_TYPE = {reconcile_event_type(outcome): outcome for outcome in WebAppOutcome}


class EntryKind(StrEnum):
    INCIDENT = "incident"
    SLO = "slo"
    DEPLOY = "deploy"
    RECONCILE = "reconcile"
    POLICY = "policy"
    CHAOS = "chaos"


_KIND_ORDER = {kind: index for index, kind in enumerate(EntryKind)}


class ActionType(StrEnum):
    MITIGATE = "mitigate"
    PREVENT = "prevent"
    PROCESS = "process"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimelineEntry(_Model):
    at: AwareDatetime = Field(description="when it happened (UTC)")
    kind: EntryKind = Field(description="what kind of event")
    text: str = Field(description="what happened, for people")
    event: str = Field(description="the event it comes from: <ce-source>/<ce-id>")


class SloBudget(_Model):
    """The error budget one SLO spent over the incident, from the slo-engine's own figures."""

    slo: str = Field(description="<namespace>/<name>")
    service: str
    objective: float = Field(description="percent, e.g. 99.9")
    period: timedelta = Field(description="the SLO window the budget is counted over")
    budget_before: float = Field(description="fraction of the budget left at the first reading in the window")
    budget_after: float = Field(description="fraction left at the last reading")
    consumed: float | None = Field(description="budget_before - budget_after; None with a single reading")
    peak_burn_rate: float | None = Field(description="the highest long-window burn rate reported")
    readings: int = Field(description="slo events the figures come from")


class Impact(_Model):
    started_at: AwareDatetime = Field(description="the first signal of the impact (or the opening)")
    ended_at: AwareDatetime | None = Field(description="mitigated, else resolved; None while it goes on")
    duration: timedelta | None
    budgets: tuple[SloBudget, ...]
    affected_webapps: tuple[str, ...] = Field(description="<namespace>/<name> of WebApps degraded, repaired or burning")


class Detection(_Model):
    first_signal_at: AwareDatetime
    first_signal: str
    detected_at: AwareDatetime = Field(description="when the incident opened")
    source: str
    fingerprint: str
    time_to_detect: timedelta
    acknowledged_at: AwareDatetime | None
    time_to_acknowledge: timedelta | None = Field(description="from opening to the first acknowledgement")
    alertmanager_group_keys: tuple[str, ...]


class Resolution(_Model):
    mitigated_at: AwareDatetime | None
    resolved_at: AwareDatetime | None
    closed_at: AwareDatetime | None
    time_to_mitigate: timedelta | None = Field(description="from the first signal")
    time_to_resolve: timedelta | None = Field(description="from the first signal")
    resolved_by: str | None


class ActionItem(_Model):
    type: ActionType
    item: str
    owner: str = Field(default="", description="to fill")
    done: bool = False


class Postmortem(_Model):
    postmortem_id: str
    incident_id: str
    cluster: str
    title: str
    service: str
    namespace: str | None
    severity: Severity
    status: IncidentStatus
    commander: str | None
    roles: dict[IncidentRole, str] = Field(default_factory=dict)  # the other roles' holders (communications, …)
    window_start: AwareDatetime
    window_end: AwareDatetime | None
    summary: str
    impact: Impact
    detection: Detection
    resolution: Resolution
    timeline: tuple[TimelineEntry, ...]
    action_items: tuple[ActionItem, ...]


@dataclass(frozen=True)
class Rendered:
    """A postmortem document's bytes and their digest (`sha256:<hex>`, as PostmortemPublished carries it)."""

    content: bytes
    digest: str


# --- writing --------------------------------------------------------------------------------------------------------


def write_postmortem(
    incident: IncidentTransition,
    events: Iterable[Envelope[BaseModel]],
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
) -> Postmortem:
    """The postmortem of `incident` (its record as it stands) from `events` (any superset of the related ones, in any
    order, repeats allowed)."""
    window_start = _utc(incident.opened_at) - lookback
    end = incident.closed_at or incident.resolved_at
    window_end = _utc(end) if end is not None else None
    related = _related(incident, events, window_start, window_end)

    timeline = _timeline(related)
    budgets = _budgets(related)
    first_at, first_what = _first_signal(incident, related, window_start)
    impact_end = incident.mitigated_at or incident.resolved_at
    impact = Impact(
        started_at=first_at,
        ended_at=_utc(impact_end) if impact_end else None,
        duration=_utc(impact_end) - first_at if impact_end else None,
        budgets=budgets,
        affected_webapps=_affected_webapps(related),
    )
    opened = _utc(incident.opened_at)
    acknowledged = _utc(incident.acknowledged_at) if incident.acknowledged_at else None
    detection = Detection(
        first_signal_at=first_at,
        first_signal=first_what,
        detected_at=opened,
        source=incident.source.value,
        fingerprint=incident.fingerprint,
        time_to_detect=opened - first_at,
        acknowledged_at=acknowledged,
        time_to_acknowledge=acknowledged - opened if acknowledged else None,
        alertmanager_group_keys=_group_keys(incident, related),
    )
    resolution = Resolution(
        mitigated_at=_utc(incident.mitigated_at) if incident.mitigated_at else None,
        resolved_at=_utc(incident.resolved_at) if incident.resolved_at else None,
        closed_at=_utc(incident.closed_at) if incident.closed_at else None,
        time_to_mitigate=_utc(incident.mitigated_at) - first_at if incident.mitigated_at else None,
        time_to_resolve=_utc(incident.resolved_at) - first_at if incident.resolved_at else None,
        resolved_by=_resolved_by(incident, related),
    )
    return Postmortem(
        postmortem_id=f"{incident.incident_id}-postmortem",
        incident_id=incident.incident_id,
        cluster=incident.cluster,
        title=incident.title,
        service=incident.service,
        namespace=incident.namespace,
        severity=incident.severity,
        status=incident.status,
        commander=incident.commander,
        roles=incident.roles,
        window_start=window_start,
        window_end=window_end,
        summary=_summary(incident, impact, detection, resolution),
        impact=impact,
        detection=detection,
        resolution=resolution,
        timeline=timeline,
        action_items=_action_items(incident, related, detection),
    )


@dataclass(frozen=True)
class _Related:
    at: datetime
    event: Envelope[BaseModel]

    @property
    def ref(self) -> str:
        return self.event.msg_id


def _related(
    incident: IncidentTransition,
    events: Iterable[Envelope[BaseModel]],
    start: datetime,
    end: datetime | None,
) -> list[_Related]:
    seen: dict[str, _Related] = {}
    for event in events:
        if event.msg_id in seen or not _about(incident, event.data):
            continue
        at = _utc(_event_time(event))
        own = isinstance(event.data, IncidentTransition | IncidentEscalated | IncidentUpdated)
        if not own and (at < start or (end is not None and at > end)):
            continue
        seen[event.msg_id] = _Related(at, event)
    return sorted(seen.values(), key=lambda r: (r.at, _KIND_ORDER[_kind(r.event)], r.ref))


def _about(incident: IncidentTransition, data: BaseModel) -> bool:
    if isinstance(data, IncidentTransition | IncidentEscalated | IncidentUpdated):
        return data.incident_id == incident.incident_id
    namespace, name = _scope(data)
    if namespace is None and name is None:
        return False
    if incident.namespace is not None:
        return namespace == incident.namespace
    return name == incident.service


def _scope(data: BaseModel) -> tuple[str | None, str | None]:
    """(namespace, service or WebApp name) an event is about; (None, None) for events the postmortem does not read."""
    if isinstance(data, BurnAlert | BudgetTransition):
        return data.slo.namespace, data.slo.service
    if isinstance(data, ReconcileOutcome):
        return data.webapp.namespace, data.webapp.name
    if isinstance(data, PolicyDecision | AuditViolation):
        return data.object.namespace, data.object.name
    if isinstance(data, ChaosRunFact):
        return data.target.namespace, data.target.webapp
    return None, None


def _event_time(event: Envelope[BaseModel]) -> datetime:
    data = event.data
    if isinstance(data, BurnAlert):
        return data.since
    if isinstance(data, BudgetTransition | PolicyDecision | ChaosRunFact | IncidentEscalated | IncidentUpdated):
        return data.at
    if isinstance(data, AuditViolation):
        return data.audit_started_at
    if isinstance(data, IncidentTransition):
        return _status_time(data)
    return event.time  # ReconcileOutcome carries no time of its own


def _status_time(incident: IncidentTransition) -> datetime:
    times = {
        IncidentStatus.OPEN: incident.opened_at,
        IncidentStatus.ACKNOWLEDGED: incident.acknowledged_at,
        IncidentStatus.MITIGATED: incident.mitigated_at,
        IncidentStatus.RESOLVED: incident.resolved_at,
        IncidentStatus.CLOSED: incident.closed_at,
    }
    return times[incident.status] or incident.opened_at


def _kind(event: Envelope[BaseModel]) -> EntryKind:
    data = event.data
    if isinstance(data, IncidentTransition | IncidentEscalated | IncidentUpdated):
        return EntryKind.INCIDENT
    if isinstance(data, BurnAlert | BudgetTransition):
        return EntryKind.SLO
    if isinstance(data, ReconcileOutcome):
        return EntryKind.DEPLOY if _OUTCOME_BY_TYPE.get(event.type) is WebAppOutcome.RECONCILED else EntryKind.RECONCILE
    if isinstance(data, PolicyDecision | AuditViolation):
        return EntryKind.POLICY
    return EntryKind.CHAOS


# --- timeline -------------------------------------------------------------------------------------------------------


def _timeline(related: Sequence[_Related]) -> tuple[TimelineEntry, ...]:
    entries = []
    rolled_out: set[tuple[str, int]] = set()
    people: _People | None = None  # the incident's severity and who held its roles, as its events told so far
    for item in related:
        event, data = item.event, item.event.data
        if isinstance(data, ReconcileOutcome) and _OUTCOME_BY_TYPE.get(event.type) is WebAppOutcome.RECONCILED:
            # Every reconcile tells `reconciled`; only the first of a generation is a rollout worth a line.
            if (data.webapp.uid, data.generation) in rolled_out:
                continue
            rolled_out.add((data.webapp.uid, data.generation))
        if isinstance(data, IncidentUpdated):
            after = _People.of(data)
            text = _describe_update(data, people, after)
            people = after
            if text is not None:
                entries.append(TimelineEntry(at=item.at, kind=EntryKind.INCIDENT, text=text, event=item.ref))
            continue
        if isinstance(data, IncidentTransition):
            people = _People.of(data)
        text = _describe(event)
        if text is not None:
            entries.append(TimelineEntry(at=item.at, kind=_kind(event), text=text, event=item.ref))
    return tuple(entries)


def _describe(event: Envelope[BaseModel]) -> str | None:
    """One timeline line for an event, or None for events that are no news in a postmortem (a plain allow)."""
    data = event.data
    if isinstance(data, IncidentTransition):
        return _describe_transition(data)
    if isinstance(data, IncidentEscalated):
        notified = ", ".join(data.notified)
        return f"escalated to level {data.level} after {_duration(data.unacknowledged_for)} unacknowledged ({notified})"
    if isinstance(data, BurnAlert):
        peak = max(w.long_burn_rate for w in data.windows)
        verb = "started" if data.state is AlertState.FIRING else "stopped"
        return (
            f"SLO {data.slo.namespace}/{data.slo.name}: {data.tier} burn {verb} firing "
            f"(long-window burn rate {_rate(peak)}x, budget left {_percent(data.budget_remaining)})"
        )
    if isinstance(data, BudgetTransition):
        slo = f"{data.slo.namespace}/{data.slo.name}"
        if isinstance(data, BudgetExhausted):
            freeze = "; non-hotfix deploys frozen" if data.freeze_deploys else ""
            return f"SLO {slo}: error budget exhausted ({_percent(data.budget_remaining)} left){freeze}"
        return f"SLO {slo}: error budget recovered ({_percent(data.budget_remaining)} left)"
    if isinstance(data, ReconcileOutcome):
        return _describe_reconcile(_OUTCOME_BY_TYPE.get(event.type), data)
    if isinstance(data, PolicyDecision):
        return _describe_decision(data)
    if isinstance(data, AuditViolation):
        obj = data.object
        return (
            f"audit: {obj.kind} {obj.namespace}/{obj.name} violates {data.constraint.kind}/{data.constraint.name}: "
            f"{data.constraint.message}"
        )
    if isinstance(data, ChaosRunFact):
        return _describe_chaos(data)
    return None


@dataclass(frozen=True)
class _People:
    severity: Severity
    commander: str | None
    roles: dict[IncidentRole, str]

    @classmethod
    def of(cls, data: IncidentTransition | IncidentUpdated) -> _People:
        return cls(data.severity, data.commander, dict(data.roles))


def _describe_update(data: IncidentUpdated, before: _People | None, after: _People) -> str | None:
    """What an `updated` event changed, against the incident as its events told it before (all of it when they did
    not); None when it changed nothing they told."""
    changes = []
    if before is None or after.severity is not before.severity:
        changes.append(f"severity {after.severity}")
    if after.commander is not None and (before is None or after.commander != before.commander):
        changes.append(f"commander {after.commander}")
    for role in SUPPORTING_ROLES:
        holder = after.roles.get(role)
        if holder is not None and (before is None or before.roles.get(role) != holder):
            changes.append(f"{role} {holder}")
    if not changes:
        return None
    by = f" by {data.changed_by}" if data.changed_by else ""
    return f"incident updated{by}: " + ", ".join(changes)


def _describe_transition(data: IncidentTransition) -> str:
    by = f" by {data.changed_by}" if data.changed_by else ""
    if data.status is IncidentStatus.OPEN:
        group = f", Alertmanager group {data.group_key}" if data.group_key else ""
        return f"incident opened{by} from {data.source} ({data.severity}): {data.title}{group}"
    return f"incident {data.status}{by}"


def _describe_reconcile(outcome: WebAppOutcome | None, data: ReconcileOutcome) -> str:
    webapp = f"WebApp {data.webapp.namespace}/{data.webapp.name}"
    if outcome is WebAppOutcome.RECONCILED:
        return f"{webapp}: generation {data.generation} rolled out"
    if outcome is WebAppOutcome.DRIFT_REPAIRED:
        return f"{webapp}: drift repaired ({', '.join(data.repaired) or 'children'} put back)"
    if outcome is WebAppOutcome.DEGRADED:
        return f"{webapp}: degraded ({data.reason}): {data.message}".rstrip(": ")
    if outcome is WebAppOutcome.POLICY_DENIED:
        return f"{webapp}: generation {data.generation} denied by policy: {data.message}".rstrip(": ")
    return f"{webapp}: deleted"


def _describe_decision(data: PolicyDecision) -> str | None:
    obj = data.object
    target = f"{data.operation} of {obj.kind} {obj.namespace or '-'}/{obj.name} by {data.requested_by}"
    reasons = "; ".join(f"{c.kind}/{c.name}: {c.message}" for c in data.constraints)
    if data.override_reason is not None:
        return f"policy: hotfix override let {target} through ({data.override_reason}); overridden: {reasons}"
    if data.decision is Decision.DENIED:
        return f"policy: denied {target}: {reasons}"
    if data.decision is Decision.WARNED:
        return f"policy: warned on {target}: {reasons}"
    return None


def _describe_chaos(data: ChaosRunFact) -> str | None:
    run = (
        f"chaos {data.experiment.namespace}/{data.experiment.name} ({data.fault}{', dry run' if data.dry_run else ''})"
    )
    if isinstance(data, ExperimentScheduled):
        return f"{run}: scheduled for {_clock(data.due_at)} ({data.trigger})"
    if isinstance(data, ExperimentStarted):
        return f"{run}: started"
    if isinstance(data, FaultInjected):
        return f"{run}: fault #{data.sequence} hit {len(data.affected)} object(s)"
    if isinstance(data, SteadyStateChecked):
        return None if data.passed else f"{run}: steady state failed {data.stage} ({data.check}: {data.observed})"
    if isinstance(data, ExperimentAborted):
        return f"{run}: aborted ({data.reason}): {data.detail}; consumed {_percent(data.budget_consumed)} of the budget"
    if isinstance(data, ExperimentCompleted):
        return f"{run}: completed, verdict {data.verdict}; consumed {_percent(data.budget_consumed)} of the budget"
    return None


# --- impact, detection, resolution ----------------------------------------------------------------------------------


def _budgets(related: Sequence[_Related]) -> tuple[SloBudget, ...]:
    readings: dict[str, list[BurnAlert | BudgetTransition]] = {}
    for item in related:
        data = item.event.data
        if isinstance(data, BurnAlert | BudgetTransition):
            readings.setdefault(f"{data.slo.namespace}/{data.slo.name}", []).append(data)
    budgets = []
    for slo, values in sorted(readings.items()):
        first, last = values[0], values[-1]
        # Decimal of the reported text: 0.82 - 0.61 is 0.21, as the engine's figures say, not 0.20999999999999996.
        consumed = Decimal(repr(first.budget_remaining)) - Decimal(repr(last.budget_remaining))
        burns = [w.long_burn_rate for v in values if isinstance(v, BurnAlert) for w in v.windows]
        budgets.append(
            SloBudget(
                slo=slo,
                service=first.slo.service,
                objective=first.objective,
                period=first.period,
                budget_before=first.budget_remaining,
                budget_after=last.budget_remaining,
                consumed=float(consumed) if len(values) > 1 else None,
                peak_burn_rate=max(burns) if burns else None,
                readings=len(values),
            )
        )
    return tuple(budgets)


def _first_signal(
    incident: IncidentTransition, related: Sequence[_Related], window_start: datetime
) -> tuple[datetime, str]:
    opened = _utc(incident.opened_at)
    for item in related:
        if item.at > opened:
            break
        if item.at >= window_start and _is_signal(item.event):
            text = _describe(item.event)
            if text is not None:
                return item.at, text
    return opened, f"incident opened from {incident.source}"


def _is_signal(event: Envelope[BaseModel]) -> bool:
    """Events that tell something is wrong (not changes that might have caused it)."""
    data = event.data
    if isinstance(data, BurnAlert):
        return data.state is AlertState.FIRING
    if isinstance(data, BudgetExhausted):
        return True
    if isinstance(data, ReconcileOutcome):
        return _OUTCOME_BY_TYPE.get(event.type) is WebAppOutcome.DEGRADED
    if isinstance(data, SteadyStateChecked):
        return not data.passed
    return isinstance(data, ExperimentAborted)


def _affected_webapps(related: Sequence[_Related]) -> tuple[str, ...]:
    names = set()
    for item in related:
        data, outcome = item.event.data, _OUTCOME_BY_TYPE.get(item.event.type)
        if isinstance(data, ReconcileOutcome) and outcome in (
            WebAppOutcome.DEGRADED,
            WebAppOutcome.DRIFT_REPAIRED,
            WebAppOutcome.POLICY_DENIED,
        ):
            names.add(f"{data.webapp.namespace}/{data.webapp.name}")
        elif isinstance(data, BurnAlert) and data.state is AlertState.FIRING:
            names.add(f"{data.slo.namespace}/{data.slo.service}")
    return tuple(sorted(names))


def _group_keys(incident: IncidentTransition, related: Sequence[_Related]) -> tuple[str, ...]:
    keys = {incident.group_key} if incident.group_key else set()
    keys.update(
        r.event.data.group_key
        for r in related
        if isinstance(r.event.data, IncidentTransition) and r.event.data.group_key
    )
    return tuple(sorted(k for k in keys if k))


def _resolved_by(incident: IncidentTransition, related: Sequence[_Related]) -> str | None:
    if incident.status is IncidentStatus.RESOLVED:
        return incident.changed_by
    resolutions = [
        r.event.data
        for r in related
        if isinstance(r.event.data, IncidentTransition) and r.event.data.status is IncidentStatus.RESOLVED
    ]
    return resolutions[-1].changed_by if resolutions else None


def _summary(incident: IncidentTransition, impact: Impact, detection: Detection, resolution: Resolution) -> str:
    where = incident.service if incident.namespace is None else f"{incident.service} (namespace {incident.namespace})"
    parts = [f"{incident.title.rstrip('.')}."]  # alert summaries often end with their own period
    if impact.duration is not None:
        parts.append(f"{where} was impacted for {_duration(impact.duration)}, severity {incident.severity}.")
    else:
        parts.append(f"{where} is impacted since {_clock(impact.started_at)}, severity {incident.severity}.")
    spent = [b for b in impact.budgets if b.consumed is not None]
    if spent:
        figures = ", ".join(f"{_percent(b.consumed or 0.0)} of {b.slo}'s error budget" for b in spent)
        parts.append(f"It consumed {figures}.")
    parts.append(
        f"Detected {_duration(detection.time_to_detect)} after the first signal (source {detection.source})"
        + (f"; resolved {_duration(resolution.time_to_resolve)} after it." if resolution.time_to_resolve else ".")
    )
    return " ".join(parts)


def _action_items(
    incident: IncidentTransition, related: Sequence[_Related], detection: Detection
) -> tuple[ActionItem, ...]:
    items: list[ActionItem] = []
    for item in related:
        data, outcome = item.event.data, _OUTCOME_BY_TYPE.get(item.event.type)
        if isinstance(data, PolicyDecision) and data.override_reason is not None:
            obj = data.object
            items.append(
                ActionItem(
                    type=ActionType.PROCESS,
                    item=f"Review the hotfix override of {obj.kind} {obj.namespace}/{obj.name}: {data.override_reason}",
                )
            )
        elif isinstance(data, ExperimentAborted):
            items.append(
                ActionItem(
                    type=ActionType.PREVENT,
                    item=f"Check whether chaos run {data.run_id} ({data.fault}) contributed; it aborted: {data.reason}",
                )
            )
        elif isinstance(data, ReconcileOutcome) and outcome is WebAppOutcome.DEGRADED:
            items.append(
                ActionItem(
                    type=ActionType.PREVENT,
                    item=f"Fix why WebApp {data.webapp.namespace}/{data.webapp.name} degraded ({data.reason})",
                )
            )
        elif isinstance(data, BudgetExhausted):
            items.append(
                ActionItem(
                    type=ActionType.PROCESS,
                    item=f"Plan the work that earns back SLO {data.slo.namespace}/{data.slo.name}'s error budget",
                )
            )
    items += [
        ActionItem(type=ActionType.MITIGATE, item="Say how the impact was stopped and whether it can be automated"),
        ActionItem(
            type=ActionType.PREVENT, item=f"Find the root cause in {incident.service} and the change that prevents it"
        ),
    ]
    if detection.time_to_detect > timedelta(minutes=5):
        items.append(
            ActionItem(
                type=ActionType.PROCESS,
                item=f"Detection took {_duration(detection.time_to_detect)}: review the alerting on {incident.service}",
            )
        )
    unique: dict[tuple[ActionType, str], ActionItem] = {}
    for action in items:
        unique.setdefault((action.type, action.item), action)
    return tuple(unique.values())


# --- rendering ------------------------------------------------------------------------------------------------------


def render_json(postmortem: Postmortem) -> Rendered:
    content = postmortem.model_dump_json(indent=2).encode() + b"\n"
    return Rendered(content, _digest(content))


def render_markdown(postmortem: Postmortem) -> Rendered:
    content = _markdown(postmortem).encode()
    return Rendered(content, _digest(content))


def _digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def _markdown(pm: Postmortem) -> str:
    impact, detection, resolution = pm.impact, pm.detection, pm.resolution
    service = pm.service if pm.namespace is None else f"{pm.service} (namespace {pm.namespace})"
    lines = [
        f"# Postmortem: {pm.incident_id} — {_cell(pm.title)}",
        "",
        "| | |",
        "| --- | --- |",
        f"| Incident | {pm.incident_id} |",
        f"| Cluster | {pm.cluster} |",
        f"| Service | {_cell(service)} |",
        f"| Severity | {pm.severity} |",
        f"| Status | {pm.status} |",
        f"| Commander | {_cell(pm.commander) if pm.commander else '_to fill_'} |",
        *(f"| {role.value.capitalize()} | {_cell(pm.roles[role])} |" for role in SUPPORTING_ROLES if role in pm.roles),
        f"| Events read | {_clock(pm.window_start)} to {_clock(pm.window_end) if pm.window_end else 'now'} |",
        "",
        "## Summary",
        "",
        pm.summary,
        "",
        "## Impact",
        "",
        f"- Duration: {_duration(impact.duration) if impact.duration else 'ongoing'} "
        f"({_clock(impact.started_at)} to {_clock(impact.ended_at) if impact.ended_at else 'now'})",
        f"- Affected WebApps: {', '.join(impact.affected_webapps) or 'none reported'}",
        "- Error budget consumed (the slo-engine's figures):",
        "",
    ]
    if impact.budgets:
        lines += [
            "| SLO | service | objective | period | budget left before | after | consumed | peak burn rate |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for b in impact.budgets:
            lines.append(
                f"| {b.slo} | {b.service} | {_number(b.objective)}% | {_duration(b.period)} | "
                f"{_percent(b.budget_before)} | {_percent(b.budget_after)} | "
                f"{_percent(b.consumed) if b.consumed is not None else 'one reading only'} | "
                f"{_rate(b.peak_burn_rate) + 'x' if b.peak_burn_rate is not None else '—'} |"
            )
    else:
        lines.append("  no SLO events about the service in the window")
    lines += [
        "",
        "## Detection",
        "",
        f"- First signal: {_clock(detection.first_signal_at)}, {_cell(detection.first_signal)}",
        f"- Detected: {_clock(detection.detected_at)} (incident opened from {detection.source}, "
        f"fingerprint `{detection.fingerprint}`), {_duration(detection.time_to_detect)} after the first signal",
        "- Acknowledged: "
        + (
            f"{_clock(detection.acknowledged_at)}, {_duration(detection.time_to_acknowledge)} after opening"
            if detection.acknowledged_at and detection.time_to_acknowledge is not None
            else "not acknowledged"
        ),
        f"- Alertmanager group keys: {', '.join(f'`{k}`' for k in detection.alertmanager_group_keys) or 'none'}",
        "",
        "## Resolution",
        "",
        f"- Mitigated: {_since(resolution.mitigated_at, resolution.time_to_mitigate)}",
        f"- Resolved: {_since(resolution.resolved_at, resolution.time_to_resolve)}"
        + (f" by {resolution.resolved_by}" if resolution.resolved_by else ""),
        f"- Closed: {_clock(resolution.closed_at) if resolution.closed_at else 'not yet'}",
        "",
        "## Timeline (UTC)",
        "",
        "| time | source | what happened |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {_clock(e.at)} | {e.kind} | {_cell(e.text)} |" for e in pm.timeline]
    lines += [
        "",
        "## Action items",
        "",
        "| # | type | item | owner | status |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {n} | {a.type} | {_cell(a.item)} | {_cell(a.owner) or '_to fill_'} | {'DONE' if a.done else 'TODO'} |"
        for n, a in enumerate(pm.action_items, 1)
    ]
    lines += [
        "",
        "## Lessons learned",
        "",
        "_To fill: what went well, what went wrong, where we got lucky. Blameless: systems and decisions, not people._",
        "",
    ]
    return "\n".join(lines)


def _since(at: datetime | None, after: timedelta | None) -> str:
    if at is None:
        return "not yet"
    return f"{_clock(at)}, {_duration(after)} after the first signal" if after is not None else _clock(at)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _clock(at: datetime) -> str:
    return _utc(at).strftime("%Y-%m-%d %H:%M:%S")


def _duration(span: timedelta | None) -> str:
    if span is None:
        return "—"
    seconds = int(span.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v} {u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")) if v]
    return sign + (" ".join(parts) or "0 s")


def _percent(fraction: float) -> str:
    value = Decimal(repr(fraction)) * 100
    return f"{_plain(value.quantize(_CENTS))}%"


def _rate(value: float) -> str:
    return _plain(Decimal(repr(value)).quantize(_CENTS))


def _number(value: float) -> str:
    return _plain(Decimal(repr(value)))


# People read the Markdown: two decimals say everything a budget or a burn rate needs (the JSON keeps the figures
# exactly as the slo-engine reported them).
_CENTS = Decimal("0.01")


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


__all__ = [
    "DEFAULT_LOOKBACK",
    "ActionItem",
    "ActionType",
    "Detection",
    "EntryKind",
    "Impact",
    "Postmortem",
    "Rendered",
    "Resolution",
    "SloBudget",
    "TimelineEntry",
    "render_json",
    "render_markdown",
    "write_postmortem",
]
