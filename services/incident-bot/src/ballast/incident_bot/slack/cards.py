"""What the bot shows in Slack, as pure functions of the incident record: the incident card (Block Kit), the channel
name, and the shorter notices (escalation, postmortem).

The card, built for every incident and every change of it, is written as Block Kit dicts: slack_sdk's typed block
classes check Slack's limits when turned into dicts, at a few milliseconds a card, which an alert storm opening
hundreds of incidents pays in full. The card's fixed shape keeps within those limits (nine fields a section, at most
three buttons) and its one free-length text, the header, is cut here; the tests parse every card back through the
typed classes, so a change that breaks a limit fails there. The rarer notices use the typed classes.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownBlock,
    MarkdownTextObject,
    PlainTextObject,
)

from ballast.events.contracts.incident import (
    SUPPORTING_ROLES,
    IncidentEscalated,
    IncidentStatus,
    IncidentTransition,
    Severity,
)

ACKNOWLEDGE = "incident_acknowledge"
MITIGATE = "incident_mitigate"
RESOLVE = "incident_resolve"
CARD_EVENT_TYPE = "ballast_incident"  # message metadata marking a card, so that it is found again in the channel

SLACK_USER_PREFIX = "slack:"  # how the desk is told who acted: `slack:<user id>`

_SEVERITY_ICON = {
    Severity.CRITICAL: ":red_circle:",
    Severity.HIGH: ":large_orange_circle:",
    Severity.MEDIUM: ":large_yellow_circle:",
    Severity.LOW: ":white_circle:",
}
_STATUS_ICON = {
    IncidentStatus.OPEN: ":rotating_light:",
    IncidentStatus.ACKNOWLEDGED: ":eyes:",
    IncidentStatus.MITIGATED: ":adhesive_bandage:",
    IncidentStatus.RESOLVED: ":white_check_mark:",
    IncidentStatus.CLOSED: ":lock:",
}
_HEADER_MAX = 150
_CHANNEL_MAX = 80
_MARKDOWN_MAX = 12000


def slack_actor(user_id: str) -> str:
    return f"{SLACK_USER_PREFIX}{user_id}"


def slack_user(actor: str | None) -> str | None:
    """The Slack user id in an actor the bot made with `slack_actor`, else None."""
    if actor is not None and actor.startswith(SLACK_USER_PREFIX):
        return actor[len(SLACK_USER_PREFIX) :]
    return None


def who(actor: str | None) -> str:
    """An actor as Slack shows it: a mention for Slack users, the name otherwise, `the bot` for None."""
    if actor is None:
        return "the bot"
    user = slack_user(actor)
    return f"<@{user}>" if user else actor


def when(at: datetime | None) -> str:
    """A time Slack shows in each reader's zone, with UTC as the fallback text."""
    if at is None:
        return "—"
    fallback = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time_secs}}|{fallback}>"


def channel_name(incident: IncidentTransition, prefix: str = "") -> str:
    """`inc-42-shop`: Slack channel names are lowercase letters, digits, `-` and `_`, at most 80 characters."""
    raw = "-".join(part for part in (prefix, incident.incident_id, incident.service) if part)
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-")
    return re.sub(r"-{2,}", "-", name)[:_CHANNEL_MAX].rstrip("-")


def card_text(incident: IncidentTransition) -> str:
    """The card's plain text: notifications and clients without blocks show this."""
    return (
        f"{incident.incident_id} [{incident.severity}] {incident.status}: {incident.title} (service {incident.service})"
    )


