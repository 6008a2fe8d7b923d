"""Ordered, non-acking reads of a stream against a real nats-server: start points, filters, ends, malformed messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Literal

import pytest
from conftest import observed
from prometheus_client import CollectorRegistry

from ballast.bus import LAST, Bus, StoredEvent
from ballast.events import encode
from ballast.events.envelope import DecodeFailure
from ballast.local.nats_server import NatsServer
from ballast.telemetry.metrics import BusMetrics


@pytest.fixture
def cluster(unique: Callable[[str], str]) -> str:
    return unique("r")


@pytest.fixture
async def streams(bus: Bus) -> Bus:
    await bus.ensure_streams()
    return bus


def subject(cluster: str, kind: str = "Deployment") -> str:
    return f"evt.k8s.{cluster}.shop.{kind}.updated"


async def publish(bus: Bus, cluster: str, *names: str, kind: str = "Deployment") -> list[int]:
    # The cluster token makes the event ids (so the de-duplication keys) the test's own.
    acks = await bus.publisher.publish_all(
        [(subject(cluster, kind), observed(name, resource_version=cluster)) for name in names]
    )
    return [ack.seq for ack in acks]


async def read_all(
    bus: Bus,
    *,
    subjects: list[str],
    until: int | Literal["last"],
    from_sequence: int | None = None,
    from_time: datetime | None = None,
) -> list[StoredEvent]:
    reader = bus.read("K8S_EVENTS", subjects=subjects, from_sequence=from_sequence, from_time=from_time, until=until)
    async with asyncio.timeout(20), reader as events:
        return [stored async for stored in events]


def names(read: list[StoredEvent]) -> list[str]:
    return [stored.event.data.object.name for stored in read if stored.event]  # type: ignore[attr-defined]


async def test_reads_from_a_sequence_in_order_up_to_the_last_message(streams: Bus, cluster: str) -> None:
    sequences = await publish(streams, cluster, "a", "b", "c", "d")

    read = await read_all(streams, subjects=[f"evt.k8s.{cluster}.>"], from_sequence=sequences[1], until=LAST)

    assert [stored.sequence for stored in read] == sequences[1:]
    assert names(read) == ["b", "c", "d"]
    assert all(stored.subject == subject(cluster) and stored.error is None for stored in read)
    assert read[0].headers["ce-id"] == f"uid-b:{cluster}:updated"
    assert read[0].time <= read[-1].time <= datetime.now(UTC)


async def test_reads_from_a_time(streams: Bus, cluster: str) -> None:
    await publish(streams, cluster, "before")
    mark = datetime.now(UTC)  # the publish above was stored before this, the ones below after
    await publish(streams, cluster, "after-1", "after-2")

    read = await read_all(streams, subjects=[f"evt.k8s.{cluster}.>"], from_time=mark, until=LAST)

    assert names(read) == ["after-1", "after-2"]
    assert read[0].time >= mark


async def test_subject_filters_pick_their_messages_only(streams: Bus, cluster: str) -> None:
    await publish(streams, cluster, "d1", kind="Deployment")
    await publish(streams, cluster, "p1", kind="Pod")
    await publish(streams, cluster, "d2", kind="Deployment")
    await publish(streams, cluster, "w1", kind="WebApp")

    only_deployments = await read_all(streams, subjects=[subject(cluster, "Deployment")], until=LAST)
    pods_and_webapps = await read_all(
        streams, subjects=[subject(cluster, "Pod"), subject(cluster, "WebApp")], until=LAST
    )

    assert names(only_deployments) == ["d1", "d2"]
    assert names(pods_and_webapps) == ["p1", "w1"]


async def test_ends_at_a_given_sequence_and_at_once_when_nothing_matches(streams: Bus, cluster: str) -> None:
    sequences = await publish(streams, cluster, "a", "b", "c")

    read = await read_all(streams, subjects=[f"evt.k8s.{cluster}.>"], until=sequences[1])
    nothing = await read_all(streams, subjects=[f"evt.k8s.{cluster}-none.>"], until=LAST)
    past_the_end = await read_all(
        streams, subjects=[f"evt.k8s.{cluster}.>"], from_sequence=sequences[2] + 1, until=LAST
    )

    assert names(read) == ["a", "b"]
    assert nothing == []
    assert past_the_end == []


async def test_malformed_messages_are_handed_out_in_order_with_the_decode_error(streams: Bus, cluster: str) -> None:
    headers, body = encode(observed("good-2", resource_version=cluster))
    await publish(streams, cluster, "good-1")
    await streams.js.publish(subject(cluster), b"no headers at all")
    await streams.js.publish(subject(cluster), b"{not json", headers=headers | {"Nats-Msg-Id": "bad-json"})
    await streams.js.publish(subject(cluster), body, headers=headers)

    read = await read_all(streams, subjects=[f"evt.k8s.{cluster}.>"], until=LAST)

    assert len(read) == 4
    assert [stored.error.failure if stored.error else None for stored in read] == [
        None,
        DecodeFailure.MISSING_HEADER,
        DecodeFailure.BAD_JSON,
        None,
    ]
    assert read[1].event is None
    assert read[1].data == b"no headers at all"
    assert names(read) == ["good-1", "good-2"]


async def test_without_an_end_it_follows_new_messages(streams: Bus, cluster: str) -> None:
    await publish(streams, cluster, "old")

    async with asyncio.timeout(20), streams.read("K8S_EVENTS", subjects=[f"evt.k8s.{cluster}.>"]) as events:
        iterator = aiter(events)
        first = await anext(iterator)
        await publish(streams, cluster, "new")
        second = await anext(iterator)

    assert names([first, second]) == ["old", "new"]


async def test_bad_start_points_and_missing_streams_are_clear_errors(streams: Bus) -> None:
    with pytest.raises(ValueError, match="not both"):
        streams.read("K8S_EVENTS", from_sequence=1, from_time=datetime.now(UTC))
    with pytest.raises(ValueError, match="time zone"):
        streams.read("K8S_EVENTS", from_time=datetime.now())
    with pytest.raises(LookupError, match="NO_SUCH_STREAM"):
        async with streams.read("NO_SUCH_STREAM"):
            pass


@pytest.fixture
async def own_bus(fresh_nats_server: NatsServer) -> AsyncIterator[Bus]:
    bus = await Bus.connect(fresh_nats_server.url, name="test", metrics=BusMetrics(CollectorRegistry()))
    await bus.ensure_streams()
    yield bus
    await bus.close()


async def test_a_read_goes_on_after_a_server_restart_without_gaps_or_repeats(
    own_bus: Bus, fresh_nats_server: NatsServer, cluster: str
) -> None:
    await publish(own_bus, cluster, "a", "b")
    read: list[StoredEvent] = []

    async with asyncio.timeout(60), own_bus.read("K8S_EVENTS", subjects=[f"evt.k8s.{cluster}.>"]) as events:
        iterator = aiter(events)
        read += [await anext(iterator), await anext(iterator)]

        fresh_nats_server.restart()  # SIGKILL: the reader's in-memory consumer is gone
        await publish(own_bus, cluster, "c")  # retried until the client has reconnected
        read.append(await anext(iterator))

    assert names(read) == ["a", "b", "c"]
    assert read[2].sequence == read[1].sequence + 1


async def test_a_consumer_removed_under_the_reader_is_replaced(streams: Bus, cluster: str) -> None:
    await publish(streams, cluster, "a")
    filter_subject = f"evt.k8s.{cluster}.>"

    async with asyncio.timeout(30), streams.read("K8S_EVENTS", subjects=[filter_subject]) as events:
        iterator = aiter(events)
        first = await anext(iterator)
        ours = [
            c.name for c in await streams.js.consumers_info("K8S_EVENTS") if c.config.filter_subject == filter_subject
        ]
        assert len(ours) == 1
        await streams.js.delete_consumer("K8S_EVENTS", ours[0])  # as the server does to one inactive too long

        await publish(streams, cluster, "b")
        second = await anext(iterator)

    assert names([first, second]) == ["a", "b"]
