"""The bus against a real nats-server: publishing, de-duplication, retries, dead letters, tracing, request/reply."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from conftest import observed
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from ballast.bus import Bus, Consumer, Delivery, EndpointCallError, EndpointError, Reject, RetryLater
from ballast.bus.consumer import DLQ_CONSUMER, DLQ_DELIVERIES, DLQ_REASON, DLQ_SEQUENCE, _delivery_numbers
from ballast.events import encode
from ballast.events.catalogue import CATALOGUE, ConsumerSpec
from ballast.events.contracts.k8s import k8s_subject
from ballast.events.contracts.policy import POLICY_CHECK, PolicyCheckRequest, PolicyCheckResponse, PolicyViolation
from ballast.telemetry.tracing import ExportAwareSampler, configure_tracing, recording, tracer
from ballast.testing import eventually

Handler = Callable[[Delivery], Awaitable[None]]


@pytest.fixture
def cluster(unique: Callable[[str], str]) -> str:
    """A cluster token of the test's own, so subjects (and so consumers) never see another test's events."""
    return unique("c")


def spec_for(cluster: str, **overrides: Any) -> ConsumerSpec:
    values: dict[str, Any] = {
        "durable": f"t-{cluster}",
        "stream": "K8S_EVENTS",
        "filter_subjects": (f"evt.k8s.{cluster}.>",),
        "description": "test consumer",
        "backoff": (0.5, 1.0),
        "max_deliver": 3,
    }
    return ConsumerSpec(**(values | overrides))


@pytest.fixture
async def run_consumer(bus: Bus) -> AsyncIterator[Callable[[ConsumerSpec, Handler], Awaitable[Consumer]]]:
    await bus.ensure_streams()
    consumers: list[tuple[Consumer, asyncio.Task[None]]] = []

    async def start(spec: ConsumerSpec, handler: Handler) -> Consumer:
        await bus.ensure_consumer(spec)
        consumer = Consumer(bus.js, spec, handler, registry=CATALOGUE.registry, metrics=bus.metrics, batch=16)
        consumers.append((consumer, asyncio.create_task(consumer.run(grace=5))))
        return consumer

    yield start
    for consumer, task in consumers:
        consumer.stop()
        await task


async def dead_letters(bus: Bus, durable: str, count: int) -> list[Any]:
    """Reads what the consumer dead-lettered, through an ephemeral consumer on the DEAD_LETTERS stream."""
    sub = await bus.js.pull_subscribe(
        f"dlq.{durable}",
        stream="DEAD_LETTERS",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
    )
    found: list[Any] = []

    async def fetch() -> bool:
        with contextlib.suppress(TimeoutError):  # nothing there yet (nats-py may raise the builtin one too)
            found.extend(await sub.fetch(count - len(found), timeout=0.5))
        return len(found) >= count

    await eventually(fetch, timeout=15, what=f"{count} dead letters for {durable}")
    await sub.unsubscribe()
    return found


async def test_typed_events_round_trip(bus: Bus, run_consumer: Any, cluster: str) -> None:
    sent = [observed(f"web-{i}") for i in range(50)]
    await bus.publisher.publish_all([(k8s_subject(cluster, "shop", "Deployment", "updated"), e) for e in sent])
    received: dict[str, Delivery] = {}

    async def handle(delivery: Delivery) -> None:
        received[delivery.event.id] = delivery

    await run_consumer(spec_for(cluster), handle)
    await eventually(lambda: len(received) == len(sent), what="all events handled")
    for event in sent:
        got = received[event.id].event
        assert got.data == event.data
        assert (got.type, got.source, got.subject, got.time) == (event.type, event.source, event.subject, event.time)


async def test_same_event_published_twice_is_stored_once(bus: Bus, cluster: str) -> None:
    await bus.ensure_streams()
    subject = k8s_subject(cluster, "shop", "Deployment", "updated")
    event = observed("web", resource_version="9")
    first = await bus.publisher.publish(subject, event)
    again = await bus.publisher.publish(subject, event.model_copy())
    assert first.duplicate is None
    assert again.duplicate is True
    assert again.seq == first.seq
    info = await bus.js.stream_info("K8S_EVENTS", subjects_filter=subject)
    assert info.state.subjects == {subject: 1}
    duplicates = {"stream": "K8S_EVENTS", "duplicate": "true"}
    assert (bus.metrics.registry.get_sample_value("ballast_bus_published_total", duplicates) or 0) >= 1


async def test_malformed_messages_are_dead_lettered_and_good_ones_still_handled(
    bus: Bus, run_consumer: Any, cluster: str
) -> None:
    await bus.ensure_streams()
    subject = k8s_subject(cluster, "shop", "Deployment", "updated")
    good_headers, good_body = encode(observed("good"))
    bad_schema = json.loads(good_body) | {"replicas": "many"}
    malformed = {
        "bad_json": (good_headers | {"ce-id": "bad-json"}, b"{oops"),
        "unknown_type": (good_headers | {"ce-id": "unknown", "ce-type": "io.k8s.deployment.exploded.v1"}, good_body),
        "schema_violation": (good_headers | {"ce-id": "schema"}, json.dumps(bad_schema).encode()),
        "missing_header": ({k: v for k, v in good_headers.items() if k != "ce-type"} | {"ce-id": "nohdr"}, good_body),
    }
    expected_good = []
    for index, (headers, body) in enumerate(malformed.values()):
        good = observed(f"good-{index}")
        expected_good.append(good.id)
        await bus.publisher.publish(subject, good)
        await bus.js.publish(subject, body, headers=dict(headers))
    handled: list[str] = []

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery.event.id)

    consumer = await run_consumer(spec_for(cluster), handle)
    letters = await dead_letters(bus, consumer.spec.durable, 4)
    await eventually(lambda: sorted(handled) == sorted(expected_good), what="good events handled")
    reasons = {m.headers[DLQ_REASON].split(":")[0] for m in letters}
    assert reasons == set(malformed)
    for letter in letters:
        assert letter.headers[DLQ_CONSUMER] == consumer.spec.durable
        assert int(letter.headers[DLQ_SEQUENCE]) > 0
        assert letter.headers.get("ce-id") in {"bad-json", "unknown", "schema", "nohdr"}  # original headers kept
    schema_letter = next(m for m in letters if m.headers[DLQ_REASON].startswith("schema_violation"))
    assert "replicas" in schema_letter.headers[DLQ_REASON]
    for reason in malformed:
        labels = {"consumer": consumer.spec.durable, "reason": reason}
        assert bus.metrics.registry.get_sample_value("ballast_bus_dead_letters_total", labels) == 1


async def test_retry_later_redelivers_after_the_delay(bus: Bus, run_consumer: Any, cluster: str) -> None:
    await bus.ensure_streams()
    await bus.publisher.publish(k8s_subject(cluster, "shop", "Deployment", "updated"), observed("flaky"))
    deliveries: list[int] = []

    async def handle(delivery: Delivery) -> None:
        deliveries.append(delivery.num_delivered)
        if delivery.num_delivered == 1:
            raise RetryLater("apiserver busy", delay=0.2)

    consumer = await run_consumer(spec_for(cluster), handle)
    await eventually(lambda: deliveries == [1, 2], what="one retry then success")
    assert bus.metrics.registry.get_sample_value("ballast_bus_retries_total", {"consumer": consumer.spec.durable}) == 1


async def test_rejected_and_exhausted_messages_go_to_the_dead_letter_subject(
    bus: Bus, run_consumer: Any, cluster: str
) -> None:
    await bus.ensure_streams()
    subject = k8s_subject(cluster, "shop", "Deployment", "updated")
    await bus.publisher.publish(subject, observed("poison"))
    await bus.publisher.publish(subject, observed("always-fails"))
    attempts: dict[str, int] = {}

    async def handle(delivery: Delivery) -> None:
        name = delivery.event.subject or ""
        attempts[name] = attempts.get(name, 0) + 1
        if name.endswith("poison"):
            raise Reject("image reference cannot be parsed")
        raise ConnectionError("downstream refused")

    consumer = await run_consumer(spec_for(cluster, backoff=(0.2,), max_deliver=3), handle)
    letters = {m.headers["ce-subject"]: m for m in await dead_letters(bus, consumer.spec.durable, 2)}
    assert letters["shop/poison"].headers[DLQ_REASON] == "rejected: image reference cannot be parsed"
    exhausted = letters["shop/always-fails"].headers
    assert exhausted[DLQ_REASON].startswith("gave up after 3 deliveries: ConnectionError: downstream refused")
    assert exhausted[DLQ_DELIVERIES] == "3"
    assert attempts == {"shop/poison": 1, "shop/always-fails": 3}


async def test_long_handler_keeps_its_message(bus: Bus, run_consumer: Any, cluster: str) -> None:
    """The ack deadline is 0.3 s; a 1.5 s handler must not see its message delivered again."""
    await bus.ensure_streams()
    await bus.publisher.publish(k8s_subject(cluster, "shop", "Deployment", "updated"), observed("slow"))
    calls: list[int] = []
    finished = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        calls.append(delivery.num_delivered)
        await asyncio.sleep(1.5)  # the slow work itself
        finished.set()

    consumer = await run_consumer(spec_for(cluster, backoff=(0.3,), max_deliver=5), handle)
    await asyncio.wait_for(finished.wait(), 10)
    acked = {"consumer": consumer.spec.durable, "outcome": "ack"}
    await eventually(lambda: bus.metrics.registry.get_sample_value("ballast_bus_deliveries_total", acked) == 1)
    info = await bus.js.consumer_info("K8S_EVENTS", consumer.spec.durable)
    assert info.num_redelivered == 0
    assert calls == [1]


@pytest.fixture
def exported_spans() -> Iterator[InMemorySpanExporter]:
    """Span export switched on for one test and off again after it: left on, every later test in the session would
    record spans (slower, and not the path services without an exporter take)."""
    provider = configure_tracing("test")
    sampler = provider.sampler
    assert isinstance(sampler, ExportAwareSampler)
    was_exporting = sampler.exporting
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    configure_tracing("test", [processor])
    yield exporter
    # A provider cannot drop a processor: shut down, it exports nothing, and with export off no span reaches it.
    sampler.exporting = was_exporting
    processor.shutdown()
    assert recording() == was_exporting


async def test_trace_started_by_publisher_continues_in_consumer(
    exported_spans: InMemorySpanExporter, bus: Bus, run_consumer: Any, cluster: str
) -> None:
    await bus.ensure_streams()
    with tracer().start_as_current_span("deploy webapp") as root:
        await bus.publisher.publish(k8s_subject(cluster, "shop", "Deployment", "updated"), observed("traced"))
    seen: list[int] = []

    async def handle(delivery: Delivery) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    await run_consumer(spec_for(cluster), handle)
    await eventually(lambda: seen, what="traced event handled")
    assert seen == [root.get_span_context().trace_id]

    def kinds() -> set[trace.SpanKind]:
        return {s.kind for s in exported_spans.get_finished_spans() if s.context.trace_id == seen[0]}

    # The consumer's span ends after the handler returns.
    await eventually(lambda: {trace.SpanKind.PRODUCER, trace.SpanKind.CONSUMER} <= kinds(), what="both spans")


async def test_request_reply_endpoint_answers_typed_and_maps_errors(bus: Bus) -> None:
    async def check(request: BaseModel) -> BaseModel:
        assert isinstance(request, PolicyCheckRequest)
        if request.namespace == "conflict":
            raise EndpointError(409, "policy bundle is being reloaded")
        if request.namespace == "crash":
            raise RuntimeError("secret-token-123 exploded")
        denied = [
            PolicyViolation(policy="allowed-repos", object=f"{m['kind']}/{m['metadata']['name']}", message="repo")
            for m in request.manifests
            if not m["spec"]["image"].startswith("registry.example.com/")
        ]
        return PolicyCheckResponse(allowed=not denied, violations=denied)

    await bus.serve(POLICY_CHECK, check)

    def ask(namespace: str, image: str) -> PolicyCheckRequest:
        manifest = {"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"image": image}}
        return PolicyCheckRequest(cluster="t", namespace=namespace, manifests=[manifest], requested_by="test")

    allowed = await bus.request(POLICY_CHECK, ask("shop", "registry.example.com/web:1"))
    assert allowed == PolicyCheckResponse(allowed=True)
    denied = await bus.request(POLICY_CHECK, ask("shop", "docker.io/evil:latest"))
    assert isinstance(denied, PolicyCheckResponse)
    assert not denied.allowed
    assert denied.violations[0].object == "Deployment/web"

    with pytest.raises(EndpointCallError) as conflict:
        await bus.request(POLICY_CHECK, ask("conflict", "x"))
    assert (conflict.value.code, conflict.value.description) == (409, "policy bundle is being reloaded")
    with pytest.raises(EndpointCallError) as crash:
        await bus.request(POLICY_CHECK, ask("crash", "x"))
    assert crash.value.code == 500
    assert "secret" not in crash.value.description
    reply = await bus.nc.request(POLICY_CHECK.subject, b'{"cluster": "t"}', timeout=2)
    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "400"
    assert "namespace" in reply.headers["Nats-Service-Error"]
    ping = await bus.nc.request("$SRV.PING.policy", b"", timeout=2)
    assert json.loads(ping.data)["type"] == "io.nats.micro.v1.ping_response"


async def test_trace_context_flows_even_when_no_span_is_recorded(
    bus: Bus, run_consumer: Any, cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = configure_tracing("test")
    assert isinstance(provider.sampler, ExportAwareSampler)
    monkeypatch.setattr(provider.sampler, "exporting", False)
    await bus.ensure_streams()
    with tracer().start_as_current_span("deploy webapp") as root:
        assert not root.is_recording()
        await bus.publisher.publish(k8s_subject(cluster, "shop", "Deployment", "updated"), observed("untraced"))
    seen: list[int] = []

    async def handle(delivery: Delivery) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    await run_consumer(spec_for(cluster), handle)
    await eventually(lambda: seen, what="event handled")
    assert seen == [root.get_span_context().trace_id]
    assert seen[0] != 0


async def test_connect_gives_up_after_the_start_up_wait_naming_the_url() -> None:
    from prometheus_client import CollectorRegistry

    from ballast.local.nats_server import free_port
    from ballast.telemetry.metrics import BusMetrics

    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    # Giving up takes about 2 s (the 1 s wait, one attempt's 2 s connect timeout); a connect that retried past the
    # wait would never end (nats-py retries a first connect forever with unlimited reconnects). 15 s is far from both.
    with pytest.raises(ConnectionError, match=url):
        async with asyncio.timeout(15):
            await Bus.connect(url, name="t", metrics=BusMetrics(CollectorRegistry()), wait_connected=1.0)


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.K8S_EVENTS.t-c1.3.1042.17.1733050000000000000.5",
        "$JS.ACK._.a1b2c3.K8S_EVENTS.t-c1.3.1042.17.1733050000000000000.5.x9y8",
        "$JS.ACK.hub.a1b2c3.K8S_EVENTS.t-c1.1.7.7.1733050000000000000.0",
    ],
)
def test_delivery_numbers_are_read_from_the_ack_subject_as_nats_py_reads_them(reply: str) -> None:
    metadata = Msg.Metadata._from_reply(reply)
    assert _delivery_numbers(reply) == (metadata.num_delivered, metadata.sequence.stream)
