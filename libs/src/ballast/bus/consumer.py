"""Durable pull consumers shared by a service's replicas.

A handler gets a decoded, typed `Delivery`. Returning acks it. Raising `RetryLater` returns it for a delayed
redelivery; raising `Reject` (or sending something that is not a valid event) moves it to `dlq.<durable>` with the
reason and the original headers, and the consumer carries on with the next message. Any other exception counts as
transient until the delivery limit, after which the message is dead-lettered too: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from pydantic import BaseModel

from ballast.events.catalogue import ConsumerSpec, dead_letter_subject
from ballast.events.envelope import Envelope, EventDecodeError, decode
from ballast.events.registry import TypeRegistry
from ballast.telemetry.metrics import BusMetrics
from ballast.telemetry.tracing import extract_context, recording, tracer

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
    num_delivered: int  # 1 on the first delivery; more after a retry, a lost ack or a replica that died


Handler = Callable[[Delivery], Awaitable[None]]

# $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>; later servers add <domain> and
# <account hash> after ACK (and a token at the end), which nats-py's Msg.Ack indexes count with.
_V1_ACK_TOKENS = 9


def _delivery_numbers(reply: str) -> tuple[int, int]:
    """(times delivered, stream sequence) from a message's ack subject: msg.metadata builds nats-py's whole Metadata
    (dataclasses and a datetime), a cost per message on the hot path for two numbers."""
    tokens = reply.split(".")
    shift = -2 if len(tokens) == _V1_ACK_TOKENS else 0
    return int(tokens[Msg.Ack.NumDelivered + shift]), int(tokens[Msg.Ack.StreamSeq + shift])


@dataclass(eq=False)
class _Working:
    """A message whose handler is running, and when the server must next hear that it still is."""

    msg: Msg
    interval: float
    due: float


class Consumer:
    """Pulls from one durable and runs up to `concurrency` handlers at a time until `stop()`.

    Pulling is continuous (like the Go client's `Consume`): pull requests ask for exactly as many messages as there
    are free handler slots, and each message starts its handler the moment it arrives. That keeps latency at one
    round trip under a trickle and throughput high under load, with nothing fetched that waits in a local queue.
    """

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
        pull_expires: float = 5.0,
    ) -> None:
        self._js = js
        self._nc = js._nc  # the JetStream context's own connection, which pull requests and acks travel on
        self.spec = spec
        self._handler = handler
        self._registry = registry
        self._metrics = metrics
        self._batch = max(1, min(batch, concurrency))
        self._concurrency = concurrency
        self._expires = pull_expires
        self._heartbeat = pull_expires / 5
        self._requested = 0  # messages asked for and not yet arrived
        self._last_heard = 0.0
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._working: set[_Working] = set()
        # Label lookups cost more than the increments on the hot path: resolve them once.
        self._in_flight_gauge = metrics.in_flight.labels(spec.durable)
        self._handler_seconds = metrics.handler_seconds.labels(spec.durable)
        self._outcomes = {
            outcome: metrics.deliveries.labels(spec.durable, outcome)
            for outcome in ("ack", "retry", "dead_letter", "nak_shutdown")
        }

    def stop(self) -> None:
        """Stop pulling; in-flight handlers go on until `run()`'s grace period ends."""
        self._stopping.set()
        self._wake.set()

    async def run(self, grace: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        inbox = self._nc.new_inbox()
        pull_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.spec.stream}.{self.spec.durable}"
        sub = await self._nc.subscribe(inbox, cb=self._on_message)
        self._last_heard = loop.time()
        keep_alive = asyncio.create_task(self._keep_alive())
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # before pulling: a wake while the pull is sent is kept for the next turn
                if loop.time() - self._last_heard > 2 * self._heartbeat + 1:
                    # Neither messages nor heartbeats: the pull requests died with a connection or a server restart.
                    self._requested = 0
                    self._last_heard = loop.time()
                free = self._free()
                if self._pull_due(free) and await self._pull(pull_subject, inbox, free):
                    self._requested += free
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._heartbeat):
                        await self._wake.wait()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
            await self._finish_in_flight(grace)
            keep_alive.cancel()

    def _free(self) -> int:
        """Handler slots neither busy nor asked for."""
        return self._concurrency - self._held() - self._requested

    def _held(self) -> int:
        """Messages arrived and not yet settled."""
        return len(self._in_flight)

    def _pull_due(self, free: int) -> bool:
        # A whole batch, or whatever is free when nothing is asked for (a trickle must not wait for a batch).
        return free >= self._batch or (free > 0 and self._requested == 0)

    async def _pull(self, pull_subject: str, inbox: str, count: int) -> bool:
        request = {
            "batch": count,
            "expires": int(self._expires * 1e9),
            "idle_heartbeat": int(self._heartbeat * 1e9),
        }
        try:
            await self._nc.publish(pull_subject, json.dumps(request).encode(), reply=inbox)
        except nats.errors.Error as exc:
            log.debug("pull request for %s failed: %s", self.spec.durable, exc)
            return False
        return True

    async def _on_message(self, msg: Msg) -> None:
        self._last_heard = asyncio.get_running_loop().time()
        status = (msg.headers or {}).get("Status") if not msg.data else None
        if status is not None:
            if status == "100":
                return  # idle heartbeat: the pull request is alive
            # Any other status ends the pull request. 404/408 (nothing left, expired) are routine: ask again now.
            # Others (409 leadership change, max waiting, ...) are retried at the loop's slower pace.
            unfilled = (msg.headers or {}).get("Nats-Pending-Messages")
            self._requested = max(0, self._requested - int(unfilled)) if unfilled else 0
            if status in ("404", "408"):
                self._wake.set()
            else:
                description = (msg.headers or {}).get("Description", "")
                log.warning("pull request for %s ended: %s %s", self.spec.durable, status, description)
            return
        self._requested = max(0, self._requested - 1)
        self._accept(msg)

    def _accept(self, msg: Msg) -> None:
        """A message arrived: its handler starts now."""
        task = asyncio.create_task(self._handle(msg))
        self._in_flight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._pull_due(self._free()):  # wake the pulling loop once per batch, not once per message
            self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            # A bug in this module, not in the handler: the message comes back after its ack timeout.
            log.error("delivery failed outside the handler", exc_info=task.exception())

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
        num_delivered, stream_sequence = _delivery_numbers(msg.reply)
        if num_delivered > 1:
            self._metrics.redeliveries.labels(durable).inc()  # rare: not worth a cached child
        headers = msg.headers or {}
        try:
            event = decode(headers, msg.data, self._registry)
        except EventDecodeError as exc:
            await self._dead_letter(
                msg, f"{exc.failure.value}: {exc.detail}", num_delivered, reason_label=exc.failure.value
            )
            return
        delivery = Delivery(event, msg.subject, headers, stream_sequence, num_delivered)
        progress_every = max(0.05, self._backoff(num_delivered) / 3)
        working = _Working(msg, progress_every, time.monotonic() + progress_every)
        self._working.add(working)
        self._in_flight_gauge.inc()
        started = time.perf_counter()
        try:
            await self._call_handler(delivery, extract_context(headers))
        except Reject as exc:
            await self._dead_letter(msg, f"rejected: {exc.reason}", num_delivered, reason_label="rejected")
        except RetryLater as exc:
            await self._retry(msg, num_delivered, exc.reason, exc.delay)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: hand the message back at once instead of waiting for the ack timeout.
            self._outcomes["nak_shutdown"].inc()
            with contextlib.suppress(nats.errors.Error):
                await asyncio.shield(msg.nak())
        except Exception as exc:
            log.exception("handler for %s failed on %s", durable, msg.subject)
            await self._retry(msg, num_delivered, f"{type(exc).__name__}: {exc}", None)
        else:
            await self._settle(msg.ack(), msg, "ack")
        finally:
            self._working.discard(working)
            self._in_flight_gauge.dec()
            self._handler_seconds.observe(time.perf_counter() - started)

    async def _call_handler(self, delivery: Delivery, parent: Context) -> None:
        """The handler, in the publisher's trace: inside a span of ours when spans are recorded."""
        if not recording():
            # Nothing records spans: the trace context alone, without building a span (hot path).
            token = otel_context.attach(parent)
            try:
                await self._handler(delivery)
            finally:
                otel_context.detach(token)
            return
        span = tracer().start_span(
            f"process {delivery.subject}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": delivery.subject,
                "messaging.message.id": delivery.event.id,
                "messaging.consumer.group.name": self.spec.durable,
                "messaging.operation.type": "process",
                "messaging.message.delivery_count": delivery.num_delivered,
            },
        )
        with trace.use_span(span, end_on_exit=True):
            await self._handler(delivery)

    async def _keep_alive(self) -> None:
        """Long handlers: tell the server we are still working well before each message's ack deadline passes.

        One loop for all in-flight messages, since a task per message would cost more than most handlers.
        """
        tick = max(0.05, min((*self.spec.backoff, self.spec.ack_wait)) / 3)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for working in list(self._working):
                if working.due <= now:
                    working.due = now + working.interval
                    with contextlib.suppress(nats.errors.Error):
                        await working.msg.in_progress()

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
        self._outcomes[outcome].inc()
