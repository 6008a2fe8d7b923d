"""Durable pull consumers that hand their handler the messages in batches.

For a handler whose work per message is small beside the consumer's own (a task, metrics and trace context per
message), and that can do a batch's work at once (one write per key for a burst of facts about it). The guarantees are
the per-message consumer's: every message is acked only after the handler returned for its batch (at-least-once), each
one on its own (a redelivery is exact: it brings back only what was not acked); a message that is not a valid event is
dead-lettered with the reason and never reaches the handler, and the others of its batch still do; the handler tells
per delivery whether it was handled (None) or not (`Reject` dead-letters it, `RetryLater` or any other exception
has it delivered again, up to `max_deliver`); a handler that raises has the whole batch delivered again. On stop, the
batches under way finish within the grace period, and whatever is left is handed back at once.

Batches form by themselves: messages that arrive while a batch is handled wait, and the next batch takes them all (up
to `max_batch`). Under a trickle a batch is one message and waits for nothing; under load batches grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.context import Context

from ballast.bus.consumer import Consumer, Delivery, Reject, RetryLater, _delivery_numbers, _Working
from ballast.events.catalogue import ConsumerSpec
from ballast.events.envelope import EventDecodeError, decode
from ballast.events.registry import TypeRegistry
from ballast.telemetry.metrics import BusMetrics
from ballast.telemetry.tracing import extract_context, recording, tracer

log = logging.getLogger(__name__)

# Per delivery, in the batch's order: None (handled: acked), or why not (Reject, RetryLater or another exception).
Outcomes = Sequence[Exception | None]
BatchHandler = Callable[[Sequence[Delivery]], Awaitable[Outcomes]]


async def _unhandled(_: Delivery) -> None:  # the per-message path is never taken by a batch consumer
    raise AssertionError("a batch consumer hands its messages over in batches")


class BatchConsumer(Consumer):
    """Pulls from one durable like `Consumer` and holds up to `concurrency` messages, handled `max_batch` at a time by
    up to `parallel` batches at once."""

    def __init__(
        self,
        js: JetStreamContext,
        spec: ConsumerSpec,
        handler: BatchHandler,
        *,
        registry: TypeRegistry,
        metrics: BusMetrics,
        batch: int = 64,
        concurrency: int = 256,
        max_batch: int = 256,
        parallel: int = 2,
        pull_expires: float = 5.0,
    ) -> None:
        super().__init__(
            js,
            spec,
            _unhandled,
            registry=registry,
            metrics=metrics,
            batch=batch,
            concurrency=concurrency,
            pull_expires=pull_expires,
        )
        self._batch_handler = handler
        self._max_batch = max(1, max_batch)
        self._parallel = max(1, parallel)
        self._waiting: list[Msg] = []
        self._taken = 0  # messages in the batches being handled
        self._start_due = False
        self._batch_sizes = metrics.batch_size.labels(spec.durable)

    def _held(self) -> int:
        return len(self._waiting) + self._taken

    def _accept(self, msg: Msg) -> None:
        self._waiting.append(msg)
        if not self._start_due and len(self._in_flight) < self._parallel:
            # Soon, not now: the messages of one read arrive one callback after another without a pause, and the
            # batch should take them all.
            self._start_due = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._start_due = False
        if self._waiting and len(self._in_flight) < self._parallel:
            task = asyncio.create_task(self._work())
            self._in_flight.add(task)
            task.add_done_callback(self._done)

    async def _work(self) -> None:
        while self._waiting:
            msgs = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            self._taken += len(msgs)
            try:
                await self._handle_batch(msgs)
            except asyncio.CancelledError:
                # Shutdown ran out of grace: hand back this batch's unsettled messages (nak refuses the settled ones)
                # and what waits, which nobody will take.
                left, self._waiting = self._waiting, []
                await self._hand_back([*msgs, *left])
                return
            finally:
                self._taken -= len(msgs)
            if self._pull_due(self._free()):
                self._wake.set()

    async def _finish_in_flight(self, grace: float) -> None:
        if self._waiting and not self._in_flight:
            self._start()  # arrived just before the stop, its batch not started yet: it is handled, not stranded
        await super()._finish_in_flight(grace)

    async def _hand_back(self, msgs: Sequence[Msg]) -> None:
        handed = 0
        for msg in msgs:
            if msg._ackd:  # settled already (acked, retried or dead-lettered)
                continue
            with contextlib.suppress(nats.errors.Error):
                await asyncio.shield(msg.nak())
            handed += 1
        self._outcomes["nak_shutdown"].inc(handed)

    async def _handle_batch(self, msgs: Sequence[Msg]) -> None:
        deliveries: list[Delivery] = []
        kept: list[Msg] = []
        working: list[_Working] = []
        now = time.monotonic()
        for msg in msgs:
            num_delivered, stream_sequence = _delivery_numbers(msg.reply)
            if num_delivered > 1:
                self._metrics.redeliveries.labels(self.spec.durable).inc()
            headers = msg.headers or {}
            try:
                event = decode(headers, msg.data, self._registry)
            except EventDecodeError as exc:
                reason = f"{exc.failure.value}: {exc.detail}"
                await self._dead_letter(msg, reason, num_delivered, reason_label=exc.failure.value)
                continue
            deliveries.append(Delivery(event, msg.subject, headers, stream_sequence, num_delivered))
            kept.append(msg)
            progress_every = max(0.05, self._backoff(num_delivered) / 3)
            working.append(_Working(msg, progress_every, now + progress_every))
        if not deliveries:
            return
        self._batch_sizes.observe(len(deliveries))
        self._working.update(working)
        self._in_flight_gauge.inc(len(kept))
        started = time.perf_counter()
        try:
            outcomes = await self._call_handler_with(deliveries)
            if len(outcomes) != len(deliveries):
                raise RuntimeError(f"the batch handler told {len(outcomes)} outcomes for {len(deliveries)} deliveries")
        except Exception as exc:
            log.exception("batch handler for %s failed on %d messages", self.spec.durable, len(kept))
            outcomes = [exc] * len(kept)
        finally:
            self._working.difference_update(working)
            self._in_flight_gauge.dec(len(kept))
            self._handler_seconds.observe(time.perf_counter() - started)  # per batch
        acked = 0
        for msg, delivery, outcome in zip(kept, deliveries, outcomes, strict=True):
            if outcome is None:
                try:
                    await msg.ack()
                except nats.errors.Error as exc:  # lost with the connection: redelivered, and absorbed
                    log.debug("could not ack %s: %s", msg.subject, exc)
                acked += 1
            elif isinstance(outcome, Reject):
                await self._dead_letter(
                    msg, f"rejected: {outcome.reason}", delivery.num_delivered, reason_label="rejected"
                )
            elif isinstance(outcome, RetryLater):
                await self._retry(msg, delivery.num_delivered, outcome.reason, outcome.delay)
            else:
                await self._retry(msg, delivery.num_delivered, f"{type(outcome).__name__}: {outcome}", None)
        if acked:
            self._outcomes["ack"].inc(acked)

    async def _call_handler_with(self, deliveries: Sequence[Delivery]) -> Outcomes:
        """The handler, inside a span of ours linked to each message's trace when spans are recorded; a batch has
        many publishers, so it continues none of their traces."""
        if not recording():
            return await self._batch_handler(deliveries)
        links: list[trace.Link] = []
        for delivery in deliveries:
            context = trace.get_current_span(extract_context(delivery.headers)).get_span_context()
            if context.is_valid:
                links.append(trace.Link(context))
        span = tracer().start_span(
            f"process batch {self.spec.durable}",
            context=Context(),  # a trace of its own
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "nats",
                "messaging.consumer.group.name": self.spec.durable,
                "messaging.operation.type": "process",
                "messaging.batch.message_count": len(deliveries),
            },
        )
        with trace.use_span(span, end_on_exit=True):
            return await self._batch_handler(deliveries)
