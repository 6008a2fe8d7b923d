"""A shadow run end to end: copy the window into `SHADOW_<run>` on the server, evaluate the candidate over the copy
(policy decisions judged again, SLO alerts backtested, or incidents escalated by another policy), remove the copy
unless kept, and return the diff.

Only the copy is read: no production consumer sees it, nothing is published and nothing is applied, so a shadow run
has no side effect. The window's start goes to the server (the sourcing start); its end is applied to the copies,
by original sequence (`--to-seq`) and by the events' own time (`--until`, against ce-time).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from ballast.bus import Bus
from ballast.events.catalogue import K8S_EVENTS, PLATFORM_EVENTS
from ballast.events.contracts.escalation import EscalationConfig
from ballast.events.contracts.k8s import ObservedObject
from ballast.events.contracts.policy import PolicyDecision
from ballast.events.contracts.slo import BurnAlert
from ballast.events.envelope import Envelope
from ballast.policy import PolicyEngine
from ballast.replay import shadow, shadow_incident, shadow_policy, shadow_slo
from ballast.replay.reading import read_selection
from ballast.replay.selection import Selection
from ballast.replay.shadow import Recorded, ShadowCopy
from ballast.slo.webapp_availability import webapp_of


@dataclass(frozen=True)
class Copied:
    """A copied event inside the window: its original sequence and the decoded event."""

    sequence: int
    event: Envelope[BaseModel]


async def _window(bus: Bus, run: str, subjects: str, selection: Selection) -> AsyncIterator[Copied]:
    only = Selection(subjects=(shadow.shadow_subject(run, subjects),))
    async with contextlib.aclosing(read_selection(bus, shadow.shadow_stream(run), only)) as copies:
        async for stored in copies:
            sequence = shadow.original_sequence(stored.headers, stored.sequence)
            if selection.to_seq is not None and sequence > selection.to_seq:
                continue
            if selection.filters_headers and not selection.wants(stored.headers):
                continue
            event = stored.event
            if event is None:
                continue  # not a valid event: the services dead-lettered it, there is nothing to judge again
            if selection.since is not None and event.time < selection.since:
                continue
            if selection.until is not None and event.time > selection.until:
                continue
            yield Copied(sequence, event)


async def _copy(bus: Bus, run: str, recorded: list[Recorded], selection: Selection) -> ShadowCopy:
    return await shadow.copy_window(bus.js, run, recorded, from_seq=selection.from_seq, since=selection.since)


def _area(area: str, cluster: str | None) -> str:
    return f"evt.{area}.{cluster}.>" if cluster else f"evt.{area}.>"


async def policy(
    bus: Bus,
    engine: PolicyEngine,
    run: str,
    selection: Selection,
    *,
    cluster: str | None = None,
    keep: bool = False,
) -> tuple[ShadowCopy, shadow_policy.PolicyDiff]:
    """The decisions recorded in the window (of `cluster`, or all) judged again by `engine` (loaded with the
    candidate policies)."""
    subjects = _area("policy", cluster)
    copy = await _copy(bus, run, [Recorded(PLATFORM_EVENTS.name, subjects)], selection)
    try:

        async def decisions() -> AsyncIterator[shadow_policy.RecordedDecision]:
            async for copied in _window(bus, run, subjects, selection):
                if isinstance(copied.event.data, PolicyDecision):
                    yield shadow_policy.RecordedDecision(copied.sequence, copied.event.id, copied.event.data)

        return copy, await shadow_policy.diff(engine, decisions())
    finally:
        if not keep:
            await shadow.remove(bus.js, run)


async def slo(
    bus: Bus,
    candidate: shadow_slo.Candidate,
    run: str,
    selection: Selection,
    *,
    step: timedelta = timedelta(minutes=1),
    cluster: str | None = None,
    keep: bool = False,
    now: datetime | None = None,
) -> tuple[ShadowCopy, shadow_slo.SloDiff]:
    """The candidate's tier alerts backtested over the facts in the window, against the alerts recorded there."""
    namespace, webapp = candidate.webapp  # refuses an SLI the bus does not carry before anything is copied
    facts, alerts = _area("k8s", cluster), _area("slo", cluster)
    recorded = [Recorded(K8S_EVENTS.name, facts), Recorded(PLATFORM_EVENTS.name, alerts)]
    copy = await _copy(bus, run, recorded, selection)
    try:
        availability = shadow_slo.Availability()
        first: datetime | None = None
        async for copied in _window(bus, run, facts, selection):
            fact = copied.event.data
            if isinstance(fact, ObservedObject) and webapp_of(fact) == (namespace, webapp):
                availability.observe(copied.event.time, fact)
                first = first or copied.event.time
        transitions = []
        async for copied in _window(bus, run, alerts, selection):
            alert = copied.event.data
            if isinstance(alert, BurnAlert) and (alert.slo.namespace, alert.slo.name) == (
                candidate.namespace,
                candidate.slo.name,
            ):
                transitions.append((alert.tier, alert.state, alert.since))
        transitions.sort(key=lambda t: t[2])
        end = selection.until or now or datetime.now(UTC)
        start = selection.since or first or end
        backtested = shadow_slo.backtest(candidate, availability, start, end, step)
        return copy, shadow_slo.compare(
            candidate,
            shadow_slo.firings(transitions),
            backtested,
            start=start,
            end=end,
            step=step,
            facts=availability.facts,
        )
    finally:
        if not keep:
            await shadow.remove(bus.js, run)


async def incident(
    bus: Bus,
    escalation: EscalationConfig,
    run: str,
    selection: Selection,
    *,
    cluster: str | None = None,
    keep: bool = False,
    now: datetime | None = None,
    tolerance: timedelta = timedelta(minutes=1),
) -> tuple[ShadowCopy, shadow_incident.IncidentDiff]:
    """The incidents recorded in the window escalated again by the candidate `escalation`, against the pages the
    incident-bot recorded."""
    subjects = _area("incident", cluster)
    copy = await _copy(bus, run, [Recorded(PLATFORM_EVENTS.name, subjects)], selection)
    try:
        recorder = shadow_incident.Recorder()
        async for copied in _window(bus, run, subjects, selection):
            recorder.observe(copied.event.data)
        end = selection.until or now or datetime.now(UTC)
        return copy, shadow_incident.diff(recorder.incidents.values(), escalation, end, tolerance=tolerance)
    finally:
        if not keep:
            await shadow.remove(bus.js, run)
