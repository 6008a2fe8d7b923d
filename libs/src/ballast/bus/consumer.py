"""Durable pull consumers shared by a service's replicas.

A handler gets a decoded, typed `Delivery`. Returning acks it. Raising `RetryLater` returns it for a delayed
redelivery; raising `Reject` (or sending something that is not a valid event) moves it to `dlq.<durable>` with the
reason and the original headers, and the consumer carries on with the next message. Any other exception counts as
transient until the delivery limit, after which the message is dead-lettered too: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import trace
from pydantic import BaseModel

from ballast.events.catalogue import ConsumerSpec, dead_letter_subject
from ballast.events.envelope import Envelope, EventDecodeError, decode
from ballast.events.registry import TypeRegistry
from ballast.telemetry.metrics import BusMetrics
from ballast.telemetry.tracing import extract_context, tracer

log = logging.getLogger(__name__)

DLQ_REASON = "Ballast-Dlq-Reason"
DLQ_CONSUMER = "Ballast-Dlq-Consumer"
DLQ_STREAM = "Ballast-Dlq-Stream"
DLQ_SEQUENCE = "Ballast-Dlq-Sequence"
DLQ_SUBJECT = "Ballast-Dlq-Subject"
DLQ_DELIVERIES = "Ballast-Dlq-Deliveries"


class RetryLater(Exception):
    """A transient failure: deliver this message again after `delay` seconds (default: the consumer's backoff)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Reject(Exception):
    """A poison message: handling it again cannot succeed. It goes to the dead-letter subject with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    event: Envelope[BaseModel]
    subject: str
    headers: Mapping[str, str]
    stream_sequence: int
    num_delivered: int

    @property
    def is_redelivery(self) -> bool:
        return self.num_delivered > 1


Handler = Callable[[Delivery], Awaitable[None]]


class Consumer:
    """Fetches from one durable and runs up to `concurrency` handlers at a time until `stop()`."""

    def __init__(
        self,
        js: JetStreamContext,
        spec: ConsumerSpec,
        handler: Handler,
        *,
        registry: TypeRegistry,
        metrics: BusMetrics,
        batch: int = 32,
        concurrency: int = 32,
        fetch_timeout: float = 1.0,
    ) -> None:
        self._js = js
        self.spec = spec
        self._handler = handler
        self._registry = registry
        self._metrics = metrics
        self._batch = batch
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._fetch_timeout = fetch_timeout
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self.stopped = asyncio.Event()

    def stop(self) -> None:
        """Stop fetching; in-flight handlers go on until `run()`'s grace period ends."""
        self._stopping.set()

    async def run(self, grace: float = 20.0) -> None:
        sub = await self._js.pull_subscribe_bind(durable=self.spec.durable, stream=self.spec.stream)
        try:
            while not self._stopping.is_set():
                messages = await self._fetch(sub)
                for msg in messages:
                    await self._slots.acquire()
                    task = asyncio.create_task(self._handle(msg))
                    self._in_flight.add(task)
                    task.add_done_callback(self._done)
        finally:
            await self._finish_in_flight(grace)
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
            self.stopped.set()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        # Only fetch as many as there are free handler slots, so nothing waits unacknowledged in our own queue.
        want = max(1, min(self._batch, self._concurrency - len(self._in_flight)))
        fetch = asyncio.ensure_future(sub.fetch(want, timeout=self._fetch_timeout, heartbeat=self._fetch_timeout / 4))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not fetch.done():
            fetch.cancel()  # messages already pulled come back after their ack wait
            with contextlib.suppress(asyncio.CancelledError, nats.errors.Error):
                await fetch
            return []
        try:
            return fetch.result()
        except nats.errors.TimeoutError:
            return []
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError, nats.errors.Error) as exc:
            # The connection reconnects by itself; pace the loop instead of spinning while it does.
            log.debug("fetch from %s failed: %s", self.spec.durable, exc)
            await asyncio.sleep(0.1)
            return []

    async def _finish_in_flight(self, grace: float) -> None:
        if not self._in_flight:
            return
        _, still_running = await asyncio.wait(set(self._in_flight), timeout=grace)
        for task in still_running:
            task.cancel()  # _handle naks the message so another replica takes it
        if still_running:
            await asyncio.wait(still_running)

    def _backoff(self, num_delivered: int) -> float:
        if not self.spec.backoff:
            return self.spec.ack_wait
        return self.spec.backoff[min(num_delivered, len(self.spec.backoff)) - 1]

    async def _handle(self, msg: Msg) -> None:
        durable = self.spec.durable
        meta = msg.metadata
        num_delivered = meta.num_delivered or 1
        if num_delivered > 1:
            self._metrics.redeliveries.labels(durable).inc()
        headers = msg.headers or {}
        try:
            event = decode(headers, msg.data, self._registry)
        except EventDecodeError as exc:
            await self._dead_letter(
                msg, f"{exc.failure.value}: {exc.detail}", num_delivered, reason_label=exc.failure.value
            )
            return
        delivery = Delivery(event, msg.subject, headers, meta.sequence.stream, num_delivered)
        keepalive = asyncio.create_task(self._keep_alive(msg, num_delivered))
        self._metrics.in_flight.labels(durable).inc()
        started = time.perf_counter()
        span = tracer().start_span(
            f"process {msg.subject}",
            context=extract_context(headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": msg.subject,
                "messaging.message.id": event.id,
                "messaging.consumer.group.name": durable,
                "messaging.operation.type": "process",
                "messaging.message.delivery_count": num_delivered,
            },
        )
        try:
            with trace.use_span(span, end_on_exit=True):
                await self._handler(delivery)
        except Reject as exc:
            await self._dead_letter(msg, f"rejected: {exc.reason}", num_delivered, reason_label="rejected")
        except RetryLater as exc:
            await self._retry(msg, num_delivered, exc.reason, exc.delay)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: hand the message back at once instead of waiting for the ack timeout.
            self._metrics.deliveries.labels(durable, "nak_shutdown").inc()
            with contextlib.suppress(nats.errors.Error):
                await asyncio.shield(msg.nak())
        except Exception as exc:
            log.exception("handler for %s failed on %s", durable, msg.subject)
            await self._retry(msg, num_delivered, f"{type(exc).__name__}: {exc}", None)
        else:
            await self._settle(msg.ack(), msg, "ack")
        finally:
            keepalive.cancel()
            self._metrics.in_flight.labels(durable).dec()
            self._metrics.handler_seconds.labels(durable).observe(time.perf_counter() - started)

    async def _keep_alive(self, msg: Msg, num_delivered: int) -> None:
        """Long handlers: tell the server we are still working well before the ack deadline passes."""
        interval = max(0.1, self._backoff(num_delivered) / 3)
        with contextlib.suppress(nats.errors.Error):
            while True:
                await asyncio.sleep(interval)
                await msg.in_progress()

    async def _retry(self, msg: Msg, num_delivered: int, reason: str, delay: float | None) -> None:
        if num_delivered >= self.spec.max_deliver:
            await self._dead_letter(
                msg, f"gave up after {num_delivered} deliveries: {reason}", num_delivered, reason_label="max_deliveries"
            )
            return
        self._metrics.retries.labels(self.spec.durable).inc()
        await self._settle(msg.nak(delay=delay if delay is not None else self._backoff(num_delivered)), msg, "retry")

    async def _dead_letter(self, msg: Msg, reason: str, num_delivered: int, *, reason_label: str) -> None:
        meta = msg.metadata
        headers = dict(msg.headers or {})
        headers.update(
            {
                DLQ_REASON: reason.replace("\r", " ").replace("\n", " "),
                DLQ_CONSUMER: self.spec.durable,
                DLQ_STREAM: meta.stream,
                DLQ_SEQUENCE: str(meta.sequence.stream),
                DLQ_SUBJECT: msg.subject,
                DLQ_DELIVERIES: str(num_delivered),
                # One dead letter per stored message, however often this path runs for it.
                "Nats-Msg-Id": f"dlq/{meta.stream}/{meta.sequence.stream}/{self.spec.durable}",
            }
        )
        try:
            await self._js.publish(dead_letter_subject(self.spec.durable), msg.data, headers=headers)
        except Exception as exc:  # keep the message: it is retried rather than lost
            log.warning("dead-lettering %s failed (%s); will retry", msg.subject, exc)
            await self._settle(msg.nak(delay=self._backoff(num_delivered)), msg, "retry")
            return
        log.warning(
            "dead-lettered message",
            extra={"consumer": self.spec.durable, "reason": reason, "stream_sequence": meta.sequence.stream},
        )
        self._metrics.dead_letters.labels(self.spec.durable, reason_label).inc()
        await self._settle(msg.term(), msg, "dead_letter")

    async def _settle(self, action: Awaitable[None], msg: Msg, outcome: str) -> None:
        try:
            await action
        except nats.errors.Error as exc:
            # The ack is lost with the connection; the server redelivers and the idempotent handler absorbs it.
            log.debug("could not %s %s: %s", outcome, msg.subject, exc)
        self._metrics.deliveries.labels(self.spec.durable, outcome).inc()
