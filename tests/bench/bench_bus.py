"""bench-bus: the bus library against raw nats-py doing the same work, on one real nats-server (loopback).

Throughput: N typed events published and consumed end to end (publisher and durable pull consumer running at the
same time), first through raw nats-py, then through the bus. Both move the same messages: the raw run encodes the
same CloudEvents (headers, Nats-Msg-Id, JSON body) and publishes them with publish_async, and consumes them with
fetch batches, checking ce-type and validating the body with the payload model before acking. The bus run adds what
the library is for: envelope encoding and decoding, trace context, metrics, per-message handler tasks, keep-alive
and dead-letter handling. Latency: publish→handled through the bus at a fixed offered rate of 1,000 events/s.

    python tests/bench/bench_bus.py [--events N] [--rounds R] [--latency-seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import time
from datetime import UTC, datetime

import nats
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import CollectorRegistry

from ballast.bus import Bus, Consumer, Delivery
from ballast.events import encode, new_event
from ballast.events.catalogue import CATALOGUE, ConsumerSpec
from ballast.events.contracts.common import ObjectRef
from ballast.events.contracts.k8s import ObservedObject, k8s_event_type, k8s_subject
from ballast.events.envelope import Envelope
from ballast.telemetry.metrics import BusMetrics
from ballast.telemetry.tracing import configure_tracing
from ballast.testing import NatsServer


def payload(i: int) -> ObservedObject:
    return ObservedObject(
        cluster="bench",
        object=ObjectRef(api_version="apps/v1", kind="Deployment", namespace="shop", name=f"web-{i}", uid=f"u{i}"),
        resource_version=str(i),
        labels={"app.kubernetes.io/name": "web", "tenant": "shop"},
        replicas=3,
        ready_replicas=3,
        image="registry.example.com/shop/web:1.2.3",
    )


def envelope(i: int, run: str) -> Envelope[ObservedObject]:
    return new_event(
        k8s_event_type("Deployment", "updated"),
        "/clusters/bench/reconciler",
        payload(i),
        subject=f"shop/web-{i}",
        event_id=f"{run}:u{i}:{i}:updated",
    )


async def raw_run(url: str, n: int, run: str) -> float:
    """Idiomatic nats-py on the same wire messages: publish_async window, fetch batches, check, validate, ack."""
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    subject = k8s_subject(run, "shop", "Deployment", "updated")
    await js.add_consumer(
        "K8S_EVENTS",
        ConsumerConfig(durable_name=f"bench-{run}", filter_subject=f"evt.k8s.{run}.>", ack_policy=AckPolicy.EXPLICIT,
                       max_ack_pending=1000),
    )  # fmt: skip
    sub = await js.pull_subscribe_bind(durable=f"bench-{run}", stream="K8S_EVENTS")
    events = [envelope(i, run) for i in range(n)]
    expected_type = k8s_event_type("Deployment", "updated")
    handled = 0

    async def consume() -> None:
        nonlocal handled
        while handled < n:
            try:
                messages = await sub.fetch(256, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for msg in messages:
                assert msg.headers is not None
                assert msg.headers["ce-type"] == expected_type
                ObservedObject.model_validate_json(msg.data)
                await msg.ack()
                handled += 1

    started = time.perf_counter()
    consumer = asyncio.create_task(consume())
    for event in events:
        headers, body = encode(event)
        headers["Nats-Msg-Id"] = event.msg_id
        await js.publish_async(subject, body, headers=headers)
    await js.publish_async_completed()
    await consumer
    elapsed = time.perf_counter() - started
    await nc.close()
    return n / elapsed


async def bus_run(url: str, n: int, run: str) -> float:
    bus = await Bus.connect(url, name="bench-bus", metrics=BusMetrics(CollectorRegistry()))
    spec = ConsumerSpec(durable=f"bench-{run}", stream="K8S_EVENTS", filter_subjects=(f"evt.k8s.{run}.>",),
                        description="bench", max_ack_pending=1000)  # fmt: skip
    await bus.ensure_consumer(spec)
    subject = k8s_subject(run, "shop", "Deployment", "updated")
    events = [(subject, envelope(i, run)) for i in range(n)]
    done = asyncio.Event()
    handled = 0

    async def handle(_: Delivery) -> None:
        nonlocal handled
        handled += 1
        if handled == n:
            done.set()

    consumer = Consumer(bus.js, spec, handle, registry=CATALOGUE.registry, metrics=bus.metrics,
                        concurrency=256, batch=64)  # fmt: skip
    started = time.perf_counter()
    running = asyncio.create_task(consumer.run())
    await bus.publisher.publish_all(events)
    await done.wait()
    elapsed = time.perf_counter() - started
    consumer.stop()
    await running
    await bus.close()
    return n / elapsed


async def publish_paced(url: str, rate: int, count: int) -> None:
    """The latency run's publisher, in its own process as a producing service would be: one event per 1/rate s."""
    bus = await Bus.connect(url, name="bench-producer", metrics=BusMetrics(CollectorRegistry()))
    subject = k8s_subject("lat", "shop", "Deployment", "updated")
    publishes = []
    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)  # pacing the offered load
        # ce-time is stamped here, immediately before the publish: the consumer measures from it.
        publishes.append(asyncio.create_task(bus.publisher.publish(subject, envelope(i, "lat"))))
    await asyncio.gather(*publishes)
    await bus.close()


