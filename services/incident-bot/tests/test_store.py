"""The incident store on a real nats-server: detection from the bus with dedup, the lifecycle through the desk and
through `svc.incident.*`, the bucket rebuilt from the incident stream, escalation by the deadline timer, chaos paused
and resumed, and a malformed event dead-lettered while the next one is handled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from incident_fixtures import chaos_commands, incident_events, running_store
from prometheus_client import CollectorRegistry

from ballast.bus import Bus, Consumer
from ballast.bus.consumer import DLQ_REASON
from ballast.bus.endpoints import EndpointCallError
from ballast.events.catalogue import INCIDENT_SIGNALS, INCIDENTS, ConsumerSpec, dead_letter_subject
from ballast.events.contracts.incident import (
    INCIDENT_ACK,
    INCIDENT_LIST,
    INCIDENT_RESOLVE,
    INCIDENT_ROLE,
    INCIDENT_SHOW,
    IncidentAction,
    IncidentList,
    IncidentQuery,
    IncidentRef,
    IncidentRole,
    IncidentStatus,
    IncidentTransition,
    RoleAssignment,
    Severity,
)
from ballast.events.contracts.slo import AlertState, BurnTier, burn_event, slo_event_type, slo_subject
from ballast.incident_bot.desk import IncidentDesk, IncidentNotFound
from ballast.incident_bot.detection import signal_handler
from ballast.incident_bot.endpoints import incident_endpoints
from ballast.incident_bot.escalation import EscalationConfig, EscalationLevel, EscalationPolicy
from ballast.incident_bot.lifecycle import InvalidTransition
from ballast.incident_bot.postmortem_publish import PostmortemWriter
from ballast.local.nats_server import NatsServer
from ballast.telemetry.metrics import BusMetrics
from ballast.testing import eventually
from ballast.testing import slo as slo_alerts

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def signals_consumer(cluster: str, durable: str) -> ConsumerSpec:
    """The service's consumer, narrowed to this test's cluster under a durable of its own."""
    return ConsumerSpec(
        durable=durable,
        stream=INCIDENT_SIGNALS.stream,
        filter_subjects=tuple(
            s.replace("evt.slo.*", f"evt.slo.{cluster}", 1)
            for s in INCIDENT_SIGNALS.filter_subjects
            if s.startswith("evt.slo.")
        ),
        description="test",
        backoff=(0.2,),
        max_deliver=2,
    )


async def publish_burn(bus: Bus, cluster: str, service: str, tier: BurnTier, state: AlertState, at: datetime) -> None:
    alert = slo_alerts.burn_alert(cluster=cluster, service=service, tier=tier, state=state, since=at)
    await slo_alerts.publish_burn(bus, alert, source="/test/slo-engine")


async def test_repeated_burn_events_open_one_incident_that_pauses_chaos_and_resolves_with_the_burn(
    bus: Bus, unique: Callable[[str], str]
) -> None:
    cluster, service = unique("c"), unique("checkout")
    async with running_store(bus, cluster) as running, chaos_commands(bus) as commands:
        spec = signals_consumer(cluster, unique("signals"))
        await bus.ensure_consumer(spec)
        consumer = Consumer(
            bus.js, spec, signal_handler(running.store.handle, cluster), registry=bus.catalogue.registry,
            metrics=BusMetrics(CollectorRegistry()),
        )  # fmt: skip
        consuming = asyncio.create_task(consumer.run(grace=5))
        # the same page burn told five times (a redelivery, a restarted engine), and the ticket tier of the service
        for minute in range(5):
            await publish_burn(bus, cluster, service, BurnTier.PAGE, AlertState.FIRING, T0 + timedelta(minutes=minute))
        await publish_burn(bus, cluster, service, BurnTier.TICKET, AlertState.FIRING, T0)

        def handled() -> bool:
            def count(outcome: str) -> float | None:
                return running.registry.get_sample_value(
                    "ballast_incident_signals_total", {"source": "slo", "outcome": outcome}
                )

            return (count("opened"), count("duplicate"), count("joined")) == (1, 4, 1)

        await eventually(handled, what="the repeated burns handled")
        (incident,) = [i for i in await running.store.open_incidents() if i.service == service]
        assert incident.severity is Severity.HIGH
        assert incident.status is IncidentStatus.OPEN
        await eventually(lambda: commands.about(incident.incident_id), what="the chaos pause")
        assert commands.about(incident.incident_id) == [(f"{incident.incident_id}:pause", True)]

        # the page tier resolving is not enough: the ticket tier still fires
        await publish_burn(bus, cluster, service, BurnTier.PAGE, AlertState.RESOLVED, T0 + timedelta(hours=1))
        await publish_burn(bus, cluster, service, BurnTier.TICKET, AlertState.RESOLVED, T0 + timedelta(hours=1))

        async def resolved() -> IncidentTransition | None:
            record = await running.store.get(incident.incident_id)
            return record if record.status is IncidentStatus.RESOLVED else None

        done = await eventually(resolved, what="the incident resolved with the burn")
        assert done.changed_by is None
        assert done.time_to_resolve is not None
        await eventually(lambda: len(commands.about(incident.incident_id)) >= 2, what="chaos resumed")
        assert dict(commands.about(incident.incident_id)) == {
            f"{incident.incident_id}:pause": True,
            f"{incident.incident_id}:resume": False,
        }
        events = [name for name, event_id in await incident_events(bus, cluster)]
        assert events == ["opened", "resolved"]
        # the burn firing again afterwards is a new incident: the old one let go of its claims
        await publish_burn(bus, cluster, service, BurnTier.PAGE, AlertState.FIRING, T0 + timedelta(hours=2))

        async def reopened() -> list[IncidentTransition] | None:
            return [i for i in await running.store.open_incidents() if i.service == service] or None

        (again,) = await eventually(reopened, what="a new incident")
        assert again.incident_id != incident.incident_id
        consumer.stop()
        await consuming


async def test_the_lifecycle_through_the_desk_publishes_each_transition_once(
    bus: Bus, unique: Callable[[str], str]
) -> None:
    cluster, service = unique("c"), unique("payments")
    async with running_store(bus, cluster) as running:
        desk: IncidentDesk = running.store  # the seam the Slack bot calls
        declared = await desk.declare(title="payments timing out", service=service, severity=Severity.HIGH, by="ana")
        assert declared.commander == "ana"
        assert declared.status is IncidentStatus.OPEN
        assert [i.incident_id for i in await desk.open_incidents()] == [declared.incident_id]
        acked = await desk.acknowledge(declared.incident_id, by="bo")
        assert acked.acknowledged_at is not None
        assert acked.time_to_acknowledge is not None
        assert (await desk.acknowledge(declared.incident_id, by="bo")) == acked  # a second press is no news
        assert (await desk.set_severity(declared.incident_id, Severity.CRITICAL, by="bo")).severity is Severity.CRITICAL
        scribed = await desk.assign_role(declared.incident_id, IncidentRole.SCRIBE, "cy", by="bo")
        assert (scribed.roles, scribed.commander, scribed.changed_by) == ({IncidentRole.SCRIBE: "cy"}, "ana", "bo")
        handed = await desk.assign_role(declared.incident_id, IncidentRole.COMMANDER, "bo", by="ana")
        assert (handed.commander, handed.roles) == ("bo", {IncidentRole.SCRIBE: "cy"})
        again = await desk.assign_role(declared.incident_id, IncidentRole.SCRIBE, "cy", by="bo")
        assert again == handed  # the same holder again is no news
        await desk.mitigate(declared.incident_id, by="bo")
        resolved = await desk.resolve(declared.incident_id, by="ana")
        with pytest.raises(InvalidTransition):
            await desk.acknowledge(declared.incident_id, by="bo")
        with pytest.raises(IncidentNotFound):
            await desk.get("INC-0")
        assert await desk.get(declared.incident_id) == resolved
        assert await desk.open_incidents() == []
        closed = await running.store.close(declared.incident_id, by="ana")
        assert closed.closed_at is not None
        events = await incident_events(bus, cluster)
        assert [name for name, _ in events] == [
            "opened", "acknowledged", "updated", "updated", "updated", "mitigated", "resolved", "closed"
        ]  # fmt: skip
        assert (await desk.get(declared.incident_id)).roles == {IncidentRole.SCRIBE: "cy"}
        assert events[1][1] == f"{declared.incident_id}:acknowledged:{acked.acknowledged_at.isoformat()}"
        assert running.registry.get_sample_value(
            "ballast_incident_time_to_acknowledge_seconds_count", {"severity": "high"}
        ) == 1  # fmt: skip
        assert running.registry.get_sample_value(
            "ballast_incident_time_to_resolve_seconds_count", {"severity": "critical"}
        ) == 1  # fmt: skip


async def test_the_lifecycle_over_the_bus_endpoints(bus: Bus, unique: Callable[[str], str]) -> None:
    cluster, service = unique("c"), unique("search")
    async with running_store(bus, cluster) as running:
        writer = await PostmortemWriter.open(bus, source="/clusters/test/incident-bot", bucket=unique("pm-"))
        for spec, handler in incident_endpoints(lambda: running.store, lambda: writer):
            await bus.serve(spec, handler)
        declared = await running.store.declare(title="search down", service=service, severity=Severity.LOW, by="ana")
        listed = await bus.request(INCIDENT_LIST, IncidentQuery(service=service))
        assert isinstance(listed, IncidentList)
        assert [i.incident_id for i in listed.incidents] == [declared.incident_id]
        acked = await bus.request(INCIDENT_ACK, IncidentAction(incident_id=declared.incident_id, by="cli-user"))
        assert isinstance(acked, IncidentTransition)
        assert acked.status is IncidentStatus.ACKNOWLEDGED
        comms = RoleAssignment(
            incident_id=declared.incident_id, by="cli-user", role=IncidentRole.COMMUNICATIONS, to="dee"
        )
        given = await bus.request(INCIDENT_ROLE, comms)
        assert isinstance(given, IncidentTransition)
        assert (given.roles, given.changed_by) == ({IncidentRole.COMMUNICATIONS: "dee"}, "cli-user")
        with pytest.raises(EndpointCallError) as unknown:
            await bus.request(INCIDENT_ROLE, comms.model_copy(update={"incident_id": "INC-0"}))
        assert unknown.value.code == 404
        resolved = await bus.request(INCIDENT_RESOLVE, IncidentAction(incident_id=declared.incident_id, by="cli-user"))
        assert isinstance(resolved, IncidentTransition)
        assert resolved.changed_by == "cli-user"
        shown = await bus.request(INCIDENT_SHOW, IncidentRef(incident_id=declared.incident_id))
        assert shown == resolved
        with pytest.raises(EndpointCallError) as conflict:
            await bus.request(INCIDENT_ACK, IncidentAction(incident_id=declared.incident_id, by="cli-user"))
        assert conflict.value.code == 409
        assert "resolved" in conflict.value.description
        with pytest.raises(EndpointCallError) as missing:
            await bus.request(INCIDENT_SHOW, IncidentRef(incident_id="INC-0"))
        assert missing.value.code == 404
        everything = await bus.request(INCIDENT_LIST, IncidentQuery(service=service, include_resolved=True))
        assert isinstance(everything, IncidentList)
        assert len(everything.incidents) == 1


async def test_a_lost_bucket_is_rebuilt_from_the_incident_stream(
    fresh_nats_server: NatsServer, unique: Callable[[str], str]
) -> None:
    cluster = unique("c")
    bus = await Bus.connect(fresh_nats_server.url, name="test", metrics=BusMetrics(CollectorRegistry()))
    try:
        async with running_store(bus, cluster) as running:
            first = await running.store.declare(title="api slow", service="api", severity=Severity.MEDIUM, by="ana")
            await running.store.acknowledge(first.incident_id, by="bo")
            await running.store.set_severity(first.incident_id, Severity.CRITICAL, by="bo")
            await running.store.assign_role(first.incident_id, IncidentRole.OPERATIONS, "cy", by="bo")
            second = await running.store.declare(title="db full", service="db", severity=Severity.HIGH, by="ana")
            await running.store.resolve(second.incident_id, by="bo")
            before = {i.incident_id: i for i in running.store.query(IncidentQuery(include_resolved=True))}
        await bus.js.delete_key_value(INCIDENTS.name)  # the bucket is lost
        async with running_store(bus, cluster) as running:
            after = {i.incident_id: i for i in running.store.query(IncidentQuery(include_resolved=True))}
            assert after == before
            third = await running.store.declare(title="cache cold", service="cache", severity=Severity.LOW, by="ana")
            assert third.incident_id == "INC-3"  # numbering goes on after the restored ones
            restored = await running.store.get(first.incident_id)
            assert (restored.status, restored.severity) == (IncidentStatus.ACKNOWLEDGED, Severity.CRITICAL)
            assert restored.roles == {IncidentRole.OPERATIONS: "cy"}
    finally:
        await bus.close()


async def test_nobody_acknowledging_escalates_level_by_level_until_someone_does(
    bus: Bus, unique: Callable[[str], str]
) -> None:
    cluster = unique("c")
    policy = EscalationPolicy(
        levels=(
            EscalationLevel(after=timedelta(seconds=0.3), notify=("secondary",)),
            EscalationLevel(after=timedelta(seconds=0.6), notify=("manager",)),
            EscalationLevel(after=timedelta(seconds=30), notify=("director",)),
        )
    )
    escalation = EscalationConfig(policies={"default": policy})
    async with running_store(bus, cluster, escalation=escalation) as running:
        ignored = await running.store.declare(title="nobody looks", service="a", severity=Severity.HIGH, by="bot")
        watched = await running.store.declare(title="someone looks", service="b", severity=Severity.HIGH, by="bot")
        await running.store.acknowledge(watched.incident_id, by="ana")

        async def escalated() -> list[str] | None:
            ids = [event_id for name, event_id in await incident_events(bus, cluster) if name == "escalated"]
            return ids if len(ids) >= 2 else None

        ids = await eventually(escalated, what="two escalation levels")
        assert ids == [f"{ignored.incident_id}:escalated:1", f"{ignored.incident_id}:escalated:2"]
        assert running.store.view()[watched.incident_id].escalation_level == 0
        assert running.store.view()[ignored.incident_id].escalation_level == 2
        await running.store.acknowledge(ignored.incident_id, by="ana")
        assert running.registry.get_sample_value("ballast_incident_escalations_total") == 2


async def test_a_malformed_event_is_dead_lettered_with_a_reason_and_the_next_one_handled(
    bus: Bus, unique: Callable[[str], str]
) -> None:
    cluster, service = unique("c"), unique("cart")
    async with running_store(bus, cluster) as running:
        spec = signals_consumer(cluster, unique("signals"))
        await bus.ensure_consumer(spec)
        dead = await bus.nc.subscribe(dead_letter_subject(spec.durable))
        consumer = Consumer(
            bus.js, spec, signal_handler(running.store.handle, cluster), registry=bus.catalogue.registry,
            metrics=BusMetrics(CollectorRegistry()),
        )  # fmt: skip
        consuming = asyncio.create_task(consumer.run(grace=5))
        subject = slo_subject(cluster, "shop", burn_event(BurnTier.PAGE, AlertState.FIRING))
        await bus.js.publish(
            subject,
            b'{"cluster": "oops"',
            headers={
                "ce-specversion": "1.0",
                "ce-id": unique("bad"),
                "ce-source": "/test",
                "ce-type": slo_event_type(burn_event(BurnTier.PAGE, AlertState.FIRING)),
            },
        )
        await publish_burn(bus, cluster, service, BurnTier.PAGE, AlertState.FIRING, T0)
        letter = await dead.next_msg(timeout=10)
        assert "bad_json" in (letter.headers or {}).get(DLQ_REASON, "")

        async def opened() -> list[IncidentTransition] | None:
            return [i for i in await running.store.open_incidents() if i.service == service] or None

        await eventually(opened, what="the incident from the good event")
        await dead.unsubscribe()
        consumer.stop()
        await consuming
