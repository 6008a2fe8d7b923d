"""Wiring of the incident-bot service: its settings, the store, and the doors into it (bus, HTTPS, endpoints)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import cast

from pydantic import Field, FilePath, SecretStr, field_validator

from ballast.bus import LAST, Bus
from ballast.events.catalogue import INCIDENT_SIGNALS, INCIDENTS, PLATFORM_EVENTS
from ballast.incident_bot.detection import signal_handler
from ballast.incident_bot.endpoints import incident_endpoints
from ballast.incident_bot.escalation import EscalationConfigError, load_escalation
from ballast.incident_bot.metrics import IncidentMetrics
from ballast.incident_bot.postmortem_publish import PostmortemWriter
from ballast.incident_bot.records import Claim, IncidentCounter, StoredIncident
from ballast.incident_bot.slack.service import SlackSettings, wire_slack
from ballast.incident_bot.store import IncidentStore
from ballast.incident_bot.webhooks import WebhookCredentials, webhook_routes
from ballast.runtime import PORTS, HttpsSettings, ServiceApp, collector

NAME = "incident-bot"


class IncidentBotSettings(HttpsSettings, SlackSettings):
    http_port: int = Field(default=PORTS[NAME].health, ge=0, le=65535)
    https_port: int = Field(
        default=cast(int, PORTS[NAME].webhook),  # the bot's entry there has one
        ge=0,
        le=65535,
        description="Alertmanager, PagerDuty, Falco and Slack webhooks; 0 picks a free port",
    )
    escalation_file: FilePath | None = Field(
        default=None, description="escalation policies (YAML or JSON); unset: the built-in default"
    )
    resolve_hold: float = Field(
        default=120.0, ge=0, description="seconds every alert must stay resolved before its incident resolves"
    )
    webhook_token: SecretStr | None = Field(default=None, description="bearer token the webhooks accept")
    webhook_username: str | None = Field(default=None, description="basic-auth user the webhooks accept")
    webhook_password: SecretStr | None = Field(default=None, description="basic-auth password of webhook_username")
    pagerduty_routing_key: SecretStr | None = Field(default=None, description="the Events API v2 integration key")

    @field_validator("escalation_file")
    @classmethod
    def _escalation_loads(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                load_escalation(value)
            except EscalationConfigError as exc:
                raise ValueError(str(exc)) from exc
        return value


def build(settings: IncidentBotSettings) -> ServiceApp:
    app = ServiceApp(NAME, settings)
    # An alert storm allocates much per webhook and bus message: at Python's collector pace 10,000 alerts cost some 300
    # young and 30 older collections, the older ones 7-10 ms each with every request stopped.
    app.gc_threshold = collector.BUSY_SERVICE
    escalation = load_escalation(settings.escalation_file)
    metrics = IncidentMetrics(app.registry)

    async def open_store(bus: Bus) -> IncidentStore:
        store = IncidentStore(
            await bus.kv(INCIDENTS, StoredIncident),
            await bus.kv(INCIDENTS, Claim),
            await bus.kv(INCIDENTS, IncidentCounter),
            bus.publisher,
            bus.catalogue.registry,
            cluster=settings.cluster,
            escalation=escalation,
            resolve_hold=timedelta(seconds=settings.resolve_hold),
            metrics=metrics,
        )
        # Incidents the bucket lost (or never got) come back from their events before anything else reads it.
        subjects = [f"evt.incident.{settings.cluster}.>"]
        async with bus.read(PLATFORM_EVENTS.name, subjects=subjects, until=LAST) as events:
            await store.restore(events)
        return store

    store = app.lifespan("incidents", open_store)
    app.readiness(
        "incident-view", lambda: None if store.is_open and store.value.caught_up.is_set() else "loading incidents"
    )

    async def run_store(bus: Bus, stop: asyncio.Event) -> None:
        await store.value.run(stop)

    app.background(run_store)

    app.consume(INCIDENT_SIGNALS, signal_handler(lambda signal: store.value.handle(signal), settings.cluster))
    # One writer for `svc.incident.postmortem` and the Slack bot (which makes it post what it writes).
    postmortems = app.lifespan(
        "postmortems", lambda bus: PostmortemWriter.open(bus, source=f"/clusters/{settings.cluster}/{NAME}")
    )
    for spec, handler in incident_endpoints(lambda: store.value, lambda: postmortems.value):
        app.serve(spec, handler)
    credentials = WebhookCredentials(
        token=settings.webhook_token,
        username=settings.webhook_username,
        password=settings.webhook_password,
        pagerduty_routing_key=settings.pagerduty_routing_key,
    )
    # After the store: the Slack bot opens with the desk the store is.
    slack = wire_slack(
        app, settings, lambda: store.value, cluster=settings.cluster, postmortems=lambda: postmortems.value
    )
    app.https([*webhook_routes(lambda: store.value, credentials), *slack])
    return app
