"""The HTTPS ingest on the runtime's server, with a store on a real nats-server: Alertmanager v4, PagerDuty Events
v2 and falcosidekick payloads; credentials refused, malformed bodies answered 400 naming the field."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from incident_fixtures import running_store
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from test_signals import AM_PAYLOAD

from ballast.bus import Bus
from ballast.events.contracts.incident import IncidentSource, IncidentStatus, Severity
from ballast.incident_bot.store import IncidentStore
from ballast.incident_bot.webhooks import WebhookCredentials, webhook_routes
from ballast.runtime.https import HttpsServer

TOKEN = "s3cret-token"
ROUTING_KEY = "R" * 32
CREDENTIALS = WebhookCredentials(
    token=SecretStr(TOKEN),
    username="alertmanager",
    password=SecretStr("pw"),
    pagerduty_routing_key=SecretStr(ROUTING_KEY),
)
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Ingest:
    url: str
    tls: ssl.SSLContext
    store: IncidentStore

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + path, data=data, ssl=self.tls, headers=headers or {}) as response,
        ):
            return response.status, await response.json()


@contextlib.asynccontextmanager
async def ingest(bus: Bus, cluster: str) -> AsyncIterator[Ingest]:
    async with running_store(bus, cluster) as running:
        server = HttpsServer(webhook_routes(lambda: running.store, CREDENTIALS), CollectorRegistry(), host="127.0.0.1",
                             port=0)  # fmt: skip
        await server.start()
        assert server.ca_pem is not None
        try:
            yield Ingest(f"https://127.0.0.1:{server.port}", ssl.create_default_context(cadata=server.ca_pem.decode()),
                         running.store)  # fmt: skip
        finally:
            await server.stop()


def alertmanager_payload(service: str, status: str = "firing", fingerprint: str = "c0ffee") -> dict[str, Any]:
    payload: dict[str, Any] = copy.deepcopy(AM_PAYLOAD)
    payload["status"] = status
    payload["groupKey"] = f'{{}}/{{severity="page"}}:{{service="{service}"}}'
    alert = payload["alerts"][0]
    alert["status"] = status
    alert["labels"]["service"] = service
    alert["fingerprint"] = f"{service}-{fingerprint}"
    return payload


async def test_alertmanager_firing_opens_repeats_are_idempotent_and_resolved_resolves(
    bus: Bus, unique: Callable[[str], str]
) -> None:
    service = unique("checkout")
    async with ingest(bus, unique("c")) as hook:
        status, body = await hook.post("/alertmanager", alertmanager_payload(service), BEARER)
        assert status == 200
        assert body["alerts"][0]["outcome"] == "opened"
        incident_id = body["alerts"][0]["incident"]
        status, body = await hook.post("/alertmanager", alertmanager_payload(service), BEARER)  # the group re-sent
        assert (status, body["alerts"][0]["outcome"], body["alerts"][0]["incident"]) == (200, "duplicate", incident_id)
        # another alert of the same group joins the same incident
        other = alertmanager_payload(service, fingerprint="beef")
        status, body = await hook.post("/alertmanager", other, BEARER)
        assert body["alerts"][0] == {"fingerprint": f"am:{service}-beef", "outcome": "joined", "incident": incident_id}
        record = await hook.store.get(incident_id)
        assert (record.source, record.severity, record.status) == (
            IncidentSource.ALERTMANAGER, Severity.CRITICAL, IncidentStatus.OPEN,
        )  # fmt: skip
        assert record.group_key == f'{{}}/{{severity="page"}}:{{service="{service}"}}'
        basic = base64.b64encode(b"alertmanager:pw").decode()
        for fingerprint in ("c0ffee", "beef"):
            resolved = alertmanager_payload(service, "resolved", fingerprint)
            status, _ = await hook.post("/alertmanager", resolved, {"Authorization": f"Basic {basic}"})
            assert status == 200
        assert (await hook.store.get(incident_id)).status is IncidentStatus.RESOLVED


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {base64.b64encode(b'alertmanager:wrong').decode()}"},
        {"Authorization": "Basic not-base64!"},
        {"Authorization": TOKEN},
    ],
)
async def test_webhooks_refuse_missing_or_wrong_credentials(
    bus: Bus, unique: Callable[[str], str], headers: dict[str, str]
) -> None:
    service = unique("checkout")
    async with ingest(bus, unique("c")) as hook:
        for path in ("/alertmanager", "/falco"):
            status, body = await hook.post(path, alertmanager_payload(service), headers)
            assert status == 401
            assert "unauthorized" in body["error"]
        assert await hook.store.open_incidents() == []


async def test_malformed_payloads_get_400_naming_the_field(bus: Bus, unique: Callable[[str], str]) -> None:
    async with ingest(bus, unique("c")) as hook:
        payload = alertmanager_payload(unique("checkout"))
        del payload["alerts"][0]["fingerprint"]
        status, body = await hook.post("/alertmanager", payload, BEARER)
        assert status == 400
        assert body["errors"] == ["alerts.0.fingerprint: Field required"]
        status, body = await hook.post("/alertmanager", b"{not json", BEARER)
        assert status == 400
        assert body["errors"][0].startswith("<root>: the body is not JSON")
        status, body = await hook.post("/falco", {"rule": "x", "priority": "Loud"}, BEARER)
        assert status == 400
        assert {e.split(":")[0] for e in body["errors"]} == {"output", "priority", "time"}
        assert await hook.store.open_incidents() == []


async def test_pagerduty_trigger_acknowledge_resolve_by_dedup_key(bus: Bus, unique: Callable[[str], str]) -> None:
    component = unique("postgres")
    async with ingest(bus, unique("c")) as hook:
        trigger = {
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": unique("disk-"),
            "payload": {"summary": "disk 95% full", "source": "db-1", "severity": "warning", "component": component},
        }
        status, body = await hook.post("/v2/enqueue", trigger)
        assert (status, body) == (
            202, {"status": "success", "message": "Event processed", "dedup_key": trigger["dedup_key"]},
        )  # fmt: skip
        (incident,) = [i for i in await hook.store.open_incidents() if i.service == component]
        assert incident.source is IncidentSource.PAGERDUTY
        assert incident.severity is Severity.MEDIUM
        for action, expected in (("acknowledge", IncidentStatus.ACKNOWLEDGED), ("resolve", IncidentStatus.RESOLVED)):
            event = {"routing_key": ROUTING_KEY, "event_action": action, "dedup_key": trigger["dedup_key"]}
            status, body = await hook.post("/v2/enqueue", event)
            assert status == 202
            assert body["dedup_key"] == trigger["dedup_key"]
            assert (await hook.store.get(incident.incident_id)).status is expected
        # without a dedup_key PagerDuty makes one and says which
        status, body = await hook.post("/v2/enqueue", {k: v for k, v in trigger.items() if k != "dedup_key"})
        assert status == 202
        assert len(body["dedup_key"]) == 32
        status, body = await hook.post("/v2/enqueue", trigger | {"routing_key": "W" * 32})
        assert status == 401
        assert body["message"] == "Invalid routing key"
        bad = trigger | {"payload": trigger["payload"] | {"severity": "sev1"}}  # type: ignore[operator]
        status, body = await hook.post("/v2/enqueue", bad)
        assert status == 400
        assert body["status"] == "invalid event"
        assert body["errors"][0].startswith("payload.severity: Input should be 'critical', 'error', 'warning' or")


async def test_falco_events_open_security_incidents_joined_by_rule_and_pod(
    bus: Bus, unique: Callable[[str], str]
) -> None:
    pod = unique("checkout-")
    event = {
        "uuid": unique("u"),
        "output": "Shell spawned in a container",
        "priority": "Critical",
        "rule": "Terminal shell in container",
        "time": "2026-12-01T12:00:00.123456789Z",
        "output_fields": {"k8s.ns.name": "shop", "k8s.pod.name": pod, "proc.cmdline": "bash"},
        "tags": ["container", "shell"],
        "hostname": "node-1",
    }
    async with ingest(bus, unique("c")) as hook:
        status, first = await hook.post("/falco", event, BEARER)
        assert status == 200
        assert first["outcome"] == "opened"
        status, again = await hook.post("/falco", event | {"uuid": unique("v")}, BEARER)
        assert (again["outcome"], again["incident"]) == ("duplicate", first["incident"])
        record = await hook.store.get(first["incident"])
        assert (record.source, record.severity, record.namespace) == (IncidentSource.FALCO, Severity.CRITICAL, "shop")
        assert record.title == f"security: Terminal shell in container on shop/{pod}"
