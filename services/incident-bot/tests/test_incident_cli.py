"""The incident-bot as its own process: an Alertmanager webhook over its HTTPS opens an incident, which
`ballast incident list|show|ack|role|resolve` then works through over `svc.incident.*`; `ballast incident postmortem`
writes its postmortem, also posted in its channel when the bot has Slack (a local one)."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from test_webhooks import alertmanager_payload

from ballast.local.nats_server import free_port
from ballast.local.policy_webhook import write_certificate
from ballast.testing import NatsServer, ServiceProcess, eventually
from ballast.testing.slack import SlackApi

TOKEN = "process-token"


async def ballast(*args: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "ballast.cli.main", *args], capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout, done.stderr


async def test_a_webhook_opens_an_incident_the_cli_acknowledges_and_resolves(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    tls = write_certificate(tmp_path / "tls")
    port = free_port()
    bot = services(
        "ballast.incident_bot",
        nats_url=nats_server.url,
        BALLAST_CLUSTER=unique("c"),
        BALLAST_HTTPS_PORT=str(port),
        BALLAST_TLS_CERT_FILE=str(tls.cert),
        BALLAST_TLS_KEY_FILE=str(tls.key),
        BALLAST_WEBHOOK_TOKEN=TOKEN,
        BALLAST_RESOLVE_HOLD="0",
    )
    await bot.wait_status("/readyz", 200)
    service = unique("checkout")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{port}/alertmanager",
            json=alertmanager_payload(service),
            headers={"Authorization": f"Bearer {TOKEN}"},
            ssl=ssl.create_default_context(cadata=tls.ca_pem.decode()),
        ) as response,
    ):
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
    incident_id = answer["alerts"][0]["incident"]
    nats = ("--nats-url", nats_server.url)

    code, out, err = await ballast("incident", "list", "--service", service, *nats)
    assert code == 0, err
    assert incident_id in out
    assert "open" in out
    code, out, err = await ballast("incident", "ack", incident_id, "--by", "ana", *nats)
    assert code == 0, err
    assert "status:     acknowledged" in out
    assert "commander:  ana" in out
    code, out, err = await ballast("incident", "role", incident_id, "scribe", "bo", "--by", "ana", *nats)
    assert code == 0, err
    assert "scribe:     bo" in out
    code, out, err = await ballast("incident", "role", incident_id, "janitor", "bo", *nats)
    assert code == 2
    assert "invalid choice: 'janitor'" in err
    code, out, err = await ballast("incident", "resolve", incident_id, "--by", "ana", "-o", "json", *nats)
    assert code == 0, err
    assert json.loads(out)["status"] == "resolved"
    code, out, err = await ballast("incident", "ack", incident_id, *nats)
    assert code == 1
    assert "resolved" in err
    assert "(409)" in err
    code, out, err = await ballast("incident", "show", "INC-0", *nats)
    assert code == 1
    assert "no incident INC-0 (404)" in err
    await bot.wait_metric('ballast_incident_transitions_total{status="resolved"} 1.0')
    await bot.stop(timeout=15)


async def test_the_bot_process_writes_the_postmortem_on_demand_and_posts_it_in_the_incidents_slack_channel(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    tls = write_certificate(tmp_path / "tls")
    port = free_port()
    async with SlackApi() as slack:
        bot = services(
            "ballast.incident_bot",
            nats_url=nats_server.url,
            BALLAST_CLUSTER=unique("c"),
            BALLAST_HTTPS_PORT=str(port),
            BALLAST_TLS_CERT_FILE=str(tls.cert),
            BALLAST_TLS_KEY_FILE=str(tls.key),
            BALLAST_WEBHOOK_TOKEN=TOKEN,
            BALLAST_SLACK_BOT_TOKEN=slack.bot_token,
            BALLAST_SLACK_SIGNING_SECRET="s" * 32,
            BALLAST_SLACK_API_URL=slack.base_url,
        )
        await bot.wait_status("/readyz", 200)
        service = unique("payments")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"https://127.0.0.1:{port}/alertmanager",
                json=alertmanager_payload(service),
                headers={"Authorization": f"Bearer {TOKEN}"},
                ssl=ssl.create_default_context(cadata=tls.ca_pem.decode()),
            ) as response,
        ):
            assert response.status == 200
            incident_id = (await response.json())["alerts"][0]["incident"]
        channel_name = f"{incident_id.lower()}-{service}"
        channel = await eventually(lambda: slack.channel_named(channel_name), what="the incident's Slack channel")

        code, out, err = await ballast("incident", "postmortem", incident_id, "-o", "json", "--nats-url",
                                       nats_server.url)  # fmt: skip
        assert code == 0, err
        document = json.loads(out)
        assert document["posted_to"] == channel.id  # the Slack bot's writer is the endpoint's: it posts too
        assert document["location"] == f"postmortems/{incident_id}.md"
        assert document["content"].startswith(f"# Postmortem: {incident_id}")
        posted = [m for m in channel.messages if m.get("text", "").startswith(f"Postmortem: {incident_id}")]
        assert len(posted) == 1
        assert posted[0]["blocks"][1]["text"] == document["content"]
        code, out, err = await ballast("incident", "postmortem", incident_id, "--nats-url", nats_server.url)
        assert code == 0, err
        assert out == document["content"]  # nothing new in the log: the same document, not posted again
        assert len([m for m in channel.messages if m.get("text", "").startswith("Postmortem:")]) == 1
        await bot.stop(timeout=15)
