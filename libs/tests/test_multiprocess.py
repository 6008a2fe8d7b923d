"""Separate OS processes and real faults: a replica SIGKILLed mid-batch, the nats-server SIGKILLed and restarted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bus_worker import worker_spec
from conftest import observed
from prometheus_client import CollectorRegistry

from ballast.bus import Bus, Consumer, Delivery
from ballast.events.catalogue import CATALOGUE, ConsumerSpec
from ballast.events.contracts.k8s import k8s_subject
from ballast.telemetry.metrics import BusMetrics
from ballast.testing import NatsServer, eventually

WORKER = str(Path(__file__).with_name("bus_worker.py"))


@pytest.fixture
def processes() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def spawn(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, WORKER, *args], stdout=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def keys(bus: Bus, bucket: str, prefix: str) -> set[str]:
    kv = await bus.js.key_value(bucket)
    try:
        return {k for k in await kv.keys() if k.startswith(prefix)}
    except Exception:  # NoKeysError while the bucket is empty
        return set()


async def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
    assert line.strip() == "ready", line


async def test_publisher_and_consumer_processes_exchange_typed_events(
    bus: Bus, processes: Any, unique: Callable[[str], str]
) -> None:
    durable, bucket = unique("x"), unique("kv")
    await bus.ensure_streams()
    await bus.ensure_consumer(worker_spec(durable))
    await bus.js.create_key_value(bucket=bucket)
    consumer = processes("consume", bus.url, durable, bucket, "0")
    await wait_ready(consumer)
    publisher = processes("publish", bus.url, k8s_subject(durable, "shop", "Deployment", "updated"), "40", "rt")
    assert await asyncio.to_thread(publisher.wait, 30) == 0
    await eventually(lambda: keys(bus, bucket, "done."), what="events recorded")
    done = await eventually(lambda: _all(keys(bus, bucket, "done."), 40), timeout=20, what="40 events handled")
    kv = await bus.js.key_value(bucket)
    for i in range(40):
        expected = observed(f"rt-{i}")
        entry = await kv.get(f"done.{expected.id.replace(':', '_')}")
        assert entry.value is not None
        received = json.loads(entry.value)
        assert received["data"] == json.loads(expected.data.model_dump_json())
        assert (received["id"], received["type"], received["subject"]) == (expected.id, expected.type, expected.subject)
    assert len(done) == 40


async def _all(probe: Any, count: int) -> set[str] | None:
    found: set[str] = await probe
    return found if len(found) >= count else None


async def test_replica_killed_mid_batch_its_messages_go_to_the_other(
    bus: Bus, processes: Any, unique: Callable[[str], str]
) -> None:
    durable, bucket = unique("k"), unique("kv")
    url = bus.url
    await bus.ensure_streams()
    await bus.ensure_consumer(worker_spec(durable))
    await bus.js.create_key_value(bucket=bucket)
    count = 120
    await bus.publisher.publish_all(
        [(k8s_subject(durable, "shop", "Deployment", "updated"), observed(f"kill-{i}")) for i in range(count)]
    )
    # The doomed replica's handlers never finish: whenever it is killed, the messages it fetched are unacknowledged.
    doomed = processes("consume", url, durable, bucket, "hold")
    survivor = processes("consume", url, durable, bucket, "0.2")
    await wait_ready(doomed)
    await wait_ready(survivor)
    await eventually(lambda: _all(keys(bus, bucket, "done."), 20), timeout=20, what="the survivor at work")
    await eventually(lambda: keys(bus, bucket, f"started.{doomed.pid}."), timeout=20, what="the doomed replica busy")
    doomed.kill()  # SIGKILL: its fetched, unacknowledged messages are still pending on the server
    doomed.wait()
    done = await eventually(lambda: _all(keys(bus, bucket, "done."), count), timeout=60, what="every event handled")
    assert done == {f"done.uid-kill-{i}_1_updated" for i in range(count)}
    redelivered = await keys(bus, bucket, "redelivered.")
    assert redelivered, "the killed replica held no unacknowledged messages: the test did not kill mid-batch"
    info = await bus.js.consumer_info("K8S_EVENTS", durable)
    assert info.num_pending == 0


async def test_server_killed_and_restarted_loses_no_acknowledged_publish(fresh_nats_server: NatsServer) -> None:
    server = fresh_nats_server
    metrics = BusMetrics(CollectorRegistry())
    publisher_bus = await Bus.connect(server.url, name="publisher", metrics=metrics)
    consumer_bus = await Bus.connect(server.url, name="consumer", metrics=BusMetrics(CollectorRegistry()))
    await publisher_bus.ensure_streams()
    spec = ConsumerSpec(durable="survivor", stream="K8S_EVENTS", filter_subjects=("evt.k8s.>",), description="t",
                        backoff=(1.0,), max_deliver=10)  # fmt: skip
    await consumer_bus.ensure_consumer(spec)
    handled: set[str] = set()

    async def handle(delivery: Delivery) -> None:
        handled.add(delivery.event.id)

    consumer = Consumer(consumer_bus.js, spec, handle, registry=CATALOGUE.registry, metrics=consumer_bus.metrics)
    consuming = asyncio.create_task(consumer.run(grace=5))
    acknowledged: list[str] = []

    async def publish(count: int) -> None:
        for i in range(count):
            event = observed(f"crash-{i}")
            await publisher_bus.publisher.publish(k8s_subject("t", "shop", "Deployment", "updated"), event)
            acknowledged.append(event.id)

    publishing = asyncio.create_task(publish(300))
    await eventually(lambda: len(acknowledged) >= 100, what="publishing under way")
    server.kill()
    await eventually(lambda: not publisher_bus.is_connected, what="client notices the dead server")
    server.start()
    await asyncio.wait_for(publishing, 60)
    await eventually(lambda: handled >= set(acknowledged), timeout=30, what="every acknowledged event handled")
    assert len(acknowledged) == 300
    assert metrics.registry.get_sample_value("ballast_bus_reconnects_total") == 1
    info = await publisher_bus.js.stream_info("K8S_EVENTS")
    assert info.state.messages == 300  # retried publishes were de-duplicated, not stored twice
    consumer.stop()
    await consuming
    await publisher_bus.close()
    await consumer_bus.close()


async def test_paused_server_is_noticed_and_publishing_resumes_after_it_continues(
    fresh_nats_server: NatsServer,
) -> None:
    """SIGSTOP leaves the socket open but silent: only pings reveal it. The publish waits and lands once, after."""
    server = fresh_nats_server
    bus = await Bus.connect(server.url, name="paused", metrics=BusMetrics(CollectorRegistry()))
    await bus.ensure_streams()
    subject = k8s_subject("paused", "shop", "Deployment", "updated")
    server.pause()
    try:
        publishing = asyncio.create_task(bus.publisher.publish(subject, observed("during-pause")))
        await eventually(lambda: not bus.is_connected, timeout=20, what="client notices the silent server")
        assert not publishing.done()
    finally:
        server.resume()
    ack = await asyncio.wait_for(publishing, 30)
    assert ack.stream == "K8S_EVENTS"
    info = await bus.js.stream_info("K8S_EVENTS", subjects_filter=subject)
    assert info.state.subjects == {subject: 1}
    await bus.close()
