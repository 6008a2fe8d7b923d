"""What the Slack and postmortem tests share: a small in-memory desk, the recorded events of incident INC-7, the bot
served over HTTP to a local Slack, and Slack's requests to it (signed as Slack signs them).

`DictDesk` is a test double of our own seam (`IncidentDesk`), not of a third party: the Slack bot's behaviour is
what is under test, and the lifecycle's store is tested on its own. The service wires the real desk.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from ballast.events.catalogue import REGISTRY
from ballast.events.contracts.incident import IncidentRole, IncidentSource, IncidentStatus, IncidentTransition, Severity
from ballast.events.envelope import Envelope, decode
from ballast.incident_bot.desk import IncidentNotFound
from ballast.incident_bot.slack.transport import DEFAULT_PATH, slack_routes
from ballast.testing.slack import SlackApi, form_body, interaction_body, signed_headers

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
RECORDED = Path(__file__).parent / "data" / "inc-7-events.json"
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # when INC-7 opened in the recording

_NEXT_STATUS_FROM = {
    IncidentStatus.ACKNOWLEDGED: {IncidentStatus.OPEN},
    IncidentStatus.MITIGATED: {IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED},
    IncidentStatus.RESOLVED: {IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED, IncidentStatus.MITIGATED},
}


class DictDesk:
    """`IncidentDesk` over a dict. `hold`, when given, makes every change wait for it (a slow store)."""

    def __init__(self, cluster: str = "test", namespace: str | None = "shop") -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.incidents: dict[str, IncidentTransition] = {}
        self.calls: list[tuple[str, str, str]] = []  # (what, incident id or service, by)
        self.hold: asyncio.Event | None = None

    def add(self, record: IncidentTransition) -> IncidentTransition:
        self.incidents[record.incident_id] = record
        return record

    async def declare(self, *, title: str, service: str, severity: Severity, by: str) -> IncidentTransition:
        await self._wait()
        self.calls.append(("declare", service, by))
        incident_id = f"INC-{len(self.incidents) + 1}"
        return self.add(
            IncidentTransition(
                cluster=self.cluster,
                incident_id=incident_id,
                service=service,
                namespace=self.namespace,
                severity=severity,
                title=title,
                status=IncidentStatus.OPEN,
                source=IncidentSource.SLACK,
                fingerprint=f"slack:{incident_id}",
                changed_by=by,
                opened_at=datetime.now(UTC),
            )
        )

    async def acknowledge(self, incident_id: str, *, by: str) -> IncidentTransition:
        return await self._move(incident_id, IncidentStatus.ACKNOWLEDGED, by)

    async def mitigate(self, incident_id: str, *, by: str) -> IncidentTransition:
        return await self._move(incident_id, IncidentStatus.MITIGATED, by)

    async def resolve(self, incident_id: str, *, by: str) -> IncidentTransition:
        return await self._move(incident_id, IncidentStatus.RESOLVED, by)

    async def set_severity(self, incident_id: str, severity: Severity, *, by: str) -> IncidentTransition:
        await self._wait()
        self.calls.append(("severity", incident_id, by))
        record = await self.get(incident_id)
        return self.add(record.model_copy(update={"severity": severity, "changed_by": by}))

    async def assign_role(self, incident_id: str, role: IncidentRole, to: str, *, by: str) -> IncidentTransition:
        await self._wait()
        self.calls.append(("role", incident_id, by))
        record = await self.get(incident_id)
        if role is IncidentRole.COMMANDER:
            return self.add(record.model_copy(update={"commander": to, "changed_by": by}))
        return self.add(record.model_copy(update={"roles": {**record.roles, role: to}, "changed_by": by}))

    async def get(self, incident_id: str) -> IncidentTransition:
        try:
            return self.incidents[incident_id]
        except KeyError:
            raise IncidentNotFound(incident_id) from None

    async def open_incidents(self) -> list[IncidentTransition]:
        done = (IncidentStatus.RESOLVED, IncidentStatus.CLOSED)
        return sorted((r for r in self.incidents.values() if r.status not in done), key=lambda r: r.opened_at)

    async def _move(self, incident_id: str, status: IncidentStatus, by: str) -> IncidentTransition:
        await self._wait()
        self.calls.append((status.value, incident_id, by))
        record = await self.get(incident_id)
        if record.status not in _NEXT_STATUS_FROM[status]:
            raise ValueError(f"{incident_id} is {record.status}; it cannot become {status}")
        changes: dict[str, Any] = {"status": status, f"{status.value}_at": datetime.now(UTC), "changed_by": by}
        return self.add(IncidentTransition.model_validate({**record.model_dump(), **changes}))

    async def _wait(self) -> None:
        if self.hold is not None:
            await self.hold.wait()


def incident(
    incident_id: str = "INC-1",
    *,
    cluster: str = "test",
    status: IncidentStatus = IncidentStatus.OPEN,
    service: str = "checkout",
    namespace: str | None = "shop",
    opened_at: datetime | None = None,
    **fields: Any,
) -> IncidentTransition:
    opened = opened_at or datetime.now(UTC).replace(microsecond=0)
    order = list(IncidentStatus)  # each status reached a minute after the one before
    stamped = {
        f"{s.value}_at": opened + timedelta(minutes=n) for n, s in enumerate(order) if 0 < n <= order.index(status)
    }
    return IncidentTransition.model_validate(
        {
            "cluster": cluster,
            "incident_id": incident_id,
            "service": service,
            "namespace": namespace,
            "severity": Severity.HIGH,
            "title": "Checkout errors above the SLO",
            "status": status,
            "source": IncidentSource.SLO,
            "fingerprint": f"slo:{namespace}/{service}:page",
            "opened_at": opened,
            **stamped,
            **fields,
        }
    )


def recorded_events(cluster: str | None = None) -> list[tuple[str, Envelope[BaseModel]]]:
    """INC-7's recorded events as (subject, event), in the order they were recorded; `cluster` renames the cluster
    (a test's own, on a shared nats-server)."""
    events = []
    for record in json.loads(RECORDED.read_text()):
        subject, headers, data = record["subject"], record["headers"], record["data"]
        if cluster is not None:  # the source too: the stream de-duplicates by source and id
            headers = {**headers, "ce-source": headers["ce-source"].replace("/clusters/prod/", f"/clusters/{cluster}/")}
            parts = subject.split(".")
            parts[2] = cluster
            subject = ".".join(parts)
            data = {**data, "cluster": cluster}
        events.append((subject, decode(headers, json.dumps(data).encode(), REGISTRY)))
    return events


def recorded_incident(cluster: str = "prod") -> IncidentTransition:
    """INC-7 as the desk has it at the end of the recording: resolved."""
    records = []
    for _, event in recorded_events(cluster):
        if isinstance(event.data, IncidentTransition) and event.data.incident_id == "INC-7":
            records.append(event.data)
    return records[-1]


def web_client(slack: SlackApi) -> AsyncWebClient:
    return AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)


