"""A separate OS process for the bus's multi-process tests: publishes or consumes typed events for real.

    python bus_worker.py publish URL SUBJECT COUNT PREFIX
    python bus_worker.py consume URL DURABLE BUCKET WORK_SECONDS|hold

`hold` keeps every handler at work until the process dies: a replica a test kills then surely holds fetched,
unacknowledged messages.

The consumer's effect is recorded in the KV bucket with create(), which refuses a key that exists: a redelivered
event is recognised by its id and has no second effect, however many replicas see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

from nats.js.errors import KeyWrongLastSequenceError
from prometheus_client import CollectorRegistry

from ballast.bus import Bus, Consumer, Delivery
from ballast.events.catalogue import CATALOGUE, ConsumerSpec
from ballast.telemetry.metrics import BusMetrics

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import observed


async def publish(url: str, subject: str, count: int, prefix: str) -> None:
    bus = await Bus.connect(url, name="worker-publisher", metrics=BusMetrics(CollectorRegistry()))
    await bus.publisher.publish_all([(subject, observed(f"{prefix}-{i}")) for i in range(count)])
    await bus.close()


async def consume(url: str, durable: str, bucket: str, work_seconds: float | None) -> None:
    bus = await Bus.connect(url, name=f"worker-{durable}", metrics=BusMetrics(CollectorRegistry()))
    kv = await bus.js.key_value(bucket)

    async def handle(delivery: Delivery) -> None:
        key = delivery.event.id.replace(":", "_")
        await kv.put(f"started.{os.getpid()}.{key}", b"1")  # lets a test kill this replica with work in hand
        if work_seconds is None:
            await asyncio.Event().wait()  # held until the process is killed
        else:
            await asyncio.sleep(work_seconds)  # the work itself
        if delivery.num_delivered > 1:
            await kv.put(f"redelivered.{key}", b"1")
        # create() refuses an existing key: an event a replica handled before its ack was lost has no second effect.
        with contextlib.suppress(KeyWrongLastSequenceError):
            await kv.create(f"done.{key}", delivery.event.model_dump_json().encode())

    spec = worker_spec(durable)
    consumer = Consumer(bus.js, spec, handle, registry=CATALOGUE.registry, metrics=bus.metrics, concurrency=8, batch=8)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, consumer.stop)
    print("ready", flush=True)
    await consumer.run()
    await bus.close()


def worker_spec(durable: str) -> ConsumerSpec:
    return ConsumerSpec(
        durable=durable,
        stream="K8S_EVENTS",
        filter_subjects=(f"evt.k8s.{durable}.>",),
        description="multi-process test",
        backoff=(1.0, 2.0),
        max_deliver=5,
    )


if __name__ == "__main__":
    command, url, *rest = sys.argv[1:]
    if command == "publish":
        asyncio.run(publish(url, rest[0], int(rest[1]), rest[2]))
    else:
        asyncio.run(consume(url, rest[0], rest[1], None if rest[2] == "hold" else float(rest[2])))
