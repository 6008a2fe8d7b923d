"""Incident channels and cards from `evt.incident` events on a real nats-server (KV bucket, durable consumer), shown
in a local Slack: one channel and one card per incident whatever is redelivered, re-published or handled at once,
the card following every transition, an attempt that died half-way finished without a second card."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from slack_fixtures import DictDesk, incident, web_client

from ballast.bus import Bus, Consumer, Delivery, KeyValue, Reject, RetryLater
from ballast.events.catalogue import CATALOGUE, PLATFORM_EVENTS, BucketSpec, ConsumerSpec
from ballast.events.contracts.incident import (
    IncidentEscalated,
    IncidentEvent,
    IncidentTransition,
    Severity,
    incident_event_type,
    incident_subject,
    transition_event,
)
from ballast.events.envelope import Envelope, new_event
from ballast.incident_bot.slack import IncidentChannels, SlackThread
from ballast.incident_bot.slack.cards import card_blocks, card_metadata, card_text
from ballast.testing import eventually
from ballast.testing.slack import BOT_USER_ID, SlackApi

Publish = Callable[[BaseModel, str], Awaitable[Envelope[BaseModel]]]


@pytest.fixture
async def slack() -> AsyncIterator[SlackApi]:
    async with SlackApi() as api:
        yield api


@pytest.fixture
def cluster(unique: Callable[[str], str]) -> str:
    return unique("slack")


@pytest.fixture
def desk(cluster: str) -> DictDesk:
    return DictDesk(cluster=cluster)


@pytest.fixture
async def threads(bus: Bus, unique: Callable[[str], str]) -> KeyValue[SlackThread]:
    spec = BucketSpec(name=unique("incident-slack-"), description="test threads", history=5)
    await bus.ensure_buckets([spec])
    return await bus.kv(spec, SlackThread)


@pytest.fixture
def channels(slack: SlackApi, threads: KeyValue[SlackThread], desk: DictDesk) -> IncidentChannels:
    return IncidentChannels(web_client(slack), threads, desk)


@pytest.fixture
async def publish(bus: Bus, cluster: str) -> Publish:
    await bus.ensure_streams([PLATFORM_EVENTS])

    async def send(data: BaseModel, event_id: str) -> Envelope[BaseModel]:
        event = transition_event(data.status) if isinstance(data, IncidentTransition) else IncidentEvent.ESCALATED
        assert isinstance(data, IncidentTransition | IncidentEscalated)
        envelope: Envelope[BaseModel] = new_event(
            incident_event_type(event), f"/clusters/{cluster}/incident-bot", data, event_id=event_id
        )
        await bus.publisher.publish(incident_subject(cluster, data.namespace, event), envelope)
        return envelope

    return send


@pytest.fixture
async def consuming(
    bus: Bus, cluster: str, channels: IncidentChannels, unique: Callable[[str], str]
) -> AsyncIterator[None]:
    """The bot's consumer of the test's cluster, retrying fast."""
    await bus.ensure_streams([PLATFORM_EVENTS])
    spec = ConsumerSpec(
        durable=unique("incident-slack-"),
        stream=PLATFORM_EVENTS.name,
        filter_subjects=(f"evt.incident.{cluster}.>",),
        description="test",
        backoff=(1.0,),  # JetStream redelivers after backoff[0] without an ack: not shorter than a loaded handler
        max_deliver=10,
        ack_wait=10,
    )
    await bus.ensure_consumer(spec)
    consumer = Consumer(bus.js, spec, channels.on_event, registry=CATALOGUE.registry, metrics=bus.metrics)
    task = asyncio.create_task(consumer.run(grace=5))
    yield
    consumer.stop()
    await task


def delivery(envelope: Envelope[BaseModel], attempt: int = 1) -> Delivery:
    return Delivery(envelope, "evt.incident.test", {}, 1, attempt)


def card_of(slack: SlackApi, channel_name: str) -> dict[str, Any] | None:
    channel = slack.channel_named(channel_name)
    if channel is None or not channel.messages:
        return None
    return channel.messages[0]


def shows(slack: SlackApi, text: str) -> Callable[[], bool]:
    """Whether INC-1's card reads `text…` now."""
    return lambda: str((card_of(slack, "inc-1-checkout") or {}).get("text", "")).startswith(text)


