"""A lean bulk reader of one stream: its own connection, its own consumer, frames parsed a socket read at a time.

nats-py turns every delivered message into a `Msg` (a headers dict, metadata parsed into dataclasses and a datetime,
a callback), which caps a read of a stream near 30k messages a second on one core. Export needs several times that,
so this reader speaks the NATS client protocol itself to an ephemeral pull consumer (no acks, in memory, removed
when idle): pull requests stay outstanding ahead of the reader, every `HMSG` frame of a socket read is cut out with
`bytes.find` and slices, and each socket read's messages are handed out as one list of plain tuples
`(stream sequence, subject, stored time in ns, header block, payload)`; headers stay bytes until the caller asks
(`parse_headers`). Everything is taken from the frame: the sequences and time from the reply subject the server
gives each message (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`).

What the server says besides messages is answered here:
- PING gets PONG; idle heartbeats (status 100) prove a pull request alive, and a reader that hears nothing for two
  heartbeats while requests are outstanding starts again (below);
- an expired or unfilled request (404, 408, with `Nats-Pending-Messages`) is asked again; 409 (consumer deleted,
  leadership changed, ...) starts again;
- a gap in the consumer's own sequence (a message the consumer delivered and this reader never saw) starts again;
- the end: the selection's last sequence, else the stream's last one when reading began; messages after it are dropped,
  and a message saying nothing more is pending ends the read early.
Starting again means a new consumer (and, if the connection was lost, a new connection) from the sequence after the
last one handed out: nothing is skipped or handed out twice. Gaps in the stream's sequences (deleted or filtered-out
messages) are simply absent.

Only plain `nats://` URLs (a user and password, a token, or none) are spoken to; anything else (TLS, credentials
files, several servers) raises `Unsupported`, and the caller reads with the bus's ordered reader instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from ballast.replay.selection import SelectionError

RawMessage = tuple[int, str, int, bytes, bytes]  # (stream sequence, subject, stored ns, header block, payload)

_SID: Final = b"1"
_STREAM_NOT_FOUND: Final = 10059


class Unsupported(Exception):
    """What this reader does not speak (the caller reads with nats-py instead); the message says what."""


class ReadInterrupted(ConnectionError):
    """The server went away and did not come back within the reader's retries."""


class _StartAgain(Exception):
    """The consumer or the connection is no longer good: a new one from the message after the last handed out."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    token: str | None = None

    @classmethod
    def of(cls, url: str) -> Endpoint:
        if "," in url:
            raise Unsupported("several server URLs")
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        if parts.scheme != "nats":
            raise Unsupported(f"scheme {parts.scheme}://")
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        host, port = parts.hostname or "127.0.0.1", parts.port or 4222
        if user is not None and password is None:
            return cls(host, port, token=user)
        return cls(host, port, user, password)


_NAMES: dict[bytes, str | None] = {}  # header names seen (they repeat on every message), checked once


def _header_name(raw: bytes) -> str | None:
    key: str | None
    try:
        key = raw.strip().decode("ascii")
    except UnicodeDecodeError:
        key = None
    if key is not None and any(c.isspace() for c in key):
        key = None
    if len(_NAMES) < 4096:
        _NAMES[raw] = key
    return key


def parse_headers(block: bytes) -> dict[str, str]:
    """A message's header lines (`Name: value\\r\\n`, without the `NATS/1.0` line) as nats-py gives them: names and
    values stripped, values UTF-8 with replacement, lines without a colon or with a malformed name skipped, the last
    of a repeated name kept."""
    headers: dict[str, str] = {}
    names = _NAMES
    for line in block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        key = names[name] if name in names else _header_name(name)
        if key is not None:
            headers[key] = value.strip().decode("utf-8", "replace")
    return headers


def stored_time(nanos: int) -> datetime:
    """A stored time in ns as nats-py's metadata gives it (divided as a float: the same microseconds as the bus
    reader's)."""
    return datetime.fromtimestamp(nanos / 1_000_000_000.0, UTC)


_SECONDS: dict[int, str] = {}  # whole seconds since the epoch -> their RFC 3339 text (one per second of history)


def stored_time_text(nanos: int) -> str:
    """`stored_time(nanos)` as the export writes it (`isoformat`, `Z` for UTC) without making the datetime: the same
    float division and half-even rounding to microseconds, the seconds' text made once per second."""
    fraction, whole = math.modf(nanos / 1_000_000_000.0)
    micros = round(fraction * 1_000_000)
    seconds = int(whole)
    if micros >= 1_000_000:
        micros -= 1_000_000
        seconds += 1
    text = _SECONDS.get(seconds)
    if text is None:
        text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        _SECONDS[seconds] = text
    return f"{text}.{micros:06d}Z" if micros else f"{text}Z"


