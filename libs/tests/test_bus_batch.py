"""The batch consumer against a real nats-server: batches form from what arrived together, a malformed message is
dead-lettered with its reason while the rest of its batch is handled, each delivery's outcome settles it alone (acked,
dead-lettered, delivered again), a failing handler has its whole batch delivered again, and stopping drains."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from conftest import observed
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ballast.bus import BatchConsumer, Bus, Delivery, Outcomes, Reject, RetryLater
from ballast.bus.consumer import DLQ_DELIVERIES, DLQ_REASON
from ballast.events import encode
from ballast.events.catalogue import CATALOGUE, ConsumerSpec
from ballast.events.contracts.k8s import k8s_subject
from ballast.telemetry.tracing import ExportAwareSampler, configure_tracing, tracer
from ballast.testing import eventually

Handler = Callable[[Sequence[Delivery]], Awaitable[Outcomes]]


@pytest.fixture
def cluster(unique: Callable[[str], str]) -> str:
    return unique("c")


def spec_for(cluster: str, **overrides: Any) -> ConsumerSpec:
    values: dict[str, Any] = {
        "durable": f"tb-{cluster}",
        "stream": "K8S_EVENTS",
        "filter_subjects": (f"evt.k8s.{cluster}.>",),
        "description": "test batch consumer",
        "backoff": (0.3, 0.5),
        "max_deliver": 3,
    }
    return ConsumerSpec(**(values | overrides))


@pytest.fixture
async def run_consumer(bus: Bus) -> AsyncIterator[Callable[..., Awaitable[tuple[BatchConsumer, asyncio.Task[None]]]]]:
    await bus.ensure_streams()
    running: list[tuple[BatchConsumer, asyncio.Task[None]]] = []

    async def start(spec: ConsumerSpec, handler: Handler, **options: Any) -> tuple[BatchConsumer, asyncio.Task[None]]:
        await bus.ensure_consumer(spec)
        grace = options.pop("grace", 5)
        consumer = BatchConsumer(bus.js, spec, handler, registry=CATALOGUE.registry, metrics=bus.metrics, **options)
        task = asyncio.create_task(consumer.run(grace=grace))
        running.append((consumer, task))
        return consumer, task

    yield start
    for consumer, task in running:
        consumer.stop()
        await task


async def dead_letters(bus: Bus, durable: str, count: int) -> list[Any]:
    sub = await bus.js.pull_subscribe(
        f"dlq.{durable}",
        stream="DEAD_LETTERS",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
    )
    found: list[Any] = []

    async def fetch() -> bool:
        with contextlib.suppress(TimeoutError):
            found.extend(await sub.fetch(count - len(found), timeout=0.5))
        return len(found) >= count

    await eventually(fetch, timeout=15, what=f"{count} dead letters for {durable}")
    await sub.unsubscribe()
    return found


# Every event published here has the test's cluster token for resource version, so in its id: the stream keeps one
# message per id within its duplicate window, and another test's event of the same name would be dropped as a repeat.


def outcome_count(bus: Bus, durable: str, outcome: str) -> float:
    labels = {"consumer": durable, "outcome": outcome}
    return bus.metrics.registry.get_sample_value("ballast_bus_deliveries_total", labels) or 0


async def test_a_backlog_is_handled_in_batches_and_each_message_acked(
    bus: Bus, run_consumer: Any, cluster: str
) -> None:
    await bus.ensure_streams()
    sent = [observed(f"web-{i}", resource_version=cluster) for i in range(200)]
    await bus.publisher.publish_all([(k8s_subject(cluster, "shop", "Deployment", "updated"), e) for e in sent])
    sizes: list[int] = []
    received: dict[str, Delivery] = {}

    async def handle(deliveries: Sequence[Delivery]) -> Outcomes:
        sizes.append(len(deliveries))
        received.update((d.event.id, d) for d in deliveries)
        return [None] * len(deliveries)

    consumer, _ = await run_consumer(spec_for(cluster), handle)
    await eventually(lambda: outcome_count(bus, consumer.spec.durable, "ack") == len(sent), what="all acked")
    assert set(received) == {e.id for e in sent}
    assert received[sent[7].id].event.data == sent[7].data
    assert max(sizes) > 1  # a backlog comes in batches, not one by one

    async def settled() -> bool:  # acks travel without a reply: the server counts them a moment later
        info = await bus.js.consumer_info("K8S_EVENTS", consumer.spec.durable)
        return bool((info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0))

    await eventually(settled, what="every message acked on the server, none delivered twice")


async def test_a_malformed_message_in_a_batch_is_dead_lettered_and_the_others_handled(
    bus: Bus, run_consumer: Any, cluster: str
) -> None:
    await bus.ensure_streams()
    subject = k8s_subject(cluster, "shop", "Deployment", "updated")
    good_headers, good_body = encode(observed("good", resource_version=cluster))
    bad_schema = json.loads(good_body) | {"replicas": "many"}
    good = [observed(f"good-{i}", resource_version=cluster) for i in range(20)]
    for i, event in enumerate(good):
        await bus.publisher.publish(subject, event)
        if i == 10:
            await bus.js.publish(subject, b"{oops", headers=good_headers | {"ce-id": "bad-json"})
            await bus.js.publish(subject, json.dumps(bad_schema).encode(), headers=good_headers | {"ce-id": "schema"})
    batches: list[list[str]] = []

    async def handle(deliveries: Sequence[Delivery]) -> Outcomes:
        batches.append([d.event.id for d in deliveries])
        return [None] * len(deliveries)

    consumer, _ = await run_consumer(spec_for(cluster), handle)
    letters = await dead_letters(bus, consumer.spec.durable, 2)
    await eventually(lambda: sum(map(len, batches)) == len(good), what="the good events handled")
    assert sorted(i for batch in batches for i in batch) == sorted(e.id for e in good)
    reasons = {m.headers["ce-id"]: m.headers[DLQ_REASON] for m in letters}
    assert reasons["bad-json"].startswith("bad_json: ")
    assert reasons["schema"].startswith("schema_violation: ")
    assert "replicas" in reasons["schema"]
    await eventually(lambda: outcome_count(bus, consumer.spec.durable, "ack") == len(good), what="the good acked")


async def test_each_delivery_is_settled_by_its_own_outcome(bus: Bus, run_consumer: Any, cluster: str) -> None:
    await bus.ensure_streams()
    subject = k8s_subject(cluster, "shop", "Deployment", "updated")
    names = ["fine", "poison", "busy", "broken", "also-fine"]
    await bus.publisher.publish_all([(subject, observed(name, resource_version=cluster)) for name in names])
    seen: list[tuple[str, int]] = []

    async def handle(deliveries: Sequence[Delivery]) -> Outcomes:
        outcomes: list[Exception | None] = []
        for d in deliveries:
            name = (d.event.subject or "").split("/")[-1]
            seen.append((name, d.num_delivered))
            if name == "poison":
                outcomes.append(Reject("image reference cannot be parsed"))
            elif name == "busy" and d.num_delivered == 1:
                outcomes.append(RetryLater("apiserver busy", delay=0.2))
            elif name == "broken":
                outcomes.append(ConnectionError("downstream refused"))
            else:
                outcomes.append(None)
        return outcomes

    consumer, _ = await run_consumer(spec_for(cluster), handle)
    letters = {m.headers["ce-subject"]: m.headers for m in await dead_letters(bus, consumer.spec.durable, 2)}
    assert letters["shop/poison"][DLQ_REASON] == "rejected: image reference cannot be parsed"
    assert letters["shop/broken"][DLQ_REASON] == "gave up after 3 deliveries: ConnectionError: downstream refused"
    assert letters["shop/broken"][DLQ_DELIVERIES] == "3"
    await eventually(lambda: outcome_count(bus, consumer.spec.durable, "ack") == 3, what="fine, busy, also-fine")
    # Only what was not acked came back: each of the others was delivered once.
    counts = {name: max(n for seen_name, n in seen if seen_name == name) for name in names}
    assert counts == {"fine": 1, "poison": 1, "busy": 2, "broken": 3, "also-fine": 1}


async def test_a_failing_handler_has_its_whole_batch_delivered_again(bus: Bus, run_consumer: Any, cluster: str) -> None:
    await bus.ensure_streams()
    sent = [observed(f"web-{i}", resource_version=cluster) for i in range(30)]
    await bus.publisher.publish_all([(k8s_subject(cluster, "shop", "Deployment", "updated"), e) for e in sent])
    handled: dict[str, int] = {}
    failed = 0

    async def handle(deliveries: Sequence[Delivery]) -> Outcomes:
        nonlocal failed
        if any(d.num_delivered == 1 for d in deliveries) and failed < 1:
            failed += 1
            raise OSError("the bucket is unreachable")
        for d in deliveries:
            handled[d.event.id] = d.num_delivered
        return [None] * len(deliveries)

    consumer, _ = await run_consumer(spec_for(cluster), handle)
    await eventually(lambda: len(handled) == len(sent), what="every event handled in the end")
    assert 2 in handled.values()  # the failed batch's messages, redelivered
    retries = bus.metrics.registry.get_sample_value("ballast_bus_retries_total", {"consumer": consumer.spec.durable})
    assert retries is not None
    assert retries >= 1
    await eventually(lambda: outcome_count(bus, consumer.spec.durable, "ack") == len(sent), what="all acked")


async def test_stopping_lets_the_batch_under_way_finish_and_ack(bus: Bus, run_consumer: Any, cluster: str) -> None:
    await bus.ensure_streams()
    sent = [observed(f"web-{i}", resource_version=cluster) for i in range(10)]
    await bus.publisher.publish_all([(k8s_subject(cluster, "shop", "Deployment", "updated"), e) for e in sent])
    started = asyncio.Event()
    release = asyncio.Event()
    handled: list[str] = []

    async def handle(deliveries: Sequence[Delivery]) -> Outcomes:
        started.set()
        await release.wait()
        handled.extend(d.event.id for d in deliveries)
        return [None] * len(deliveries)

    consumer, task = await run_consumer(spec_for(cluster, backoff=(5.0,)), handle, parallel=1)
    await asyncio.wait_for(started.wait(), 10)

    async def all_delivered() -> bool:
        info = await bus.js.consumer_info("K8S_EVENTS", consumer.spec.durable)
        return bool(info.num_ack_pending == len(sent))

    await eventually(all_delivered, what="every message delivered: one batch under way, the rest waiting")
    consumer.stop()
    release.set()
    await asyncio.wait_for(task, 10)  # drained: the batch under way and what waited behind it
    assert sorted(handled) == sorted(e.id for e in sent)

    async def acked() -> bool:
        info = await bus.js.consumer_info("K8S_EVENTS", consumer.spec.durable)
        return bool(info.num_ack_pending == 0 and info.num_pending == 0)

    await eventually(acked, what="every message acked")


async def test_out_of_grace_the_batch_is_handed_back_at_once(bus: Bus, run_consumer: Any, cluster: str) -> None:
    await bus.ensure_streams()
    await bus.publisher.publish(
        k8s_subject(cluster, "shop", "Deployment", "updated"), observed("stuck", resource_version=cluster)
    )
    started = asyncio.Event()
    seen: list[int] = []

    async def handle(deliveries: Sequence[Delivery]) -> Outcomes:
        seen.extend(d.num_delivered for d in deliveries)
        started.set()
        await asyncio.Event().wait()  # never returns
        return [None] * len(deliveries)

    spec = spec_for(cluster, backoff=(30.0,), ack_wait=30.0)
    consumer, task = await run_consumer(spec, handle, grace=0.2)
    await asyncio.wait_for(started.wait(), 10)
    consumer.stop()
    await asyncio.wait_for(task, 10)
    assert outcome_count(bus, consumer.spec.durable, "nak_shutdown") == 1
    # Handed back, not left to its 30 s ack timeout: another consumer gets it now.
    await run_consumer(spec, lambda ds: _record(seen, ds))
    await eventually(lambda: seen == [1, 2], timeout=10, what="the message delivered again at once")


async def _record(seen: list[int], deliveries: Sequence[Delivery]) -> Outcomes:
    seen.extend(d.num_delivered for d in deliveries)
    return [None] * len(deliveries)


async def test_a_batch_span_links_the_traces_of_its_messages(bus: Bus, run_consumer: Any, cluster: str) -> None:
    provider = configure_tracing("test")
    sampler = provider.sampler
    assert isinstance(sampler, ExportAwareSampler)
    was_exporting = sampler.exporting
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    configure_tracing("test", [processor])
    try:
        await bus.ensure_streams()
        roots = []
        for i in range(3):
            with tracer().start_as_current_span(f"deploy {i}") as root:
                await bus.publisher.publish(
                    k8s_subject(cluster, "shop", "Deployment", "updated"), observed(f"t{i}", resource_version=cluster)
                )
            roots.append(root.get_span_context().trace_id)
        handled: list[str] = []

        async def handle(deliveries: Sequence[Delivery]) -> Outcomes:
            handled.extend(d.event.id for d in deliveries)
            return [None] * len(deliveries)

        consumer, _ = await run_consumer(spec_for(cluster), handle)
        await eventually(lambda: len(handled) == 3, what="the traced events handled")

        def linked() -> set[int]:
            return {
                link.context.trace_id
                for span in exporter.get_finished_spans()
                if span.name == f"process batch {consumer.spec.durable}"
                for link in span.links
            }

        await eventually(lambda: linked() == set(roots), what="batch spans linking every message's trace")
        assert all(
            s.kind is trace.SpanKind.CONSUMER
            for s in exporter.get_finished_spans()
            if s.name.startswith("process batch")
        )
    finally:
        sampler.exporting = was_exporting
        processor.shutdown()
