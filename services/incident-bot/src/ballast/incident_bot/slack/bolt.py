"""The Slack app people talk to: the card's buttons and `/incident`, on slack-bolt's `AsyncApp`.

Slack wants an answer within 3 seconds. Every listener therefore only acknowledges (with a line saying what is being
done, or what was wrong with the command) and leaves the work — the desk, Slack's Web API — to a lazy listener that
runs after the answer went out (`process_before_response=True`: the acknowledgement is the HTTP response, the lazy
work a task of its own). Requests over HTTP are verified by Bolt against the signing secret (HMAC-SHA256 of
`v0:<timestamp>:<body>`, timestamps older than 5 minutes refused): anything else gets 401 before a listener runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from ballast.events.contracts.incident import IncidentTransition
from ballast.incident_bot.desk import IncidentDesk, IncidentNotFound
from ballast.incident_bot.postmortem_publish import PostmortemWriter
from ballast.incident_bot.slack.cards import (
    ACKNOWLEDGE,
    MITIGATE,
    RESOLVE,
    card_blocks,
    card_text,
    slack_actor,
    who,
)
from ballast.incident_bot.slack.channels import IncidentChannels
from ballast.incident_bot.slack.commands import (
    USAGE,
    Acknowledge,
    AssignRole,
    Command,
    CommandError,
    Declare,
    Help,
    Mitigate,
    Resolve,
    SetSeverity,
    Status,
    WritePostmortem,
    parse,
)

log = logging.getLogger(__name__)

COMMAND = "/incident"
_BUTTONS = re.compile(f"^({ACKNOWLEDGE}|{MITIGATE}|{RESOLVE})$")


def build_slack_app(
    *,
    client: AsyncWebClient,
    signing_secret: str,
    desk: IncidentDesk,
    channels: IncidentChannels | None = None,
    postmortems: PostmortemWriter | None = None,
) -> AsyncApp:
    """The bot's Bolt app. `client` is the Web API client (its token is the bot token; tests point it at a local
    Slack); `channels` tells where an incident's channel is, `postmortems` answers `/incident postmortem`."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        process_before_response=True,
        logger=log,
        name="ballast-incident-bot",
    )
    actions = _Actions(desk, channels, postmortems)
    app.action(_BUTTONS)(ack=_ack, lazy=[actions.on_button])
    app.command(COMMAND)(ack=_ack_command, lazy=[actions.on_command])
    return app


async def _ack(ack: AsyncAck) -> None:
    await ack()


async def _ack_command(ack: AsyncAck, command: dict[str, Any]) -> None:
    """Answers at once: the usage for help or a command that does not parse, else what is under way."""
    try:
        parsed = parse(command.get("text", ""))
    except CommandError as exc:
        await ack(text=str(exc), response_type="ephemeral")
        return
    if isinstance(parsed, Help):
        await ack(text=USAGE, response_type="ephemeral")
        return
    await ack(text=_working_on(parsed), response_type="ephemeral")


def _working_on(command: Command) -> str:
    if isinstance(command, Declare):
        return f"Declaring an incident on {command.service}…"
    if isinstance(command, Status):
        return "Looking it up…"
    if isinstance(command, WritePostmortem):
        return f"Writing the postmortem of {command.incident_id} from the event log…"
    return "On it…"


class _Actions:
    """The lazy half of each listener: the desk, then what the person is told."""

    def __init__(
        self, desk: IncidentDesk, channels: IncidentChannels | None, postmortems: PostmortemWriter | None
    ) -> None:
        self._desk = desk
        self._channels = channels
        self._postmortems = postmortems

    async def on_button(
        self, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        incident_id, by = action["value"], slack_actor(body["user"]["id"])
        change: dict[str, Callable[..., Awaitable[IncidentTransition]]] = {
            ACKNOWLEDGE: self._desk.acknowledge,
            MITIGATE: self._desk.mitigate,
            RESOLVE: self._desk.resolve,
        }
        try:
            record = await change[action["action_id"]](incident_id, by=by)
        except (IncidentNotFound, ValueError) as exc:
            await respond(text=f"{incident_id}: {_reason(exc)}", response_type="ephemeral", replace_original=False)
            return
        # The card pressed shows the change at once; the transition event updates it again (to the same content).
        await client.chat_update(
            channel=body["channel"]["id"],
            ts=body["message"]["ts"],
            text=card_text(record),
            blocks=card_blocks(record),
        )

    async def on_command(self, command: dict[str, Any], respond: AsyncRespond) -> None:
        try:
            parsed = parse(command.get("text", ""))
        except CommandError:
            return  # answered by the acknowledgement
        by = slack_actor(command["user_id"])
        try:
            text = await self._run(parsed, by)
        except (IncidentNotFound, ValueError) as exc:
            text = _reason(exc)
        except Exception as exc:  # the person must hear that it failed, not wait for nothing
            log.exception("/incident failed", extra={"text": command.get("text", "")})
            text = f"That failed: {type(exc).__name__}. The incident-bot's log has the details."
        if text:
            await respond(text=text, response_type="ephemeral")

    async def _run(self, command: Command, by: str) -> str | None:
        desk = self._desk
        if isinstance(command, Declare):
            record = await desk.declare(title=command.title, service=command.service, severity=command.severity, by=by)
            return f"Declared {record.incident_id} ({record.severity}, {record.service}): {record.title}"
        if isinstance(command, Acknowledge):
            return _changed(await desk.acknowledge(command.incident_id, by=by))
        if isinstance(command, Mitigate):
            return _changed(await desk.mitigate(command.incident_id, by=by))
        if isinstance(command, Resolve):
            return _changed(await desk.resolve(command.incident_id, by=by))
        if isinstance(command, SetSeverity):
            record = await desk.set_severity(command.incident_id, command.severity, by=by)
            return f"{record.incident_id} is now {record.severity}"
        if isinstance(command, AssignRole):
            record = await desk.assign_role(command.incident_id, command.role, command.to, by=by)
            return f"{who(command.to)} is now {command.role} of {record.incident_id}"
        if isinstance(command, Status):
            return await self._status(command.incident_id)
        if isinstance(command, WritePostmortem):
            return await self._postmortem(command.incident_id)
        return None

    async def _status(self, incident_id: str | None) -> str:
        records = [await self._desk.get(incident_id)] if incident_id else await self._desk.open_incidents()
        if not records:
            return "No open incidents."
        lines = []
        for record in records:
            channel = await self._channels.channel_of(record.incident_id) if self._channels else None
            lines.append(f"• {card_text(record)}" + (f" — <#{channel}>" if channel else ""))
        return "\n".join(lines)

    async def _postmortem(self, incident_id: str) -> str:
        if self._postmortems is None:
            return "Postmortems are not set up in this incident-bot."
        record = await self._desk.get(incident_id)
        published = await self._postmortems.publish(record)
        where = f" and posted in <#{published.posted_to}>" if published.posted_to else ""
        stored = ", ".join(published.locations.values())
        return f"Postmortem of {incident_id} written from {published.events_read} events: stored as {stored}{where}"


def _changed(record: IncidentTransition) -> str:
    return f"{record.incident_id} is {record.status}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, IncidentNotFound):
        return f"no such incident ({exc})" if str(exc) else "no such incident"
    return str(exc)