def opened_id(record: IncidentTransition) -> str:
    return f"{record.incident_id}:{record.status}:{record.opened_at.isoformat()}"


@pytest.mark.usefixtures("consuming")
async def test_an_opened_incident_gets_a_channel_and_one_card_even_when_redelivered_or_republished(
    slack: SlackApi, desk: DictDesk, publish: Publish, channels: IncidentChannels
) -> None:
    record = desk.add(incident("INC-1", cluster=desk.cluster))
    envelope = await publish(record, opened_id(record))
    card = await eventually(lambda: card_of(slack, "inc-1-checkout"), what="the card")
    assert card["text"] == "INC-1 [high] open: Checkout errors above the SLO (service checkout)"
    assert card["metadata"]["event_payload"] == {"incident_id": "INC-1"}

    await channels.on_event(delivery(envelope, attempt=2))  # the ack was lost: the same event again
    await publish(record, opened_id(record) + ":from-another-replica")  # the fact told again under another id
    await eventually(lambda: len(slack.calls_to("chat.update")) >= 2, what="the card refreshed twice")
    assert len(slack.calls_to("conversations.create")) == 1
    assert len(slack.calls_to("chat.postMessage")) == 1
    (channel,) = slack.channels.values()
    assert len(channel.messages) == 1


@pytest.mark.usefixtures("consuming")
async def test_a_handler_that_failed_half_way_is_redelivered_and_finishes_without_a_second_channel(
    slack: SlackApi, desk: DictDesk, publish: Publish, threads: KeyValue[SlackThread]
) -> None:
    slack.fail("chat.postMessage", "internal_error")  # the channel is made, then posting the card fails
    record = desk.add(incident("INC-1", cluster=desk.cluster))
    await publish(record, opened_id(record))
    await eventually(lambda: card_of(slack, "inc-1-checkout"), what="the card, on redelivery")
    assert len(slack.calls_to("conversations.create")) == 1  # the channel was written down before the failure
    assert len(slack.calls_to("chat.postMessage")) == 2  # the failed post and the one that made the card
    (channel,) = slack.channels.values()
    assert len(channel.messages) == 1

    async def written_down() -> SlackThread | None:  # the card shows in Slack a moment before it is recorded
        stored = await threads.get("INC-1")
        return stored.value if stored is not None and stored.value is not None and stored.value.ts else None

    thread = await eventually(written_down, what="the card's ts in the bucket")
    assert (thread.channel, thread.ts) == (channel.id, channel.messages[0]["ts"])


@pytest.mark.usefixtures("consuming")
async def test_the_card_follows_every_transition(slack: SlackApi, desk: DictDesk, publish: Publish) -> None:
    record = desk.add(incident("INC-1", cluster=desk.cluster))
    await publish(record, opened_id(record))
    await eventually(lambda: card_of(slack, "inc-1-checkout"))
    for change in (desk.acknowledge, desk.mitigate, desk.resolve):
        moved = await change("INC-1", by="slack:U0BOB")
        await publish(moved, f"INC-1:{moved.status}")
        await eventually(shows(slack, f"INC-1 [high] {moved.status}"), what=f"the card showing {moved.status}")
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert len(slack.calls_to("chat.update")) >= 3  # once per transition (more if an event was redelivered)


@pytest.mark.usefixtures("consuming")
async def test_transitions_arriving_together_or_out_of_order_make_one_card_showing_the_latest(
    slack: SlackApi, desk: DictDesk, publish: Publish
) -> None:
    record = desk.add(incident("INC-1", cluster=desk.cluster))
    acknowledged = await desk.acknowledge("INC-1", by="slack:U0BOB")
    await publish(acknowledged, "INC-1:acknowledged")  # before the opening, as a concurrent handler may see them
    await publish(record, opened_id(record))
    await eventually(shows(slack, "INC-1 [high] acknowledged"), what="the card showing the latest state")
    await eventually(lambda: len(slack.calls_to("chat.update")) >= 1, what="both events handled")
    assert len(slack.calls_to("conversations.create")) == 1
    assert len(slack.calls_to("chat.postMessage")) == 1


