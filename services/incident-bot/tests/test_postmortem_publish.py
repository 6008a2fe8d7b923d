"""The postmortem's edge on a real nats-server: INC-7's recorded events published to PLATFORM_EVENTS are read back
over the incident's window, the document stored in the object store and announced with PostmortemPublished, and
posted in the incident's Slack channel (a local Slack) — once, however often it is published — also from
`/incident postmortem`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from slack_fixtures import SIGNING_SECRET, BotServer, DictDesk, recorded_events, recorded_incident, web_client

from ballast.bus import LAST, Bus
from ballast.events.catalogue import PLATFORM_EVENTS, BucketSpec
from ballast.events.contracts.incident import (
    IncidentEvent,
    PostmortemFormat,
    PostmortemPublished,
    incident_event_type,
)
from ballast.incident_bot.postmortem import render_json, render_markdown, write_postmortem
from ballast.incident_bot.postmortem_publish import PostmortemWriter
from ballast.incident_bot.slack import IncidentChannels, SlackThread, build_slack_app
from ballast.testing import eventually
from ballast.testing.slack import SlackApi


@pytest.fixture
async def slack() -> AsyncIterator[SlackApi]:
    async with SlackApi() as api:
        yield api


@pytest.fixture
def cluster(unique: Callable[[str], str]) -> str:
    return unique("pm")


@pytest.fixture
async def recorded(bus: Bus, cluster: str) -> None:
    """INC-7's events on the stream, under the test's own cluster name."""
    await bus.ensure_streams([PLATFORM_EVENTS])
    for subject, event in recorded_events(cluster):
        await bus.publisher.publish(subject, event)


@pytest.fixture
async def channels(bus: Bus, slack: SlackApi, unique: Callable[[str], str], cluster: str) -> IncidentChannels:
    spec = BucketSpec(name=unique("incident-slack-"), description="test threads", history=5)
    await bus.ensure_buckets([spec])
    desk = DictDesk(cluster=cluster)
    desk.add(recorded_incident(cluster))
    return IncidentChannels(web_client(slack), await bus.kv(spec, SlackThread), desk)


@pytest.fixture
async def writer(bus: Bus, channels: IncidentChannels, unique: Callable[[str], str]) -> PostmortemWriter:
    return await PostmortemWriter.open(
        bus, source="/clusters/test/incident-bot", poster=channels, bucket=unique("postmortems-")
    )


async def published(bus: Bus, cluster: str) -> list[PostmortemPublished]:
    subject = f"evt.incident.{cluster}.shop.{IncidentEvent.POSTMORTEM_PUBLISHED}"
    found = []
    async with bus.read(PLATFORM_EVENTS.name, subjects=[subject], until=LAST) as stored:
        async for message in stored:
            assert message.event is not None
            assert message.event.type == incident_event_type(IncidentEvent.POSTMORTEM_PUBLISHED)
            assert isinstance(message.event.data, PostmortemPublished)
            found.append(message.event.data)
    return found


@pytest.mark.usefixtures("recorded")
async def test_the_postmortem_is_read_from_the_log_stored_announced_and_posted_once(
    bus: Bus, cluster: str, writer: PostmortemWriter, slack: SlackApi
) -> None:
    record = recorded_incident(cluster)
    result = await writer.publish(record)

    expected = write_postmortem(record, [event for _, event in recorded_events(cluster)])
    markdown, json_doc = render_markdown(expected), render_json(expected)
    assert result.documents[PostmortemFormat.MARKDOWN] == markdown
    assert result.documents[PostmortemFormat.JSON] == json_doc
    assert result.postmortem.impact.budgets[0].consumed == 0.21
    assert await writer.read("INC-7") == markdown.content
    assert await writer.read("INC-7", PostmortemFormat.JSON) == json_doc.content
    announced = await published(bus, cluster)
    assert {(p.format, p.digest, p.location) for p in announced} == {
        (PostmortemFormat.MARKDOWN, markdown.digest, result.locations[PostmortemFormat.MARKDOWN]),
        (PostmortemFormat.JSON, json_doc.digest, result.locations[PostmortemFormat.JSON]),
    }
    channel = slack.channel_named("inc-7-checkout")
    assert channel is not None
    assert result.posted_to == channel.id
    card, post = channel.messages
    assert card["metadata"]["event_payload"]["incident_id"] == "INC-7"
    assert post["blocks"][1] == {"type": "markdown", "text": markdown.content.decode()}
    assert "21%" in post["blocks"][1]["text"]

    again = await writer.publish(record)  # nothing new in the log: the same document
    assert again.documents == result.documents
    assert len(channel.messages) == 2  # not posted twice
    assert len(await published(bus, cluster)) == 2  # announced once per format (same event ids)


@pytest.mark.usefixtures("recorded")
async def test_incident_postmortem_command_writes_and_posts_it(
    writer: PostmortemWriter, channels: IncidentChannels, slack: SlackApi, cluster: str
) -> None:
    desk = DictDesk(cluster=cluster)
    desk.add(recorded_incident(cluster))
    app = build_slack_app(
        client=web_client(slack), signing_secret=SIGNING_SECRET, desk=desk, channels=channels, postmortems=writer
    )
    bot = BotServer(app, slack)
    await bot.start()
    try:
        status, _ = await bot.command("postmortem INC-7", response="pm")
        assert status == 200
        answer = await eventually(
            lambda: next((body for name, body in slack.responses if name == "pm"), None),
            what="the answer to /incident postmortem",
        )
    finally:
        await bot.stop()
    channel = slack.channel_named("inc-7-checkout")
    assert channel is not None
    assert answer["text"].startswith("Postmortem of INC-7 written from ")
    assert answer["text"].endswith(f"and posted in <#{channel.id}>")
    assert channel.messages[-1]["blocks"][0]["text"]["text"] == (
        "Postmortem: INC-7 — Checkout failing for most customers"
    )