def card_blocks(incident: IncidentTransition) -> list[dict[str, Any]]:
    """The incident card: title, severity, status, service, times, and the buttons the status still allows."""
    title = f"{_SEVERITY_ICON[incident.severity]} {incident.incident_id} · {incident.title}"
    service = incident.service if incident.namespace is None else f"{incident.service} ({incident.namespace})"
    fields = [
        f"*Severity*\n{incident.severity}",
        f"*Status*\n{_STATUS_ICON[incident.status]} {incident.status}",
        f"*Service*\n{service}",
        f"*Source*\n{incident.source}",
        f"*Opened*\n{when(incident.opened_at)}",
        f"*Acknowledged*\n{when(incident.acknowledged_at)}",
        f"*Mitigated*\n{when(incident.mitigated_at)}",
        f"*Resolved*\n{when(incident.resolved_at)}",
        f"*Commander*\n{who(incident.commander) if incident.commander else '—'}",
    ]
    roles = incident.roles
    held = [f"*{role.value.capitalize()}* {who(roles[role])}" for role in SUPPORTING_ROLES if role in roles]
    context = [f"fingerprint `{incident.fingerprint}`"]
    if incident.group_key:
        context.append(f"Alertmanager group `{incident.group_key}`")
    context.append(f"last change by {who(incident.changed_by)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(_cut(title, _HEADER_MAX))},
        {"type": "section", "fields": [_mrkdwn(f) for f in fields]},
        *([{"type": "section", "text": _mrkdwn(" · ".join(held))}] if held else []),
        {"type": "context", "elements": [_mrkdwn(" · ".join(context))]},
    ]
    buttons = _buttons(incident)
    if buttons:
        blocks.append({"type": "actions", "block_id": "incident_actions", "elements": buttons})
    return blocks


def card_metadata(incident: IncidentTransition) -> dict[str, Any]:
    return {"event_type": CARD_EVENT_TYPE, "event_payload": {"incident_id": incident.incident_id}}


def _buttons(incident: IncidentTransition) -> list[dict[str, Any]]:
    status, value = incident.status, incident.incident_id
    buttons = []
    if status is IncidentStatus.OPEN:
        buttons.append(_button("Acknowledge", ACKNOWLEDGE, value, style="primary"))
    if status in (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED):
        buttons.append(_button("Mitigated", MITIGATE, value))
    if status in (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED, IncidentStatus.MITIGATED):
        resolve = _button("Resolve", RESOLVE, value, style="danger")
        resolve["confirm"] = {
            "title": _plain("Resolve the incident?"),
            "text": _mrkdwn(f"{incident.incident_id} will be marked resolved: its cause is fixed."),
            "confirm": _plain("Resolve"),
            "deny": _plain("Not yet"),
        }
        buttons.append(resolve)
    return buttons


def _button(text: str, action_id: str, value: str, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "text": _plain(text), "action_id": action_id, "value": value}
    if style is not None:
        button["style"] = style
    return button


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def announcement(incident: IncidentTransition, channel_id: str) -> str:
    """One line in the announcement channel pointing at the incident's own channel."""
    return (
        f"{_SEVERITY_ICON[incident.severity]} {incident.incident_id} opened ({incident.severity}, service "
        f"{incident.service}): {incident.title} — follow it in <#{channel_id}>"
    )


def escalation_text(escalated: IncidentEscalated) -> str:
    seconds = int(escalated.unacknowledged_for.total_seconds())
    waited = f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"  # policies of seconds: not "0 min"
    notified = ", ".join(who(target) for target in escalated.notified)
    return (
        f":rotating_light: {escalated.incident_id} unacknowledged for {waited}: escalated to level "
        f"{escalated.level}, notifying {notified}"
    )


def postmortem_blocks(title: str, markdown: str, location: str) -> list[dict[str, Any]]:
    """The postmortem as a message: its Markdown (Slack renders the `markdown` block), cut at Slack's limit with a
    pointer to the stored document."""
    note = f"\n\n_Cut for Slack; the whole document is stored at `{location}`._"
    text = markdown if len(markdown) <= _MARKDOWN_MAX else markdown[: _MARKDOWN_MAX - len(note)] + note
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=_cut(title, _HEADER_MAX))),
        MarkdownBlock(text=text),
        ContextBlock(elements=[MarkdownTextObject(text=f"stored at `{location}`")]),
    ]
    return [block.to_dict() for block in blocks]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