async def latency_run(url: str, rate: int, seconds: float) -> list[float]:
    """publish->handled latency: ce-time (wall clock, set by the producer process) to the handler's first line."""
    bus = await Bus.connect(url, name="bench-latency", metrics=BusMetrics(CollectorRegistry()))
    spec = ConsumerSpec(durable="bench-latency", stream="K8S_EVENTS", filter_subjects=("evt.k8s.lat.>",),
                        description="bench")  # fmt: skip
    await bus.ensure_consumer(spec)
    count = int(rate * seconds)
    latencies: list[float] = []
    done = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        latencies.append((datetime.now(UTC) - delivery.event.time).total_seconds())
        if len(latencies) == count:
            done.set()

    consumer = Consumer(bus.js, spec, handle, registry=CATALOGUE.registry, metrics=bus.metrics)
    running = asyncio.create_task(consumer.run())
    producer = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--publish-paced", url, str(rate), str(count)
    )
    assert await producer.wait() == 0, "the producer process failed"
    await asyncio.wait_for(done.wait(), 60)
    consumer.stop()
    await running
    await bus.close()
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(n: int, latency_seconds: float, rounds: int) -> None:
    configure_tracing("bench-bus")
    with NatsServer() as server:
        setup = await Bus.connect(server.url, name="bench-setup", metrics=BusMetrics(CollectorRegistry()))
        await setup.ensure_streams()
        await setup.close()
        await raw_run(server.url, min(n, 2000), "warmup-raw")  # imports, caches, the server's file store
        await bus_run(server.url, min(n, 2000), "warmup-bus")
        raw_rates, bus_rates = [], []
        for round_ in range(rounds):  # alternate, so drift in the machine's load hits both alike
            raw_rates.append(await raw_run(server.url, n, f"raw{round_}"))
            bus_rates.append(await bus_run(server.url, n, f"bus{round_}"))
            print(
                f"round {round_ + 1}/{rounds}: raw nats-py {raw_rates[-1]:,.0f} events/s, "
                f"bus {bus_rates[-1]:,.0f} events/s",
                flush=True,
            )
        raw, through_bus = statistics.median(raw_rates), statistics.median(bus_rates)
        latencies = await latency_run(server.url, 1000, latency_seconds)
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    print(f"latency at 1000 events/s over {len(latencies)} events: p50={p50:.2f} ms p99={p99:.2f} ms "
          f"max={max(latencies) * 1000:.2f} ms mean={statistics.fmean(latencies) * 1000:.2f} ms")  # fmt: skip
    print(f"bench-bus: events={n} throughput_ratio={through_bus / raw:.2f} p50_ms={p50:.2f} p99_ms={p99:.2f}")


if __name__ == "__main__":
    # A timeout or Ctrl-C must still stop the servers the run started (they run in their own sessions).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds; the medians are compared")
    parser.add_argument("--publish-paced", nargs=3, metavar=("URL", "RATE", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_paced:
        url, rate, count = args.publish_paced
        asyncio.run(publish_paced(url, int(rate), int(count)))
    else:
        asyncio.run(main(args.events, args.latency_seconds, args.rounds))
