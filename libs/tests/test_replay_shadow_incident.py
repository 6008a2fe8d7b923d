"""The incident-bot shadow against a real nats-server: recorded incidents escalated again by a candidate policy,
reporting exactly who it would have paged and when; the recorded policy itself changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ballast.bus import Bus
from ballast.cli.main import main
from ballast.events import new_event
from ballast.events.contracts.escalation import (
    DEFAULT_ESCALATION,
    EscalationConfig,
    EscalationLevel,
    EscalationPolicy,
    EscalationRoute,
)
from ballast.events.contracts.incident import (
    IncidentEscalated,
    IncidentEvent,
    IncidentSource,
    IncidentStatus,
    IncidentTransition,
    Severity,
    incident_event_type,
    incident_subject,
    transition_event,
)
from ballast.local.nats_server import NatsServer
from ballast.replay import shadowing
from ballast.replay.selection import Selection
from ballast.replay.shadow_incident import Page
from ballast.telemetry.metrics import BusMetrics

M = timedelta(minutes=1)

STRICTER = EscalationConfig(
    policies={
        **DEFAULT_ESCALATION.policies,
        "urgent": EscalationPolicy(
            levels=(
                EscalationLevel(after=1 * M, notify=("oncall-primary",)),
                EscalationLevel(after=3 * M, notify=("incident-managers",)),
            )
        ),
    },
    routes=(EscalationRoute(policy="urgent", severity=(Severity.CRITICAL, Severity.HIGH)),),
)


def _recorded(cluster: str, t0: datetime) -> list[tuple[str, object]]:
    """Four incidents as the bot recorded them under the default policy (5m oncall-secondary, then 15m
    incident-managers, repeating every 15m):
      A critical: opened t0, paged at 5m and 15m, acknowledged at 20m
      B high: opened t0+10m, acknowledged at 12m: no page
      C low: opened t0+30m, paged at 35m, resolved at 40m
      D: opened before the window (t0-30m), only its page at t0+2m... is in it
    """
    events: list[tuple[str, object]] = []

    def transition(
        incident: str,
        severity: Severity,
        service: str,
        opened: datetime,
        status: IncidentStatus,
        at: datetime,
        **times: datetime,
    ) -> None:
        record = IncidentTransition(
            cluster=cluster,
            incident_id=incident,
            service=service,
            namespace="shop",
            severity=severity,
            title=f"{service} is down",
            status=status,
            source=IncidentSource.SLO,
            fingerprint=f"{cluster}/{service}",
            opened_at=opened,
            **times,
        )
        event = transition_event(status)
        events.append(
            (
                incident_subject(cluster, "shop", event),
                new_event(
                    incident_event_type(event),
                    f"/clusters/{cluster}/incident-bot",
                    record,
                    subject=incident,
                    event_id=f"{incident}:{status.value}:{at.isoformat()}",
                    time=at,
                ),
            )
        )

    def escalated(
        incident: str, severity: Severity, service: str, opened: datetime, level: int, at: datetime, notified: str
    ) -> None:
        page = IncidentEscalated(
            cluster=cluster,
            incident_id=incident,
            service=service,
            namespace="shop",
            severity=severity,
            level=level,
            notified=(notified,),
            unacknowledged_for=at - opened,
            at=at,
        )
        event = IncidentEvent.ESCALATED
        events.append(
            (
                incident_subject(cluster, "shop", event),
                new_event(
                    incident_event_type(event),
                    f"/clusters/{cluster}/incident-bot",
                    page,
                    subject=incident,
                    event_id=f"{incident}:escalated:{level}",
                    time=at,
                ),
            )
        )

    crit, high, low = Severity.CRITICAL, Severity.HIGH, Severity.LOW
    a, b, c, d = (f"{cluster}-{x}" for x in "ABCD")
    transition(d, crit, "ledger", t0 - 30 * M, IncidentStatus.OPEN, t0 - 30 * M)
    transition(a, crit, "checkout", t0, IncidentStatus.OPEN, t0)
    escalated(d, crit, "ledger", t0 - 30 * M, 3, t0 + 2 * M, "incident-managers")
    escalated(a, crit, "checkout", t0, 1, t0 + 5 * M, "oncall-secondary")  # the timer fires a few seconds late
    transition(b, high, "search", t0 + 10 * M, IncidentStatus.OPEN, t0 + 10 * M)
    transition(b, high, "search", t0 + 10 * M, IncidentStatus.ACKNOWLEDGED, t0 + 12 * M, acknowledged_at=t0 + 12 * M)
    escalated(a, crit, "checkout", t0, 2, t0 + 15 * M + timedelta(seconds=3), "incident-managers")
    transition(a, crit, "checkout", t0, IncidentStatus.ACKNOWLEDGED, t0 + 20 * M, acknowledged_at=t0 + 20 * M)
    transition(c, low, "batch", t0 + 30 * M, IncidentStatus.OPEN, t0 + 30 * M)
    escalated(c, low, "batch", t0 + 30 * M, 1, t0 + 35 * M, "oncall-secondary")
    transition(c, low, "batch", t0 + 30 * M, IncidentStatus.RESOLVED, t0 + 40 * M, resolved_at=t0 + 40 * M)
    return events


async def _publish(bus: Bus, cluster: str, t0: datetime) -> None:
    await bus.ensure_streams()
    await bus.publisher.publish_all(_recorded(cluster, t0))  # type: ignore[arg-type]


@pytest.fixture
async def streams(bus: Bus) -> Bus:
    await bus.ensure_streams()
    return bus


async def test_the_recorded_policy_changes_nothing_and_a_stricter_one_exactly_its_pages(
    streams: Bus, unique: Callable[[str], str]
) -> None:
    cluster = unique("inc")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    await _publish(streams, cluster, t0)
    window = Selection(since=t0 - M)

    copy, same = await shadowing.incident(streams, DEFAULT_ESCALATION, unique("ia"), window, cluster=cluster)
    assert copy.copied == 11  # every recorded incident event of the cluster, the one before the window included
    assert (same.incidents, same.unchanged, same.changes) == (4, 3, [])
    assert same.opened_before_window == [f"{cluster}-D"]

    _, diff = await shadowing.incident(streams, STRICTER, unique("ib"), window, cluster=cluster)
    assert (diff.incidents, diff.unchanged, len(diff.changes)) == (4, 1, 2)
    a, b = diff.changes
    assert (a.incident_id, a.policy, a.added, a.removed) == (f"{cluster}-A", "urgent", (), ())
    assert a.changed == (
        (Page(1, t0 + 5 * M, ("oncall-secondary",)), Page(1, t0 + M, ("oncall-primary",))),
        (
            Page(2, t0 + 15 * M + timedelta(seconds=3), ("incident-managers",)),
            Page(2, t0 + 3 * M, ("incident-managers",)),
        ),
    )
    assert (b.incident_id, b.policy, b.removed, b.changed) == (f"{cluster}-B", "urgent", (), ())
    assert b.added == (Page(1, t0 + 11 * M, ("oncall-primary",)),)  # before the ack at 12m; level 2 (13m) is not
    assert dict(diff.recorded_pages) == {"oncall-secondary": 2, "incident-managers": 1}
    assert dict(diff.candidate_pages) == {"oncall-primary": 2, "incident-managers": 1, "oncall-secondary": 1}
    assert "    + level 1 at" in "\n".join(diff.text())

    # the window's end: pages due after it are not counted
    _, early = await shadowing.incident(
        streams, STRICTER, unique("ic"), Selection(since=t0 - M, until=t0 + 2 * M), cluster=cluster
    )
    (only,) = early.changes
    assert only.candidate == (Page(1, t0 + M, ("oncall-primary",)),)
    assert only.removed == ()  # the recorded page at 5m is outside the window too


def test_the_command_reports_as_json_and_refuses_a_bad_policy_file(
    nats_server: NatsServer, unique: Callable[[str], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = unique("incli")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)

    async def publish() -> None:
        bus = await Bus.connect(nats_server.url, name="incli", metrics=BusMetrics(CollectorRegistry()))
        try:
            await _publish(bus, cluster, t0)
        finally:
            await bus.close()

    asyncio.run(publish())
    candidate = tmp_path / "escalation.yaml"
    candidate.write_text(STRICTER.model_dump_json())
    since = (t0 - M).isoformat()
    args = ["events", "shadow", "incident", "--nats-url", nats_server.url, "--cluster", cluster, "--since", since]
    assert main([*args, "--escalation", str(candidate), "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["kind"], report["incidents"], report["changed"], report["unchanged"]) == ("incident", 4, 2, 1)
    assert report["by_target"]["oncall-primary"] == {"recorded": 0, "candidate": 2}
    assert report["pages"] == {"recorded": 3, "candidate": 4}

    assert main([*args, "--escalation", str(candidate)]) == 0
    text = capsys.readouterr().out
    assert "incidents: 4 recorded, 3 judged, 1 unchanged, 2 changed, 1 opened before the window" in text
    assert "oncall-primary: 0 -> 2 (+2)" in text

    bad = tmp_path / "bad.yaml"
    bad.write_text("policies: {default: {levels: [{after: 5m}]}}")
    assert main([*args, "--escalation", str(bad)]) == 2
    assert "policies.default.levels.0.notify" in capsys.readouterr().err