class BotServer:
    """The Bolt app behind `slack_routes` on 127.0.0.1, and Slack's side of the conversation with it."""

    def __init__(self, app: AsyncApp, slack: SlackApi) -> None:
        self.app = app
        self.slack = slack
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        web_app = web.Application()
        web_app.add_routes(slack_routes(lambda: self.app))
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}{DEFAULT_PATH}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def post(self, body: str, headers: dict[str, str]) -> tuple[int, str]:
        headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
        async with aiohttp.ClientSession() as session, session.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def command(self, text: str, *, user: str = "U0ALICE", response: str = "cmd") -> tuple[int, str]:
        """`/incident <text>` as Slack sends it, signed now."""
        body = form_body(
            {
                "token": "legacy-verification-token",
                "team_id": "T0BALLAST",
                "team_domain": "ballast-test",
                "channel_id": "C0GENERAL",
                "channel_name": "general",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/incident",
                "text": text,
                "api_app_id": "A0BALLAST",
                "response_url": self.slack.response_url(response),
                "trigger_id": "13345224609.738474920.8088930838d88f008e0",
            }
        )
        return await self.post(body, signed_headers(SIGNING_SECRET, body))

    async def press(
        self, action_id: str, incident_id: str, *, channel: str, ts: str, user: str = "U0ALICE"
    ) -> tuple[int, str]:
        """A button of the card at (`channel`, `ts`) pressed, as Slack sends a block_actions interaction."""
        payload = {
            "type": "block_actions",
            "team": {"id": "T0BALLAST", "domain": "ballast-test"},
            "user": {"id": user, "username": user.lower(), "team_id": "T0BALLAST"},
            "api_app_id": "A0BALLAST",
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
            "channel": {"id": channel, "name": "inc"},
            "message": {"type": "message", "ts": ts, "text": "card"},
            "response_url": self.slack.response_url("button"),
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "incident_actions",
                    "value": incident_id,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        body = interaction_body(payload)
        return await self.post(body, signed_headers(SIGNING_SECRET, body))
