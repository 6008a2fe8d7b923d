"""Reading a stream in order, from a sequence or a time, without acknowledging anything: for replay and export
tooling and for rebuilding state at start-up.

The reader pulls from an ephemeral consumer (in memory, no acks, removed when the reader ends or goes quiet) and hands
out every stored message as a `StoredEvent`, malformed ones included: decoding happens when the caller asks for
`event`, so an export that copies raw messages pays nothing for it, and a message that is not a valid event shows its
`error` instead of disappearing. If the consumer is lost (a server restart, a long disconnect), the reader makes a new
one from the sequence after the last message it handed out; nothing is skipped or handed out twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import TracebackType
from typing import Final, Literal, Self

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from ballast.events.envelope import Envelope, EventDecodeError, decode
from ballast.events.registry import TypeRegistry

log = logging.getLogger(__name__)

LAST: Final = "last"  # `until=LAST`: read up to the stream's last message when reading starts


@dataclass(frozen=True)
class StoredEvent:
    """One message as the stream stores it, and (on first access) what it decodes to."""

    sequence: int
    time: datetime
    subject: str
    headers: Mapping[str, str]
    data: bytes
    registry: TypeRegistry = field(repr=False, compare=False)

    @cached_property
    def _decoded(self) -> Envelope[BaseModel] | EventDecodeError:
        try:
            return decode(self.headers, self.data, self.registry)
        except EventDecodeError as exc:
            return exc

    @property
    def event(self) -> Envelope[BaseModel] | None:
        """The typed event, or None if the message is not a valid one (see `error`)."""
        decoded = self._decoded
        return None if isinstance(decoded, EventDecodeError) else decoded

    @property
    def error(self) -> EventDecodeError | None:
        """Why the message is not a valid event, or None if it is."""
        decoded = self._decoded
        return decoded if isinstance(decoded, EventDecodeError) else None


class StreamReader:
    """Use as `async with bus.read(stream, ...) as events: async for stored in events: ...`.

    Starts at `from_sequence`, or at the first message stored at or after `from_time`, or at the stream's first
    message. Without `until` it follows the stream forever; with `until=N` it ends after sequence N, with
    `until=LAST` after the message that was last when reading started. `subjects` filter (wildcards allowed).
    """

    def __init__(
        self,
        js: JetStreamContext,
        registry: TypeRegistry,
        stream: str,
        *,
        subjects: Sequence[str] = (),
        from_sequence: int | None = None,
        from_time: datetime | None = None,
        until: int | Literal["last"] | None = None,
        batch: int = 1000,
        heartbeat: float = 2.0,
    ) -> None:
        if from_sequence is not None and from_time is not None:
            raise ValueError("read from a sequence or from a time, not both")
        if from_sequence is not None and from_sequence < 1:
            raise ValueError(f"from_sequence must be 1 or more, not {from_sequence}")
        if from_time is not None and from_time.tzinfo is None:
            raise ValueError("from_time must carry a time zone (stored times are UTC)")
        if isinstance(until, int) and until < 1:
            raise ValueError(f"until must be a sequence of 1 or more, not {until}")
        self._js = js
        self._nc: Client = js._nc  # the JetStream context's own connection, which pull requests travel on
        self._registry = registry
        self.stream = stream
        self._subjects = list(subjects)
        self._from_sequence = from_sequence
        self._from_time = from_time
        self._until = until
        self._batch = batch
        self._heartbeat = heartbeat
        self._end: int | None = None  # the last sequence to hand out, once known
        self._last_at_start = 0
        self._pending_at_start = 0
        self._last = 0  # the sequence of the last message handed out
        self._consumer: str | None = None
        self._sub: Subscription | None = None
        self._inbox = ""
        self._requested = 0
        self._buffer: deque[Msg] = deque()  # arrived, not yet handed out: at most one batch
        self._arrived = asyncio.Event()
        self._last_heard = 0.0
        self._lost = False  # the server ended a pull request for good: the consumer is gone
        self._watchdog: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        try:
            info = await self._js.stream_info(self.stream)
        except NotFoundError:
            raise LookupError(f"stream {self.stream!r} does not exist") from None
        self._last_at_start = info.state.last_seq
        self._end = (
            self._last_at_start if self._until == LAST else self._until if isinstance(self._until, int) else None
        )
        self._inbox = self._nc.new_inbox()
        # Messages are taken in a callback: nats-py's message iterator costs a task per message.
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)
        await self._start_consumer()
        self._watchdog = asyncio.create_task(self._watch())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
        await self._delete_consumer()

    def __aiter__(self) -> AsyncIterator[StoredEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StoredEvent]:
        if self._sub is None:
            raise RuntimeError("use the reader as `async with bus.read(...) as events`")
        if self._nothing_to_read:
            return
        buffer = self._buffer
        while True:
            if not buffer:
                if self._requested == 0:
                    await self._pull()
                self._arrived.clear()
                await self._arrived.wait()
                continue
            msg = buffer.popleft()
            meta = msg.metadata
            sequence = meta.sequence.stream
            if sequence <= self._last:
                continue  # from a consumer replaced after it went quiet: already handed out
            if self._end is not None and sequence > self._end:
                return
            self._last = sequence
            if self._requested + len(buffer) <= self._batch // 2:
                await self._pull()
            yield StoredEvent(sequence, meta.timestamp, msg.subject, msg.headers or {}, msg.data, self._registry)
            if self._end is not None and (
                sequence >= self._end or (meta.num_pending == 0 and self._end <= self._last_at_start)
            ):
                return  # nothing left that matches, up to an end that was already stored

    async def _on_message(self, msg: Msg) -> None:
        self._last_heard = asyncio.get_running_loop().time()
        if not msg.data and msg.headers and "Status" in msg.headers:
            await self._on_status(msg.headers)
            return
        self._requested = max(0, self._requested - 1)
        self._buffer.append(msg)
        self._arrived.set()

    @property
    def _nothing_to_read(self) -> bool:
        if self._end is None:
            return False
        start = self._from_sequence or 1
        return start > self._end or (self._end <= self._last_at_start and self._pending_at_start == 0)

    async def _start_consumer(self) -> None:
        """A consumer from where reading starts, or, after a replacement, from the message after the last one."""
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=max(30.0, 10 * self._heartbeat),
            filter_subject=self._subjects[0] if len(self._subjects) == 1 else None,
            filter_subjects=self._subjects if len(self._subjects) > 1 else None,
        )
        if self._last:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, self._last + 1
        elif self._from_sequence is not None:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, self._from_sequence
        elif self._from_time is not None:
            config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_TIME, self._from_time
        else:
            config.deliver_policy = DeliverPolicy.ALL
        info = await self._js.add_consumer(self.stream, config)
        self._consumer = info.name
        self._pending_at_start = info.num_pending or 0
        self._requested = 0
        self._lost = False
        self._last_heard = asyncio.get_running_loop().time()

    async def _delete_consumer(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(nats.errors.Error):  # gone with a server restart, or removed when inactive
                await self._js.delete_consumer(self.stream, self._consumer)
            self._consumer = None

    async def _pull(self) -> None:
        wanted = self._batch - self._requested - len(self._buffer)
        if wanted <= 0:
            return
        request = {
            "batch": wanted,
            "expires": int(5 * self._heartbeat * 1e9),
            "idle_heartbeat": int(self._heartbeat * 1e9),
        }
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self._consumer}"
        try:
            await self._nc.publish(subject, json.dumps(request).encode(), reply=self._inbox)
        except nats.errors.Error as exc:
            log.debug("pull request on %s failed: %s", self.stream, exc)  # the watchdog starts over
            return
        self._requested += wanted

    async def _on_status(self, headers: Mapping[str, str]) -> None:
        status = headers["Status"]
        if status == "100":
            return  # idle heartbeat: the pull request is alive
        if status in ("404", "408"):  # the request ran out (nothing new yet): ask again
            unfilled = headers.get("Nats-Pending-Messages")
            self._requested = max(0, self._requested - int(unfilled)) if unfilled else 0
            await self._pull()
            return
        # 409, 503 and the like: the consumer is gone (deleted, removed while the caller was slow, lost with a server
        # restart) or refuses pulls; the watchdog replaces it.
        log.info("read of %s interrupted: %s %s", self.stream, status, headers.get("Description", ""))
        self._lost = True

    async def _watch(self) -> None:
        """A pull request outstanding but neither messages nor heartbeats for two heartbeats: the consumer or its pull
        requests are gone. (With nothing requested, the caller is still busy with what arrived: no news is expected.)"""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._heartbeat)
            quiet = self._requested > 0 and loop.time() - self._last_heard > 2 * self._heartbeat + 1
            if not (quiet or self._lost):
                continue
            try:
                await self._delete_consumer()
                await self._start_consumer()
                await self._pull()
            except (nats.errors.Error, TimeoutError) as exc:
                log.debug("replacing the consumer reading %s failed (%s); retrying", self.stream, exc)
                continue
            log.info("reading %s again from sequence %d", self.stream, self._last + 1)
