"""A real Alertmanager (built by `make tools`) sending its webhooks to the bot's ingest over HTTPS: alerts posted to
its API become incidents grouped as its route groups them, and resolve when it sends them resolved."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from incident_fixtures import RunningStore, running_store
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from ballast.bus import Bus
from ballast.events.contracts.incident import IncidentQuery, IncidentSource, IncidentStatus, IncidentTransition
from ballast.incident_bot.webhooks import ALERTMANAGER_PATH, WebhookCredentials, webhook_routes
from ballast.local.alertmanager import ManagedAlertmanager, Route, Webhook
from ballast.local.tools import ToolsMissing, tool
from ballast.runtime.https import HttpsServer
from ballast.testing import eventually

TOKEN = "am-token"


@pytest.fixture(scope="session")
def alertmanager_binary() -> Path:
    try:
        return tool("alertmanager")
    except ToolsMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@contextlib.asynccontextmanager
async def bot_behind_alertmanager(
    bus: Bus, cluster: str, binary: Path
) -> AsyncIterator[tuple[RunningStore, ManagedAlertmanager]]:
    async with running_store(bus, cluster) as running:
        routes = webhook_routes(lambda: running.store, WebhookCredentials(token=SecretStr(TOKEN)))
        server = HttpsServer(routes, CollectorRegistry(), host="127.0.0.1", port=0)
        await server.start()
        webhook = Webhook(f"https://127.0.0.1:{server.port}{ALERTMANAGER_PATH}", TOKEN, server.ca_pem)
        try:
            async with ManagedAlertmanager(binary, webhook, Route(group_by=("alertname",))) as alertmanager:
                yield running, alertmanager
        finally:
            await server.stop()


def alert(name: str, instance: str, *, ends: datetime | None = None) -> dict[str, Any]:
    posted: dict[str, Any] = {
        "labels": {"alertname": name, "instance": instance, "severity": "warning"},
        "annotations": {"summary": f"{name} on {instance}"},
        "startsAt": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "generatorURL": "http://prometheus.invalid/graph",
    }
    if ends is not None:
        posted["endsAt"] = ends.isoformat()
    return posted


async def test_alerts_posted_to_alertmanager_open_incidents_as_its_route_groups_them_and_resolve(
    bus: Bus, unique: Callable[[str], str], alertmanager_binary: Path
) -> None:
    disk, latency = unique("DiskFull"), unique("HighLatency")
    async with bot_behind_alertmanager(bus, unique("c"), alertmanager_binary) as (running, alertmanager):
        await alertmanager.post_alerts([alert(disk, "db-1"), alert(disk, "db-2"), alert(latency, "api-1")])

        def incidents() -> dict[str, IncidentTransition]:
            found = running.store.query(IncidentQuery(include_resolved=True))
            return {i.service: i for i in found if i.source is IncidentSource.ALERTMANAGER}

        def both_groups_in() -> bool:
            view = running.store.view()
            opened = incidents()
            return (
                set(opened) == {disk, latency} and len(view[opened[disk].incident_id].alerts) == 2
            )  # both disk alerts, one incident

        await eventually(both_groups_in, timeout=30, what="one incident per Alertmanager group")
        by_group = incidents()
        group_key = by_group[disk].group_key
        assert group_key is not None
        assert f'alertname="{disk}"' in group_key
        assert by_group[disk].incident_id != by_group[latency].incident_id

        now = datetime.now(UTC)
        await alertmanager.post_alerts(
            [alert(disk, "db-1", ends=now), alert(disk, "db-2", ends=now), alert(latency, "api-1", ends=now)]
        )

        def all_resolved() -> bool:
            return all(i.status is IncidentStatus.RESOLVED for i in incidents().values())

        await eventually(all_resolved, timeout=30, what="the incidents resolved by Alertmanager's resolved webhook")
