"""Who a candidate escalation policy would have paged, and when, over the incidents recorded in a window.

The incident-bot records each incident's lifecycle (`evt.incident.*.*.opened|acknowledged|mitigated|resolved|closed`,
an `IncidentTransition` carrying the record as it stands) and each escalation level it notified
(`evt.incident.*.*.escalated`, an `IncidentEscalated`: level, targets, time). A candidate `EscalationConfig` is run
over the same incidents as the bot runs one: the policy is chosen when the incident opens (by its severity and
service), level n is due `after` it opened, and escalation stops once the incident is acknowledged, mitigated or no
longer active (resolved, closed), whichever came first. Pages due after the window's end are not counted (the bot
would not have sent them yet either).

Per incident, a recorded page and a candidate page of the same level are the same page when they notify the same
targets within `tolerance` of each other (the bot's timer fires a little after the due time); otherwise the level
changed. Pages of one side only were added (the candidate would have paged) or removed (it would not have). Incidents
opened before the window have no recorded opening to start from and are counted apart. Nothing is paged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ballast.events.contracts.escalation import EscalationConfig
from ballast.events.contracts.incident import IncidentEscalated, IncidentStatus, IncidentTransition


@dataclass(frozen=True)
class Page:
    level: int
    at: datetime
    notified: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"level": self.level, "at": self.at.isoformat(), "notified": list(self.notified)}

    def text(self) -> str:
        return f"level {self.level} at {self.at.isoformat()}: {', '.join(self.notified)}"


@dataclass
class RecordedIncident:
    """One incident as the window recorded it."""

    incident_id: str
    opening: IncidentTransition | None = None  # the `opened` transition, when in the window
    stopped_at: datetime | None = None  # the earliest acknowledgement, mitigation, resolution or closing
    stopped_by: str | None = None
    pages: list[Page] = field(default_factory=list)


_STOPS = (
    (IncidentStatus.ACKNOWLEDGED, "acknowledged_at"),
    (IncidentStatus.MITIGATED, "mitigated_at"),
    (IncidentStatus.RESOLVED, "resolved_at"),
    (IncidentStatus.CLOSED, "closed_at"),
)


class Recorder:
    """Gathers the recorded incidents from their events, in any order."""

    def __init__(self) -> None:
        self.incidents: dict[str, RecordedIncident] = {}

    def _incident(self, incident_id: str) -> RecordedIncident:
        return self.incidents.setdefault(incident_id, RecordedIncident(incident_id))

    def observe(self, data: object) -> None:
        if isinstance(data, IncidentTransition):
            incident = self._incident(data.incident_id)
            if data.status is IncidentStatus.OPEN and incident.opening is None:
                incident.opening = data
            for status, attribute in _STOPS:
                at: datetime | None = getattr(data, attribute)
                if at is not None and (incident.stopped_at is None or at < incident.stopped_at):
                    incident.stopped_at, incident.stopped_by = at, status.value
        elif isinstance(data, IncidentEscalated):
            page = Page(data.level, data.at, tuple(data.notified))
            incident = self._incident(data.incident_id)
            if page not in incident.pages:
                incident.pages.append(page)


def candidate_pages(
    opening: IncidentTransition, stopped_at: datetime | None, config: EscalationConfig, end: datetime
) -> tuple[str, list[Page]]:
    """The policy the candidate picks for an incident and the pages it sends up to `end`."""
    name = config.policy_for(opening.severity, opening.service)
    pages = []
    for index, (after, targets) in enumerate(config.policies[name].schedule()):
        due = opening.opened_at + after
        if (stopped_at is not None and stopped_at <= due) or due > end:
            break
        pages.append(Page(index + 1, due, targets))
    return name, pages


@dataclass(frozen=True)
class IncidentChange:
    incident_id: str
    cluster: str
    service: str
    severity: str
    opened_at: datetime
    stopped: str  # "acknowledged at ..." or "never (in the window)"
    policy: str  # the candidate's policy for it
    recorded: tuple[Page, ...]
    candidate: tuple[Page, ...]
    added: tuple[Page, ...]  # the candidate would have paged; not recorded
    removed: tuple[Page, ...]  # recorded; the candidate would not have paged
    changed: tuple[tuple[Page, Page], ...]  # same level, other targets or time: (recorded, candidate)

    def as_json(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "cluster": self.cluster,
            "service": self.service,
            "severity": self.severity,
            "opened_at": self.opened_at.isoformat(),
            "stopped": self.stopped,
            "policy": self.policy,
            "recorded": [p.as_json() for p in self.recorded],
            "candidate": [p.as_json() for p in self.candidate],
            "added": [p.as_json() for p in self.added],
            "removed": [p.as_json() for p in self.removed],
            "changed": [{"recorded": r.as_json(), "candidate": c.as_json()} for r, c in self.changed],
        }


@dataclass
class IncidentDiff:
    incidents: int = 0
    opened_before_window: list[str] = field(default_factory=list)  # incident ids not judged
    unchanged: int = 0
    changes: list[IncidentChange] = field(default_factory=list)
    recorded_pages: Counter[str] = field(default_factory=Counter)  # target -> pages, of the incidents judged
    candidate_pages: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        targets = sorted(set(self.recorded_pages) | set(self.candidate_pages))
        return {
            "incidents": self.incidents,
            "judged": self.incidents - len(self.opened_before_window),
            "opened_before_window": self.opened_before_window,
            "unchanged": self.unchanged,
            "changed": len(self.changes),
            "pages": {
                "recorded": sum(self.recorded_pages.values()),
                "candidate": sum(self.candidate_pages.values()),
            },
            "by_target": {
                t: {"recorded": self.recorded_pages[t], "candidate": self.candidate_pages[t]} for t in targets
            },
            "changes": [c.as_json() for c in self.changes],
        }

    def text(self) -> list[str]:
        judged = self.incidents - len(self.opened_before_window)
        lines = [
            f"incidents: {self.incidents} recorded, {judged} judged, {self.unchanged} unchanged, "
            f"{len(self.changes)} changed"
            + (
                f", {len(self.opened_before_window)} opened before the window (not judged)"
                if self.opened_before_window
                else ""
            ),
            f"pages: {sum(self.recorded_pages.values())} recorded, "
            f"{sum(self.candidate_pages.values())} under the candidate",
        ]
        for target in sorted(set(self.recorded_pages) | set(self.candidate_pages)):
            recorded, candidate = self.recorded_pages[target], self.candidate_pages[target]
            mark = "" if recorded == candidate else f" ({candidate - recorded:+d})"
            lines.append(f"  {target}: {recorded} -> {candidate}{mark}")
        for c in self.changes:
            lines.append(
                f"{c.incident_id} {c.severity} {c.service} ({c.cluster}), opened {c.opened_at.isoformat()}, "
                f"{c.stopped}; candidate policy {c.policy}"
            )
            lines.extend(f"    + {p.text()}" for p in c.added)
            lines.extend(f"    - {p.text()}" for p in c.removed)
            lines.extend(f"    ~ {r.text()}  ->  {n.text()}" for r, n in c.changed)
        return lines


def diff(
    incidents: Iterable[RecordedIncident],
    config: EscalationConfig,
    end: datetime,
    *,
    tolerance: timedelta = timedelta(minutes=1),
) -> IncidentDiff:
    found = IncidentDiff()
    for incident in sorted(incidents, key=_opened):
        found.incidents += 1
        opening = incident.opening
        if opening is None:
            found.opened_before_window.append(incident.incident_id)
            continue
        policy, candidate = candidate_pages(opening, incident.stopped_at, config, end)
        recorded = sorted(incident.pages, key=lambda p: (p.level, p.at))
        found.recorded_pages.update(t for p in recorded for t in p.notified)
        found.candidate_pages.update(t for p in candidate for t in p.notified)
        by_level = {p.level: p for p in candidate}
        matched: set[int] = set()
        removed, changed = [], []
        for page in recorded:
            other = by_level.get(page.level)
            if other is None or page.level in matched:
                removed.append(page)
                continue
            matched.add(page.level)
            if other.notified != page.notified or abs(other.at - page.at) > tolerance:
                changed.append((page, other))
        added = [p for p in candidate if p.level not in matched]
        if not (added or removed or changed):
            found.unchanged += 1
            continue
        stopped = (
            f"{incident.stopped_by} at {incident.stopped_at.isoformat()}"
            if incident.stopped_at is not None
            else "not acknowledged in the window"
        )
        found.changes.append(
            IncidentChange(
                incident_id=incident.incident_id,
                cluster=opening.cluster,
                service=opening.service,
                severity=opening.severity.value,
                opened_at=opening.opened_at,
                stopped=stopped,
                policy=policy,
                recorded=tuple(recorded),
                candidate=tuple(candidate),
                added=tuple(added),
                removed=tuple(removed),
                changed=tuple(changed),
            )
        )
    return found


def _opened(incident: RecordedIncident) -> tuple[int, datetime | str]:
    if incident.opening is not None:
        return (0, incident.opening.opened_at)
    return (1, incident.incident_id)