async def test_a_card_posted_by_an_attempt_that_died_before_writing_it_down_is_found_not_posted_again(
    slack: SlackApi, desk: DictDesk, threads: KeyValue[SlackThread], channels: IncidentChannels
) -> None:
    record = desk.add(incident("INC-1", cluster=desk.cluster))
    channel = slack.add_channel("inc-1-checkout", members=(BOT_USER_ID,))
    client = web_client(slack)
    await client.chat_postMessage(
        channel=channel.id, text=card_text(record), blocks=card_blocks(record), metadata=card_metadata(record)
    )
    long_ago = datetime.now(UTC) - timedelta(minutes=5)  # its claim went stale with it
    await threads.create("INC-1", SlackThread(incident_id="INC-1", claimed_at=long_ago, channel=channel.id))
    await channels.show(record)
    assert len(channel.messages) == 1
    assert len(slack.calls_to("chat.postMessage")) == 1  # the dead attempt's, none since
    stored = await threads.get("INC-1")
    assert stored is not None
    assert stored.value is not None
    assert stored.value.ts == channel.messages[0]["ts"]


async def test_a_fresh_claim_of_another_replica_is_waited_for(
    desk: DictDesk, threads: KeyValue[SlackThread], channels: IncidentChannels, slack: SlackApi
) -> None:
    record = desk.add(incident("INC-1", cluster=desk.cluster))
    await threads.create("INC-1", SlackThread(incident_id="INC-1", claimed_at=datetime.now(UTC)))
    with pytest.raises(RetryLater, match="another replica is opening its channel"):
        await channels.show(record)
    assert slack.calls == []


async def test_a_channel_people_already_made_under_the_name_is_joined_and_used(
    slack: SlackApi, desk: DictDesk, channels: IncidentChannels
) -> None:
    existing = slack.add_channel("inc-1-checkout")  # the bot is not in it
    record = desk.add(incident("INC-1", cluster=desk.cluster))
    await channels.show(record)
    assert BOT_USER_ID in existing.members
    assert len(existing.messages) == 1
    assert [c.method for c in slack.calls][:3] == ["conversations.create", "conversations.list", "conversations.join"]


async def test_the_declarer_and_the_configured_responders_are_invited_and_the_announcement_made_once(
    slack: SlackApi, desk: DictDesk, threads: KeyValue[SlackThread]
) -> None:
    announcements = slack.add_channel("incidents", members=(BOT_USER_ID,))
    channels = IncidentChannels(
        web_client(slack), threads, desk, announce_channel=announcements.id, invite=("U0ONCALL",)
    )
    record = await desk.declare(title="Search is down", service="search", severity=Severity.CRITICAL, by="slack:U0BOB")
    await asyncio.gather(channels.show(record), channels.show(record))
    (invite,) = slack.calls_to("conversations.invite")
    assert invite.args["users"] == "U0BOB,U0ONCALL"
    channel = slack.channel_named("inc-1-search")
    assert channel is not None
    assert {"U0BOB", "U0ONCALL"} <= channel.members
    (line,) = announcements.messages
    assert line["text"].endswith(f"follow it in <#{channel.id}>")


async def test_an_escalation_is_posted_in_the_incident_channel_once(
    slack: SlackApi, desk: DictDesk, channels: IncidentChannels, cluster: str
) -> None:
    record = desk.add(incident("INC-1", cluster=cluster))
    escalated = IncidentEscalated(
        cluster=cluster,
        incident_id="INC-1",
        service="checkout",
        namespace="shop",
        severity=record.severity,
        level=2,
        notified=("slack:U0LEAD", "sre-managers"),
        unacknowledged_for=timedelta(minutes=15),
        at=datetime.now(UTC),
    )
    envelope: Envelope[BaseModel] = new_event(incident_event_type(IncidentEvent.ESCALATED), "test", escalated)
    await channels.on_event(delivery(envelope))  # before the opening's event: the channel is made from the desk
    await channels.on_event(delivery(envelope, attempt=2))
    channel = slack.channel_named("inc-1-checkout")
    assert channel is not None
    card, notice = channel.messages
    assert card["metadata"]["event_payload"]["incident_id"] == "INC-1"
    assert notice["text"] == (
        ":rotating_light: INC-1 unacknowledged for 15 min: escalated to level 2, notifying <@U0LEAD>, sre-managers"
    )


async def test_an_incident_id_that_cannot_be_a_key_is_rejected_with_the_reason(
    desk: DictDesk, channels: IncidentChannels
) -> None:
    record = desk.add(incident("INC 1*", cluster=desk.cluster))
    with pytest.raises(Reject, match="cannot be a key"):
        await channels.show(record)