def _status_header(block: bytes, name: bytes) -> int | None:
    at = block.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    stop = block.find(b"\r\n", start)
    try:
        return int(block[start:stop].strip())
    except ValueError:
        return None


class LeanReader:
    """`async with LeanReader(url, stream, ...) as reader: async for batch in reader: for message in batch: ...`

    Reads from `from_seq` (or the first message stored at or after `from_time`, or the start) through `until` (a
    sequence; None: the message that was last when reading began). `subjects` filter on the server (wildcards
    allowed). Raises `SelectionError` for a stream that does not exist, `Unsupported` when the URL or the server
    needs what this reader does not speak, `ReadInterrupted` when the server stays away.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        subjects: Sequence[str] = (),
        from_seq: int | None = None,
        from_time: datetime | None = None,
        until: int | None = None,
        batch: int = 2048,
        max_bytes: int = 4 << 20,
        heartbeat: float = 2.0,
        retries: int = 5,
        name: str = "ballast-lean-reader",
    ) -> None:
        if from_seq is not None and from_time is not None:
            raise ValueError("read from a sequence or from a time, not both")
        if from_time is not None and from_time.tzinfo is None:
            raise ValueError("from_time must carry a time zone (stored times are UTC)")
        self._endpoint = Endpoint.of(url)
        self.stream = stream
        self._subjects = list(subjects)
        self._from_seq = from_seq
        self._from_time = from_time
        self._until = until
        self._batch = batch
        self._max_bytes = max_bytes
        self._heartbeat = heartbeat
        self._retries = retries
        self._name = name
        self._inbox = b"_INBOX.lean." + uuid.uuid4().hex.encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._data = b""  # received, not yet parsed
        self._consumer = b""
        self._next_subject = ""
        self._requested = 0  # messages asked for and not yet arrived
        self._consumer_seq = 0  # the consumer's sequence of the last message that arrived
        self.end = 0  # the last stream sequence to hand out
        self.last = 0  # the stream sequence of the last message handed out
        self.restarts = 0  # consumers made again after a gap, a lost consumer or a lost connection
        self._done = False

    async def __aenter__(self) -> LeanReader:
        await self._connect()
        info = await self._api(f"$JS.API.STREAM.INFO.{self.stream}", b"")
        error = info.get("error")
        if error:
            if error.get("err_code") == _STREAM_NOT_FOUND:
                raise SelectionError(f"stream {self.stream!r} does not exist on the server")
            raise Unsupported(f"stream info: {error.get('description')}")
        last = int(info["state"]["last_seq"])
        self.end = min(self._until, last) if self._until is not None else last
        start = self._from_seq or 1
        if start > self.end or int(info["state"]["messages"]) == 0:
            self._done = True
        else:
            await self._start_consumer()
        return self

    async def __aexit__(self, *_: object) -> None:
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await self._delete_consumer()
        await self._close()

    # --- the connection ----------------------------------------------------------------------------------------------

    async def _connect(self) -> None:
        endpoint = self._endpoint
        timeout = 2 * self._heartbeat + 1
        reader, writer = await asyncio.wait_for(asyncio.open_connection(endpoint.host, endpoint.port), timeout)
        self._reader, self._writer, self._data = reader, writer, b""
        banner = await asyncio.wait_for(reader.readline(), timeout)
        if not banner.startswith(b"INFO "):
            raise Unsupported(f"not a NATS server: {banner[:40]!r}")
        server = json.loads(banner[5:])
        # A request's byte budget must hold the largest message, or the server refuses it for good.
        self._max_bytes = max(self._max_bytes, 2 * int(server.get("max_payload", 1 << 20)))
        if server.get("tls_required"):
            raise Unsupported("the server requires TLS")
        if server.get("nonce") and endpoint.token is None and endpoint.user is None:
            raise Unsupported("the server asks for a signed nonce (credentials or nkeys)")
        connect: dict[str, object] = {
            "verbose": False,
            "pedantic": False,
            "headers": True,
            "no_responders": True,
            "protocol": 1,
            "lang": "python-ballast",
            "version": "1",
            "name": self._name,
        }
        if endpoint.token is not None:
            connect["auth_token"] = endpoint.token
        if endpoint.user is not None:
            connect["user"], connect["pass"] = endpoint.user, endpoint.password
        writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        await writer.drain()
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if line.startswith(b"PONG"):
                break
            if line.startswith(b"-ERR"):
                raise Unsupported(f"the server refused the connection: {line[5:].strip().decode(errors='replace')}")
            if not line:
                raise ConnectionError("the server closed the connection during the handshake")
        writer.write(b"SUB " + self._inbox + b".> " + _SID + b"\r\n")

    async def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    def _publish(self, subject: str, reply: bytes, payload: bytes) -> None:
        if self._writer is None:
            raise ConnectionError("not connected")
        self._writer.write(b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply, len(payload), payload))

    async def _read(self) -> bytes:
        if self._reader is None:
            raise ConnectionError("not connected")
        # Two heartbeats without a byte while a pull request is outstanding: the request or the consumer is lost.
        chunk = await asyncio.wait_for(self._reader.read(1 << 20), 2 * self._heartbeat + 1)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return self._data + chunk if self._data else chunk

    async def _api(self, subject: str, payload: bytes) -> dict[str, Any]:
        """A JetStream API request on this connection, its JSON reply; other frames meanwhile (late messages of a
        consumer being replaced) are skipped whole."""
        reply = self._inbox + b".api." + uuid.uuid4().hex[:8].encode()
        self._publish(subject, reply, payload)
        while True:
            data = await self._read()
            pos, size = 0, len(data)
            while pos < size:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    break
                if data.startswith(b"MSG ", pos) or data.startswith(b"HMSG ", pos):
                    args = data[pos:eol].split(b" ")
                    total = int(args[-1])
                    start = eol + 2
                    if start + total + 2 > size:
                        break
                    pos = start + total + 2
                    if args[1] == reply:
                        self._data = data[pos:]
                        found: dict[str, Any] = json.loads(
                            data[start + (int(args[-2]) if args[0] == b"HMSG" else 0) : start + total]
                        )
                        return found
                elif data.startswith(b"PING", pos):
                    self._publish_raw(b"PONG\r\n")
                    pos = eol + 2
                elif data.startswith(b"-ERR", pos):
                    raise ConnectionError(f"server error: {data[pos + 5 : eol].decode(errors='replace')}")
                else:
                    pos = eol + 2
            self._data = data[pos:]

    def _publish_raw(self, line: bytes) -> None:
        if self._writer is None:
            raise ConnectionError("not connected")
        self._writer.write(line)

    # --- the consumer ------------------------------------------------------------------------------------------------

    async def _start_consumer(self) -> None:
        config: dict[str, Any] = {
            "ack_policy": "none",
            "mem_storage": True,
            "num_replicas": 1,
            "inactive_threshold": int(max(30.0, 10 * self._heartbeat) * 1e9),
        }
        if len(self._subjects) == 1:
            config["filter_subject"] = self._subjects[0]
        elif self._subjects:
            config["filter_subjects"] = self._subjects
        if self.last or self._from_seq is not None:
            config["deliver_policy"] = "by_start_sequence"
            config["opt_start_seq"] = self.last + 1 if self.last else self._from_seq
        elif self._from_time is not None:
            config["deliver_policy"] = "by_start_time"
            config["opt_start_time"] = self._from_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
        else:
            config["deliver_policy"] = "all"
        body = json.dumps({"stream_name": self.stream, "config": config}).encode()
        info = await self._api(f"$JS.API.CONSUMER.CREATE.{self.stream}", body)
        if info.get("error"):
            raise Unsupported(f"creating a consumer on {self.stream}: {info['error'].get('description')}")
        self._consumer = info["name"].encode()
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{info['name']}"
        self._requested = 0
        self._consumer_seq = 0
        if int(info.get("num_pending") or 0) == 0:
            self._done = True  # nothing the filter matches from here (the end is never past the last stored)

    async def _delete_consumer(self) -> None:
        if self._consumer and self._writer is not None:
            name = self._consumer.decode()
            self._consumer = b""
            await asyncio.wait_for(self._api(f"$JS.API.CONSUMER.DELETE.{self.stream}.{name}", b""), self._heartbeat)

    def _pull(self) -> None:
        """Keeps two batches asked for ahead of the reader."""
        while self._requested < 2 * self._batch:
            request = {
                "batch": self._batch,
                "max_bytes": self._max_bytes,
                "expires": int(10 * self._heartbeat * 1e9),
                "idle_heartbeat": int(self._heartbeat * 1e9),
            }
            self._publish(self._next_subject, self._inbox + b".m", json.dumps(request).encode())
            self._requested += self._batch

    async def _start_again(self, why: str) -> None:
        self.restarts += 1
        for attempt in range(self._retries + 1):
            try:
                if self._writer is None:
                    await self._connect()
                else:
                    with contextlib.suppress(TimeoutError):
                        await self._delete_consumer()
                await self._start_consumer()
                return
            except (ConnectionError, OSError, TimeoutError) as exc:
                why = f"{why}; then {exc}"
                await self._close()
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        raise ReadInterrupted(f"reading {self.stream} stopped after sequence {self.last}: {why}")

    # --- reading -----------------------------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[list[RawMessage]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[RawMessage]]:
        while not self._done and self.last < self.end:
            try:
                self._pull()
                batch = await self._arrivals()
            except _StartAgain as exc:
                await self._start_again(str(exc))
                continue
            except (ConnectionError, OSError, TimeoutError) as exc:
                await self._close()
                await self._start_again(str(exc) or type(exc).__name__)
                continue
            if batch:
                self.last = batch[-1][0]
                yield batch

    async def _arrivals(self) -> list[RawMessage]:
        """The messages of one socket read (possibly none: only statuses). One loop cuts every frame out; nothing is
        made per message but its tuple."""
        data = await self._read()
        writer = self._writer
        assert writer is not None
        consumer, end, last = self._consumer, self.end, self.last
        consumer_seq = self._consumer_seq
        batch: list[RawMessage] = []
        append = batch.append
        pos, size = 0, len(data)
        try:
            while pos < size:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    break
                headers = data.startswith(b"HMSG ", pos)
                if headers or data.startswith(b"MSG ", pos):
                    args = data[pos:eol].split(b" ")  # [H]MSG <subject> <sid> [reply] [header length] <length>
                    total = int(args[-1])
                    start = eol + 2
                    stop = start + total
                    if stop + 2 > size:
                        break  # the rest of this frame is still on its way
                    pos = stop + 2
                    body = start + int(args[-2]) if headers else start
                    if len(args) == (6 if headers else 5):
                        reply = args[3]
                    else:  # no reply subject: a status from the server, or a late reply to the API
                        if headers:
                            self._status(data[start:body])
                        continue
                    ack = reply.split(b".")
                    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>, or with a domain and an
                    # account hash in front and a random token after (v2)
                    if len(ack) == 9:
                        name, sequence, cseq, nanos, pending = ack[3], ack[5], ack[6], ack[7], ack[8]
                    elif len(ack) >= 11:
                        name, sequence, cseq, nanos, pending = ack[5], ack[7], ack[8], ack[9], ack[10]
                    else:
                        continue  # not a stream message
                    if name != consumer:
                        continue  # from a consumer replaced since
                    self._requested -= 1
                    if int(cseq) != consumer_seq + 1:
                        raise _StartAgain(f"consumer sequence {int(cseq)} after {consumer_seq}: a message was lost")
                    consumer_seq += 1
                    seq = int(sequence)
                    if seq <= last:
                        continue
                    if seq > end:
                        self._done = True
                        break
                    block = data[start + 10 : body - 2] if headers else b""
                    append((seq, args[1].decode(), int(nanos), block, data[body:stop]))
                    if seq == end or pending == b"0":
                        self._done = True  # the end, or nothing more the filter matches up to it
                        break
                elif data.startswith(b"PING", pos):
                    writer.write(b"PONG\r\n")
                    pos = eol + 2
                elif data.startswith(b"-ERR", pos):
                    raise ConnectionError(f"server error: {data[pos + 5 : eol].decode(errors='replace')}")
                else:  # PONG, +OK, INFO: nothing to do
                    pos = eol + 2
        finally:
            self._consumer_seq = consumer_seq
            self._data = data[pos:]
        return batch

    def _status(self, block: bytes) -> None:
        status = block[9:12]
        if status == b"100":
            return  # idle heartbeat: the request is alive (the read that brought it proves it)
        if status in (b"404", b"408") or b"MaxBytes" in block or b"Batch Completed" in block:
            # the request ended unfilled (expired, or its byte budget spent): ask again for what it did not bring
            unfilled = _status_header(block, b"Nats-Pending-Messages")
            self._requested = max(0, self._requested - (unfilled if unfilled is not None else self._batch))
            return
        line = block[9 : block.find(b"\r\n", 9)].decode(errors="replace")
        raise _StartAgain(f"the server ended a pull request: {line}")
