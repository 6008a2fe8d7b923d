"""De-duplicated publishing of typed events to JetStream.

Every message carries `Nats-Msg-Id = <ce-source>/<ce-id>`, so a publish that timed out (the server may or may not
have stored it) is simply sent again: the stream keeps one copy. That makes "acknowledged means stored, retried
means at most once in the stream" hold across server restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck
from opentelemetry import trace
from prometheus_client import Counter
from pydantic import BaseModel

from ballast.events.catalogue import Catalogue
from ballast.events.envelope import Envelope, encode
from ballast.telemetry.metrics import BusMetrics
from ballast.telemetry.tracing import inject_context, recording, tracer

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
_RETRYABLE = (
    TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.TooManyStalledMsgsError,
    nats.js.errors.ServiceUnavailableError,
)


class PublishError(Exception):
    """The event could not be stored before the publish deadline; it was not acknowledged."""


class Publisher:
    def __init__(
        self,
        js: JetStreamContext,
        metrics: BusMetrics,
        catalogue: Catalogue,
        ack_timeout: float,
        deadline: float = 60.0,
    ) -> None:
        self._js = js
        self._metrics = metrics
        self._catalogue = catalogue
        self._ack_timeout = ack_timeout
        self._deadline = deadline
        # Label lookups cost more than the increments on the hot path: each (stream, duplicate) child kept once found.
        self._published: dict[tuple[str, bool], Counter] = {}

    def _prepare(self, event: Envelope[BaseModel]) -> tuple[dict[str, str], bytes]:
        headers, body = encode(event)
        headers[MSG_ID_HEADER] = event.msg_id
        inject_context(headers)
        return headers, body

    async def publish(self, subject: str, event: Envelope[BaseModel]) -> PubAck:
        """Stores `event` on `subject` and returns the server's acknowledgement (duplicate=True if already stored)."""
        if not recording():
            headers, body = self._prepare(event)
            return await self._store(subject, headers, body)
        with tracer().start_as_current_span(
            f"send {subject}",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": subject,
                "messaging.message.id": event.id,
                "messaging.operation.type": "send",
            },
        ):
            headers, body = self._prepare(event)
            return await self._store(subject, headers, body)

    async def publish_all(self, items: Sequence[tuple[str, Envelope[BaseModel]]]) -> list[PubAck]:
        """Publishes many events through the async window and waits for all acknowledgements, in order.

        Anything not acknowledged in time is sent again one by one with its message id, so the stream still holds
        each event once.
        """
        prepared = [(subject, *self._prepare(event)) for subject, event in items]
        futures: list[asyncio.Future[PubAck] | None] = []
        for subject, headers, body in prepared:
            try:
                futures.append(await self._js.publish_async(subject, body, headers=dict(headers)))
            except _RETRYABLE:
                futures.append(None)
        await self._acknowledged([f for f in futures if f is not None])
        acks: list[PubAck] = []
        for (subject, headers, body), future in zip(prepared, futures, strict=True):
            if future is not None and future.done() and not future.cancelled() and future.exception() is None:
                ack = future.result()
                self._count(ack)
            else:
                if future is not None:
                    future.cancel()
                    self._error(subject)
                ack = await self._store(subject, headers, body)
            acks.append(ack)
        return acks

    async def _acknowledged(self, futures: list[asyncio.Future[PubAck]]) -> None:
        """Waits until every future is done or the ack timeout has passed.

        In order, one at a time: acknowledgements come back about in the order of the publishes, so most futures are
        done when their turn comes, and waiting costs nothing for them (asyncio.wait on all of them at once would add
        and remove a callback on each).
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._ack_timeout
        for future in futures:
            if not future.done():
                left = give_up - loop.time()
                if left <= 0:
                    return
                await asyncio.wait((future,), timeout=left)

    async def _store(self, subject: str, headers: dict[str, str], body: bytes) -> PubAck:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._deadline
        delay = 0.05
        while True:
            try:
                # publish() writes into the headers it is given; each attempt gets a copy.
                future = await self._js.publish_async(
                    subject, body, headers=dict(headers), wait_stall=self._ack_timeout
                )
                ack = await asyncio.wait_for(future, self._ack_timeout)
            except _RETRYABLE as exc:
                self._error(subject)
                if loop.time() + delay >= give_up:
                    raise PublishError(
                        f"{subject}: not stored within {self._deadline:.0f}s ({type(exc).__name__})"
                    ) from exc
                log.debug("publish to %s failed (%s); retrying with the same message id", subject, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            self._count(ack)
            return ack

    def _error(self, subject: str) -> None:
        self._metrics.publish_errors.labels(self._catalogue.stream_for(subject).name).inc()

    def _count(self, ack: PubAck) -> None:
        key = (ack.stream, bool(ack.duplicate))
        counter = self._published.get(key)
        if counter is None:
            counter = self._published[key] = self._metrics.published.labels(ack.stream, str(key[1]).lower())
        counter.inc()

    async def flush(self) -> None:
        """Waits until every async publish has been acknowledged or failed."""
        if self._js.publish_async_pending():
            await self._js.publish_async_completed()
