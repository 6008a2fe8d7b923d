"""The Slack app over HTTP, driven as Slack drives it (signed requests to its Request URL) with the real slack-bolt
and slack_sdk talking to a local Slack Web API: signatures, the acknowledgement before the work, the card's buttons,
every `/incident` subcommand, and Socket Mode."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_fixtures import SIGNING_SECRET, BotServer, DictDesk, incident, web_client

from ballast.events.contracts.incident import IncidentRole, IncidentStatus, Severity
from ballast.incident_bot.slack import build_slack_app, run_socket_mode
from ballast.incident_bot.slack.cards import ACKNOWLEDGE, MITIGATE, RESOLVE, card_blocks, card_text
from ballast.testing import eventually
from ballast.testing.slack import SlackApi, form_body, signed_headers


@pytest.fixture
async def slack() -> AsyncIterator[SlackApi]:
    async with SlackApi() as api:
        yield api


@pytest.fixture
def desk() -> DictDesk:
    return DictDesk()


@pytest.fixture
async def bot(slack: SlackApi, desk: DictDesk) -> AsyncIterator[BotServer]:
    server = BotServer(build_slack_app(client=web_client(slack), signing_secret=SIGNING_SECRET, desk=desk), slack)
    await server.start()
    yield server
    await server.stop()


def answered(slack: SlackApi, name: str) -> dict[str, Any] | None:
    """What the bot posted to the response_url called `name`, once it did."""
    return next((body for url, body in slack.responses if url == name), None)


def buttons(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


# --- signatures ------------------------------------------------------------------------------------------------------


async def test_unsigned_mis_signed_altered_and_stale_requests_get_401_and_reach_nothing(
    bot: BotServer, desk: DictDesk, slack: SlackApi
) -> None:
    body = form_body({"command": "/incident", "text": "declare checkout Down", "user_id": "U0MALLORY"})
    now = int(time.time())
    refused = {
        "unsigned": {},
        "signed with another secret": signed_headers("not-the-signing-secret", body),
        "body changed after signing": signed_headers(SIGNING_SECRET, body.replace("Down", "Up")),
        "older than 5 minutes": signed_headers(SIGNING_SECRET, body, timestamp=now - 301),
        "more than 5 minutes ahead": signed_headers(SIGNING_SECRET, body, timestamp=now + 330),
        "timestamp not a number": {**signed_headers(SIGNING_SECRET, body), "X-Slack-Request-Timestamp": "soon"},
    }
    for case, headers in refused.items():
        status, _ = await bot.post(body, headers)
        assert status == 401, case
    assert desk.calls == []
    assert slack.calls == []  # not even auth.test: nothing ran past the verification


async def test_a_request_signed_within_the_replay_window_is_accepted(bot: BotServer, slack: SlackApi) -> None:
    body = form_body(
        {"command": "/incident", "text": "help", "user_id": "U0ALICE", "response_url": slack.response_url("x")}
    )
    status, text = await bot.post(body, signed_headers(SIGNING_SECRET, body, timestamp=int(time.time()) - 290))
    assert status == 200
    assert "Usage" in json.loads(text)["text"]


# --- the acknowledgement comes first --------------------------------------------------------------------------------


async def test_a_command_is_acknowledged_before_the_slow_work_which_answers_after(
    bot: BotServer, desk: DictDesk, slack: SlackApi
) -> None:
    desk.hold = asyncio.Event()  # the incident store is slow: the work cannot finish yet
    status, text = await asyncio.wait_for(bot.command("declare checkout high Checkout is down", response="d"), 3)
    assert status == 200
    assert json.loads(text) == {"text": "Declaring an incident on checkout…", "response_type": "ephemeral"}
    assert desk.incidents == {}
    desk.hold.set()
    response = await eventually(lambda: answered(slack, "d"), what="the answer after the work")
    assert response["text"] == "Declared INC-1 (high, checkout): Checkout is down"
    assert response["response_type"] == "ephemeral"
    record = desk.incidents["INC-1"]
    assert (record.severity, record.title, record.changed_by) == (Severity.HIGH, "Checkout is down", "slack:U0ALICE")


# --- the card's buttons ----------------------------------------------------------------------------------------------


async def card_in_channel(slack: SlackApi, desk: DictDesk, incident_id: str) -> tuple[str, str]:
    """The card as the bot posts it in an incident channel: (channel, ts)."""
    channel = slack.add_channel(f"{incident_id.lower()}-checkout", members=("U0BALLASTBOT",))
    record = await desk.get(incident_id)
    posted = await web_client(slack).chat_postMessage(
        channel=channel.id, text=card_text(record), blocks=card_blocks(record)
    )
    return channel.id, str(posted["ts"])


async def test_acknowledge_button_acknowledges_through_the_desk_and_updates_the_card(
    bot: BotServer, desk: DictDesk, slack: SlackApi
) -> None:
    desk.add(incident("INC-1"))
    channel, ts = await card_in_channel(slack, desk, "INC-1")
    assert buttons(slack.channels[channel].messages[0]["blocks"]) == [ACKNOWLEDGE, MITIGATE, RESOLVE]

    status, _ = await bot.press(ACKNOWLEDGE, "INC-1", channel=channel, ts=ts, user="U0BOB")
    assert status == 200

    (update,) = await eventually(lambda: slack.calls_to("chat.update"), what="the card updated")
    assert (update.args["channel"], update.args["ts"]) == (channel, ts)
    assert desk.calls == [("acknowledged", "INC-1", "slack:U0BOB")]
    assert desk.incidents["INC-1"].status is IncidentStatus.ACKNOWLEDGED
    (card,) = slack.channels[channel].messages
    assert card["text"].startswith("INC-1 [high] acknowledged")
    assert buttons(card["blocks"]) == [MITIGATE, RESOLVE]  # acknowledged once is enough
    assert "<@U0BOB>" in json.dumps(card["blocks"])


async def test_mitigated_and_resolve_buttons_move_the_incident_on(
    bot: BotServer, desk: DictDesk, slack: SlackApi
) -> None:
    desk.add(incident("INC-1", status=IncidentStatus.ACKNOWLEDGED))
    channel, ts = await card_in_channel(slack, desk, "INC-1")
    await bot.press(MITIGATE, "INC-1", channel=channel, ts=ts)
    await eventually(lambda: len(slack.calls_to("chat.update")) == 1)
    assert buttons(slack.channels[channel].messages[0]["blocks"]) == [RESOLVE]
    await bot.press(RESOLVE, "INC-1", channel=channel, ts=ts)
    await eventually(lambda: len(slack.calls_to("chat.update")) == 2)
    assert buttons(slack.channels[channel].messages[0]["blocks"]) == []
    assert [c[0] for c in desk.calls] == ["mitigated", "resolved"]


async def test_a_button_the_lifecycle_refuses_is_explained_to_the_presser_and_changes_nothing(
    bot: BotServer, desk: DictDesk, slack: SlackApi
) -> None:
    desk.add(incident("INC-1", status=IncidentStatus.RESOLVED))
    channel, ts = await card_in_channel(slack, desk, "INC-1")
    await bot.press(ACKNOWLEDGE, "INC-1", channel=channel, ts=ts)
    response = await eventually(lambda: answered(slack, "button"))
    assert response["text"] == "INC-1: INC-1 is resolved; it cannot become acknowledged"
    assert response["response_type"] == "ephemeral"
    assert slack.calls_to("chat.update") == []


# --- /incident -------------------------------------------------------------------------------------------------------


async def run(bot: BotServer, slack: SlackApi, text: str, name: str, user: str = "U0ALICE") -> str:
    status, _ = await bot.command(text, response=name, user=user)
    assert status == 200
    response = await eventually(lambda: answered(slack, name), what=f"the answer to /incident {text}")
    return str(response["text"])


async def test_every_subcommand_through_a_lifecycle(bot: BotServer, desk: DictDesk, slack: SlackApi) -> None:
    assert await run(bot, slack, "declare checkout critical Payments fail at checkout", "1") == (
        "Declared INC-1 (critical, checkout): Payments fail at checkout"
    )
    assert await run(bot, slack, "declare search Slow results", "2") == "Declared INC-2 (medium, search): Slow results"
    assert await run(bot, slack, "ack INC-1", "3", user="U0BOB") == "INC-1 is acknowledged"
    assert await run(bot, slack, "severity INC-2 low", "4") == "INC-2 is now low"
    assert await run(bot, slack, "role INC-1 scribe <@U0CARL|carl>", "4a") == "<@U0CARL> is now scribe of INC-1"
    assert await run(bot, slack, "role INC-1 Communications @dana", "4b") == "dana is now communications of INC-1"
    roles = (await desk.get("INC-1")).roles
    assert roles == {IncidentRole.SCRIBE: "slack:U0CARL", IncidentRole.COMMUNICATIONS: "dana"}
    status_one = await run(bot, slack, "status INC-1", "5")
    assert status_one == "• INC-1 [critical] acknowledged: Payments fail at checkout (service checkout)"
    assert await run(bot, slack, "mitigate INC-1", "6") == "INC-1 is mitigated"
    assert await run(bot, slack, "resolve INC-1", "7") == "INC-1 is resolved"
    assert await run(bot, slack, "status", "8") == "• INC-2 [low] open: Slow results (service search)"
    assert await run(bot, slack, "resolve INC-2", "9") == "INC-2 is resolved"
    assert await run(bot, slack, "status", "10") == "No open incidents."
    assert await run(bot, slack, "postmortem INC-1", "11") == "Postmortems are not set up in this incident-bot."
    assert desk.calls == [
        ("declare", "checkout", "slack:U0ALICE"),
        ("declare", "search", "slack:U0ALICE"),
        ("acknowledged", "INC-1", "slack:U0BOB"),
        ("severity", "INC-2", "slack:U0ALICE"),
        ("role", "INC-1", "slack:U0ALICE"),
        ("role", "INC-1", "slack:U0ALICE"),
        ("mitigated", "INC-1", "slack:U0ALICE"),
        ("resolved", "INC-1", "slack:U0ALICE"),
        ("resolved", "INC-2", "slack:U0ALICE"),
    ]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("", "Usage: "),
        ("help", "Usage: "),
        ("frobnicate INC-1", "Unknown subcommand `frobnicate`."),
        ("ack", "`ack` takes exactly one incident id."),
        ("declare checkout", "`declare` needs a title after the service."),
        ("severity INC-1 apocalyptic", "`apocalyptic` is not a severity: use one of critical, high, medium, low."),
        ("status INC-1 INC-2", "`status` takes at most one incident."),
        ("role INC-1 scribe", "`role` takes an incident, a role and a person."),
        ("role INC-1 janitor <@U0CARL>", "`janitor` is not a role: use one of commander, communications, operations"),
    ],
)
async def test_a_command_that_does_not_parse_is_answered_at_once_with_how_to_type_it(
    bot: BotServer, desk: DictDesk, slack: SlackApi, text: str, answer: str
) -> None:
    status, body = await bot.command(text)
    assert status == 200
    assert json.loads(body)["text"].startswith(answer)
    assert json.loads(body)["response_type"] == "ephemeral"
    assert desk.calls == []


async def test_an_unknown_incident_is_named_in_the_answer(bot: BotServer, slack: SlackApi) -> None:
    assert await run(bot, slack, "ack INC-404", "a") == "no such incident (INC-404)"
    assert await run(bot, slack, "status INC-404", "b") == "no such incident (INC-404)"


# --- Socket Mode -----------------------------------------------------------------------------------------------------


async def test_socket_mode_receives_a_command_and_acknowledges_it_over_the_socket(
    slack: SlackApi, desk: DictDesk
) -> None:
    app = build_slack_app(client=web_client(slack), signing_secret="", desk=desk)
    stop = asyncio.Event()
    socket_mode = asyncio.create_task(run_socket_mode(app, slack.app_token, stop))
    try:
        envelope = await slack.deliver_over_socket(
            "slash_commands",
            {
                "command": "/incident",
                "text": "declare checkout low Socket Mode works",
                "user_id": "U0ALICE",
                "channel_id": "C0GENERAL",
                "response_url": slack.response_url("socket"),
            },
        )
        reply = await eventually(lambda: slack.socket_replies.get(envelope), what="the acknowledgement")
        assert reply == {"text": "Declaring an incident on checkout…", "response_type": "ephemeral"}
        response = await eventually(lambda: answered(slack, "socket"))
        assert response["text"] == "Declared INC-1 (low, checkout): Socket Mode works"
        assert slack.calls_to("apps.connections.open")[0].token == slack.app_token
    finally:
        stop.set()
        await socket_mode
