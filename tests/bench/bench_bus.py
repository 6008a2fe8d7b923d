"""bench-bus: the bus library against raw nats-py doing the same work, on one real nats-server (loopback).

Throughput: N typed events published and consumed end to end (publisher and durable pull consumer running at the
same time, in this process), first through raw nats-py, then through the bus, alternating for R rounds. Both move the
same messages: the raw run encodes the same CloudEvents (headers, Nats-Msg-Id, JSON body) and publishes them with
publish_async, and consumes them with fetch batches, checking ce-type and validating the body with the payload model
before acking. The bus run adds what the library is for: envelope decoding, trace context, metrics, per-message
handler tasks, keep-alive and dead-letter handling. Each round also takes this process's CPU seconds per event
(publisher and consumer together): on a shared machine the wall-clock rates move with the neighbours' load, the CPU
cost per event much less. throughput_ratio is bus/raw events per second, cpu_ratio bus/raw CPU per event (medians).

Latency: publish->handled at a fixed offered rate of 1,000 events/s for S seconds, the producer in its own process
(as a producing service would be) stamping ce-time just before each publish, the consumer measuring from it when the
event is in hand (decoded and validated). Through the bus: its publisher, and its consumer's handler. Through raw
nats-py: js.publish, and a durable push consumer whose callback checks, validates and acks each message as it arrives
(nats-py's lowest-latency path: a pull consumer's fetch waits for its batch to fill or time out, which would measure
the batch, not the path), on the same server, one after the other.

    python tests/bench/bench_bus.py [--events N] [--rounds R] [--latency-seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import nats
import nats.errors
from nats.aio.msg import Msg
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


@dataclass(frozen=True)
class Throughput:
    rate: float  # events per second, wall clock
    cpu_us: float  # this process's CPU microseconds per event (publisher and consumer)


async def raw_run(url: str, n: int, run: str) -> Throughput:
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

    started, cpu = time.perf_counter(), time.process_time()
    consumer = asyncio.create_task(consume())
    for event in events:
        headers, body = encode(event)
        headers["Nats-Msg-Id"] = event.msg_id
        await js.publish_async(subject, body, headers=headers)
    await js.publish_async_completed()
    await consumer
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await nc.close()
    return Throughput(n / elapsed, cpu / n * 1e6)


async def bus_run(url: str, n: int, run: str) -> Throughput:
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
    started, cpu = time.perf_counter(), time.process_time()
    running = asyncio.create_task(consumer.run())
    await bus.publisher.publish_all(events)
    await done.wait()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    consumer.stop()
    await running
    await bus.close()
    return Throughput(n / elapsed, cpu / n * 1e6)


async def publish_paced(url: str, path: str, rate: int, count: int) -> None:
    """The latency runs' publisher, in its own process as a producing service would be: one event per 1/rate s,
    each built (ce-time stamped) immediately before its publish, through the bus or raw nats-py."""
    if path == "bus":
        bus = await Bus.connect(url, name="bench-producer", metrics=BusMetrics(CollectorRegistry()))
        subject = k8s_subject("lat", "shop", "Deployment", "updated")

        async def publish(event: Envelope[ObservedObject]) -> None:
            await bus.publisher.publish(subject, event)
    else:
        nc = await nats.connect(url, name="bench-raw-producer")
        js = nc.jetstream()
        subject = k8s_subject("rawlat", "shop", "Deployment", "updated")

        async def publish(event: Envelope[ObservedObject]) -> None:
            headers, body = encode(event)
            headers["Nats-Msg-Id"] = event.msg_id
            await js.publish(subject, body, headers=headers)

    publishes = []
    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)  # pacing the offered load
        publishes.append(asyncio.create_task(publish(envelope(i, path))))
    await asyncio.gather(*publishes)
    if path == "bus":
        await bus.close()
    else:
        await nc.close()


async def produce(url: str, path: str, rate: int, count: int) -> None:
    producer = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--publish-paced", url, path, str(rate), str(count)
    )
    assert await producer.wait() == 0, f"the {path} producer process failed"


async def latency_run(url: str, rate: int, seconds: float) -> list[float]:
    """publish->handled through the bus: ce-time (wall clock, set by the producer process) to the handler's first
    line."""
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
    await produce(url, "bus", rate, count)
    await asyncio.wait_for(done.wait(), 60)
    consumer.stop()
    await running
    await bus.close()
    return latencies


async def raw_latency_run(url: str, rate: int, seconds: float) -> list[float]:
    """publish->handled through raw nats-py: ce-time to the message checked and validated, on a push consumer (nats-py
    hands each message to the callback as it arrives: its lowest-latency path)."""
    nc = await nats.connect(url, name="bench-raw-latency")
    js = nc.jetstream()
    count = int(rate * seconds)
    expected_type = k8s_event_type("Deployment", "updated")
    latencies: list[float] = []
    done = asyncio.Event()

    async def handle(msg: Msg) -> None:
        assert msg.headers is not None
        assert msg.headers["ce-type"] == expected_type
        ObservedObject.model_validate_json(msg.data)
        latencies.append((datetime.now(UTC) - datetime.fromisoformat(msg.headers["ce-time"])).total_seconds())
        await msg.ack()
        if len(latencies) >= count:
            done.set()

    sub = await js.subscribe(
        "evt.k8s.rawlat.>", durable="bench-raw-latency", stream="K8S_EVENTS", cb=handle, manual_ack=True
    )
    await produce(url, "raw", rate, count)
    await asyncio.wait_for(done.wait(), 60)
    await sub.unsubscribe()
    await nc.close()
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_line(path: str, latencies: list[float], rate: int) -> str:
    ms = [latency * 1000 for latency in latencies]
    return (
        f"{path} latency at {rate} events/s over {len(ms)} events: p50={percentile(ms, 0.5):.2f} ms "
        f"p99={percentile(ms, 0.99):.2f} ms max={max(ms):.2f} ms mean={statistics.fmean(ms):.2f} ms"
    )


async def main(n: int, latency_seconds: float, rounds: int) -> None:
    configure_tracing("bench-bus")  # as services do: trace context flows, no exporter, no spans recorded
    rate = 1000
    with NatsServer() as server:
        setup = await Bus.connect(server.url, name="bench-setup", metrics=BusMetrics(CollectorRegistry()))
        await setup.ensure_streams()
        await setup.close()
        await raw_run(server.url, min(n, 2000), "warmup-raw")  # imports, caches, the server's file store
        await bus_run(server.url, min(n, 2000), "warmup-bus")
        raw_runs, bus_runs = [], []
        for round_ in range(rounds):  # alternate, so drift in the machine's load hits both alike
            raw_runs.append(await raw_run(server.url, n, f"raw{round_}"))
            bus_runs.append(await bus_run(server.url, n, f"bus{round_}"))
            print(
                f"round {round_ + 1}/{rounds}: raw nats-py {raw_runs[-1].rate:,.0f} events/s "
                f"({raw_runs[-1].cpu_us:.0f} µs CPU per event), bus {bus_runs[-1].rate:,.0f} events/s "
                f"({bus_runs[-1].cpu_us:.0f} µs CPU per event)",
                flush=True,
            )
        raw_latencies = await raw_latency_run(server.url, rate, latency_seconds)
        latencies = await latency_run(server.url, rate, latency_seconds)
    throughput_ratio = statistics.median(b.rate for b in bus_runs) / statistics.median(r.rate for r in raw_runs)
    cpu_ratio = statistics.median(b.cpu_us for b in bus_runs) / statistics.median(r.cpu_us for r in raw_runs)
    print(latency_line("raw nats-py", raw_latencies, rate))
    print(latency_line("bus", latencies, rate))
    ms, raw_ms = [x * 1000 for x in latencies], [x * 1000 for x in raw_latencies]
    print(
        f"bench-bus: events={n} throughput_ratio={throughput_ratio:.2f} cpu_ratio={cpu_ratio:.2f} "
        f"p50_ms={percentile(ms, 0.5):.2f} p99_ms={percentile(ms, 0.99):.2f} "
        f"raw_p50_ms={percentile(raw_ms, 0.5):.2f} raw_p99_ms={percentile(raw_ms, 0.99):.2f}"
    )


if __name__ == "__main__":
    # A timeout or Ctrl-C must still stop the servers the run started (they run in their own sessions).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds; the medians are compared")
    parser.add_argument("--publish-paced", nargs=4, metavar=("URL", "PATH", "RATE", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_paced:
        url, path, rate, count = args.publish_paced
        asyncio.run(publish_paced(url, path, int(rate), int(count)))
    else:
        asyncio.run(main(args.events, args.latency_seconds, args.rounds))
