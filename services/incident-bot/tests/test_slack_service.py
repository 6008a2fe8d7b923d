"""The Slack bot as the service opens it: its settings from the environment, and the consumer's handler showing a
resolved incident's card and posting its postmortem (a real nats-server, a local Slack)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import SecretStr, ValidationError
from slack_fixtures import SIGNING_SECRET, DictDesk, recorded_events, recorded_incident

from ballast.bus import Bus, Delivery
from ballast.events.catalogue import PLATFORM_EVENTS
from ballast.events.contracts.incident import IncidentStatus, IncidentTransition, PostmortemFormat
from ballast.incident_bot.slack import SlackBot, SlackSettings
from ballast.testing.slack import SlackApi


@pytest.fixture
async def slack() -> AsyncIterator[SlackApi]:
    async with SlackApi() as api:
        yield api


def test_settings_come_from_the_environment_and_a_bot_token_needs_a_way_to_hear_slack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not SlackSettings().slack_enabled
    monkeypatch.setenv("BALLAST_SLACK_BOT_TOKEN", "xoxb-1")
    with pytest.raises(ValidationError, match=r"needs BALLAST_SLACK_SIGNING_SECRET .* or BALLAST_SLACK_APP_TOKEN"):
        SlackSettings()
    monkeypatch.setenv("BALLAST_SLACK_APP_TOKEN", "xapp-1")
    monkeypatch.setenv("BALLAST_SLACK_INVITE", "U0ONE, U0TWO,")
    settings = SlackSettings()
    assert settings.slack_enabled
    assert settings.slack_invite == ("U0ONE", "U0TWO")
    assert isinstance(settings.slack_bot_token, SecretStr)
    assert "xoxb-1" not in repr(settings)


async def test_a_resolved_incident_gets_its_card_updated_and_its_postmortem_posted(
    bus: Bus, slack: SlackApi, unique: Callable[[str], str]
) -> None:
    cluster = unique("svc")
    await bus.ensure_streams([PLATFORM_EVENTS])
    events = recorded_events(cluster)
    for subject, event in events:
        await bus.publisher.publish(subject, event)
    desk = DictDesk(cluster=cluster)
    desk.add(recorded_incident(cluster))
    settings = SlackSettings(
        slack_bot_token=SecretStr(slack.bot_token),
        slack_signing_secret=SecretStr(SIGNING_SECRET),
        slack_api_url=slack.base_url,
    )
    bot = await SlackBot.open(bus, settings, desk, cluster=cluster)
    try:
        resolved = next(
            (subject, event)
            for subject, event in events
            if isinstance(event.data, IncidentTransition)
            and event.data.incident_id == "INC-7"
            and event.data.status is IncidentStatus.RESOLVED
        )
        await bot.on_event(Delivery(resolved[1], resolved[0], {}, 1, 1))

        channel = slack.channel_named("inc-7-checkout")
        assert channel is not None
        card, postmortem = channel.messages
        assert card["text"].startswith("INC-7 [critical] resolved")
        assert postmortem["blocks"][0]["text"]["text"] == "Postmortem: INC-7 — Checkout failing for most customers"
        stored = await bot.postmortems.read("INC-7", PostmortemFormat.MARKDOWN)
        assert stored is not None
        assert postmortem["blocks"][1]["text"] == stored.decode()
    finally:
        await bot.close()
