"""Shared by the incident-bot's suites: a store on a real nats-server, and what it published."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from ballast.bus import LAST, Bus
from ballast.events.catalogue import INCIDENTS, PLATFORM_EVENTS
from ballast.events.contracts.chaos import PauseChaos
from ballast.events.envelope import decode
from ballast.incident_bot.escalation import DEFAULT_ESCALATION, EscalationConfig
from ballast.incident_bot.metrics import IncidentMetrics
from ballast.incident_bot.records import Claim, IncidentCounter, StoredIncident
from ballast.incident_bot.store import IncidentStore


@dataclass
class RunningStore:
    store: IncidentStore
    stop: asyncio.Event
    task: asyncio.Task[None]
    registry: CollectorRegistry


@contextlib.asynccontextmanager
async def running_store(
    bus: Bus,
    cluster: str,
    *,
    hold: timedelta = timedelta(0),
    escalation: EscalationConfig = DEFAULT_ESCALATION,
) -> AsyncIterator[RunningStore]:
    """A store as the service opens it (restored from the stream, following the bucket, timer running)."""
    await bus.ensure_streams()
    await bus.ensure_buckets()
    registry = CollectorRegistry()
    store = IncidentStore(
        await bus.kv(INCIDENTS, StoredIncident),
        await bus.kv(INCIDENTS, Claim),
        await bus.kv(INCIDENTS, IncidentCounter),
        bus.publisher,
        bus.catalogue.registry,
        cluster=cluster,
        escalation=escalation,
        resolve_hold=hold,
        metrics=IncidentMetrics(registry),
    )
    async with bus.read(PLATFORM_EVENTS.name, subjects=[f"evt.incident.{cluster}.>"], until=LAST) as events:
        await store.restore(events)
    stop = asyncio.Event()
    task = asyncio.create_task(store.run(stop))
    await asyncio.wait_for(store.caught_up.wait(), 10)
    try:
        yield RunningStore(store, stop, task, registry)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def incident_events(bus: Bus, cluster: str) -> list[tuple[str, str]]:
    """(event name, event id) of every incident event of `cluster`, in stream order."""
    found = []
    async with bus.read(PLATFORM_EVENTS.name, subjects=[f"evt.incident.{cluster}.>"], until=LAST) as events:
        async for stored in events:
            assert stored.event is not None, stored.error
            found.append((stored.subject.rsplit(".", 1)[1], stored.event.id))
    return found


@dataclass
class ChaosCommands:
    """`cmd.chaos.pause` commands seen on the wire (a core subscription: the COMMANDS work queue stays untouched)."""

    bus: Bus
    seen: list[tuple[str, PauseChaos]] = field(default_factory=list)

    async def on_message(self, msg: Msg) -> None:
        event = decode(msg.headers, msg.data, self.bus.catalogue.registry)
        assert isinstance(event.data, PauseChaos)
        self.seen.append((event.id, event.data))

    def about(self, incident_id: str) -> list[tuple[str, bool]]:
        return [(event_id, command.paused) for event_id, command in self.seen if event_id.startswith(f"{incident_id}:")]


@contextlib.asynccontextmanager
async def chaos_commands(bus: Bus) -> AsyncIterator[ChaosCommands]:
    commands = ChaosCommands(bus)
    subscription = await bus.nc.subscribe("cmd.chaos.pause", cb=commands.on_message)
    try:
        yield commands
    finally:
        await subscription.unsubscribe()
