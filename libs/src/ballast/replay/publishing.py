"""Publishing stored messages again (import, replay, redrive): many in flight, each with its `Nats-Msg-Id`.

Messages go through nats-py's async publish window; acknowledgements are taken in order, so `acknowledged` is always
the count of messages, from the first, that the server has stored (or recognised as duplicates). A publish that
timed out is sent again with the same message id until the deadline: the stream keeps one copy. That count is what a
stopped or failed run reports as its resume point.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck

from ballast.bus.publisher import MSG_ID_HEADER, PublishError
from ballast.replay.progress import Progress, Stop

K = TypeVar("K")  # where a message came from: a line number, a stream position

_RETRYABLE = (
    TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.TooManyStalledMsgsError,
)


@dataclass
class Tally:
    stored: int = 0
    duplicates: int = 0  # already in the stream with the same message id: nothing stored twice
    streams: dict[str, int] = field(default_factory=dict)


class RawPublisher:
    def __init__(
        self, js: JetStreamContext, *, window: int = 2000, ack_timeout: float = 5.0, deadline: float = 60.0
    ) -> None:
        self._js = js
        self._window = window
        self._ack_timeout = ack_timeout
        self._deadline = deadline
        self._in_flight: deque[tuple[asyncio.Future[PubAck] | None, str, bytes, dict[str, str]]] = deque()
        self.tally = Tally()
        self.acknowledged = 0

    async def publish(self, subject: str, headers: dict[str, str], body: bytes) -> None:
        """Queues one message; `headers` must carry its Nats-Msg-Id (the key that makes a retry harmless)."""
        if MSG_ID_HEADER not in headers:
            raise ValueError("a republished message needs its Nats-Msg-Id")
        try:
            # No wait_stall: with a timeout, nats-py waits for its window in a task of its own, one loop turn and a
            # socket write per message; the window here is smaller than nats-py's, so it never stalls.
            future: asyncio.Future[PubAck] | None = await self._js.publish_async(subject, body, headers=dict(headers))
        except _RETRYABLE:
            future = None  # sent again, synchronously, when its turn comes
        self._in_flight.append((future, subject, body, headers))
        while len(self._in_flight) > self._window or (
            self._in_flight and self._in_flight[0][0] is not None and self._in_flight[0][0].done()
        ):
            await self._settle_oldest()

    async def flush(self) -> None:
        """Waits until every queued message is acknowledged (or raises `PublishError` for the first that cannot be)."""
        while self._in_flight:
            await self._settle_oldest()

    async def _settle_oldest(self) -> None:
        future, subject, body, headers = self._in_flight[0]
        ack: PubAck | None = None
        if future is not None:
            if not future.done():  # most are: acknowledgements come back in about publish order
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), self._ack_timeout)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                error = future.exception()
                if error is None:
                    ack = future.result()
                elif not isinstance(error, _RETRYABLE) and isinstance(error, nats.js.errors.APIError):
                    # refused (no stream for the subject, too big): sending it again cannot help
                    raise PublishError(f"{subject}: {error.description or error}") from error
        if ack is None:
            ack = await self._store(subject, headers, body)
        self._in_flight.popleft()
        self.acknowledged += 1
        if ack.duplicate:
            self.tally.duplicates += 1
        else:
            self.tally.stored += 1
            self.tally.streams[ack.stream] = self.tally.streams.get(ack.stream, 0) + 1

    async def _store(self, subject: str, headers: dict[str, str], body: bytes) -> PubAck:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._deadline
        delay = 0.05
        while True:
            try:
                return await self._js.publish(subject, body, timeout=self._ack_timeout, headers=dict(headers))
            except _RETRYABLE as exc:
                if loop.time() + delay >= give_up:
                    raise PublishError(f"{subject}: not stored within {self._deadline:.0f}s ({exc!r})") from exc
                await asyncio.sleep(delay)
                delay = min(2 * delay, 1.0)
            except nats.js.errors.APIError as exc:
                raise PublishError(f"{subject}: {exc.description or exc}") from exc


@dataclass
class Published(Generic[K]):
    """What a run of `publish_in_order` did: `through` is the key of the last message of the stored prefix."""

    tally: Tally
    through: K | None = None
    stopped: bool = False
    error: str | None = None


async def publish_in_order(
    publisher: RawPublisher,
    messages: AsyncIterable[tuple[K, str, dict[str, str], bytes]],
    *,
    progress: Progress | None = None,
    stop: Stop | None = None,
) -> Published[K]:
    """Publishes (key, subject, headers, body) messages in order until they end, a stop is requested or one cannot be
    stored; says how far the stored prefix reaches (the resume point of import and replay)."""
    keys: list[K] = []  # in publish order, to tell how far the acknowledgements reach
    stopped = False
    error: str | None = None
    try:
        async for key, subject, headers, body in messages:
            await publisher.publish(subject, headers, body)
            keys.append(key)
            if progress is not None:
                progress.advance()
            if stop is not None and stop.requested:
                stopped = True
                break
        await publisher.flush()
    except PublishError as exc:
        error = str(exc)
    through = keys[publisher.acknowledged - 1] if publisher.acknowledged else None
    return Published(publisher.tally, through, stopped, error)
