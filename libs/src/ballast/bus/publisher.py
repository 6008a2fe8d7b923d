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
from pydantic import BaseModel

from ballast.events.catalogue import Catalogue
from ballast.events.envelope import Envelope, encode
from ballast.telemetry.metrics import BusMetrics
from ballast.telemetry.tracing import inject_context, tracer

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

    def _prepare(self, subject: str, event: Envelope[BaseModel]) -> tuple[dict[str, str], bytes, str]:
        headers, body = encode(event)
        headers[MSG_ID_HEADER] = event.msg_id
        inject_context(headers)
        return headers, body, self._catalogue.stream_for(subject).name

    async def publish(self, subject: str, event: Envelope[BaseModel]) -> PubAck:
        """Stores `event` on `subject` and returns the server's acknowledgement (duplicate=True if already stored)."""
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
            headers, body, stream = self._prepare(subject, event)
            return await self._store(subject, headers, body, stream)

    async def publish_all(self, items: Sequence[tuple[str, Envelope[BaseModel]]]) -> list[PubAck]:
        """Publishes many events through the async window and waits for all acknowledgements, in order."""
        prepared = []
        for subject, event in items:
            headers, body, stream = self._prepare(subject, event)
            prepared.append((subject, headers, body, stream))
        pending: list[asyncio.Future[PubAck] | None] = []
        for subject, headers, body, _ in prepared:
            try:
                pending.append(await self._js.publish_async(subject, body, headers=dict(headers)))
            except _RETRYABLE:
                pending.append(None)
        acks: list[PubAck] = []
        for (subject, headers, body, stream), future in zip(prepared, pending, strict=True):
            ack = await self._settle(future, stream) if future is not None else None
            if ack is None:
                ack = await self._store(subject, headers, body, stream)
            acks.append(ack)
        return acks

    async def _settle(self, future: asyncio.Future[PubAck], stream: str) -> PubAck | None:
        try:
            ack = await asyncio.wait_for(future, self._ack_timeout)
        except _RETRYABLE:
            self._metrics.publish_errors.labels(stream).inc()
            return None
        self._count(ack)
        return ack

    async def _store(self, subject: str, headers: dict[str, str], body: bytes, stream: str) -> PubAck:
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
                self._metrics.publish_errors.labels(stream).inc()
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

    def _count(self, ack: PubAck) -> None:
        self._metrics.published.labels(ack.stream, "true" if ack.duplicate else "false").inc()

    async def flush(self) -> None:
        """Waits until every async publish has been acknowledged or failed."""
        if self._js.publish_async_pending():
            await self._js.publish_async_completed()
