"""Typed key-value state on JetStream: one pydantic model per bucket, compare-and-set on each key's revision.

Every write returns the key's new revision; `update` and `delete` given a revision succeed only if the key is still
at it, so two replicas (or a replica and its own stale copy) cannot overwrite each other's state unseen. Losing that
race raises a `KvConflict`; the caller reads again and decides. Values are the model's JSON; a stored value that no
longer validates raises `StoredValueError` naming bucket, key and revision instead of handing back half a state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Self, TypeVar

import nats.js.errors
import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.client import KV_STREAM_TEMPLATE
from nats.js.kv import KV_DEL, KV_PURGE, VALID_KEY_RE
from nats.js.kv import KeyValue as NatsKeyValue
from pydantic import BaseModel, ValidationError

from ballast.events.catalogue import BucketSpec

M = TypeVar("M", bound=BaseModel)

EXPECTED_LAST_SUBJECT_SEQUENCE = Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value
WRONG_LAST_SEQUENCE = (10071, 10164)  # the server's codes for "the subject is not at the expected sequence"


class KvConflict(Exception):
    """A write lost a compare-and-set: `key` was not at revision `expected` (0: absent) but at `current`
    (None: absent or deleted, or not known)."""

    def __init__(self, bucket: str, key: str, expected: int, current: int | None, message: str) -> None:
        super().__init__(message)
        self.bucket = bucket
        self.key = key
        self.expected = expected
        self.current = current


class KeyExists(KvConflict):
    """`create` found the key already there."""


class RevisionConflict(KvConflict):
    """`update` or `delete` found the key at another revision than the caller read."""


class StoredValueError(Exception):
    """A stored value does not validate against the bucket's model (written by another version, or by hand)."""

    def __init__(self, bucket: str, key: str, revision: int, detail: str) -> None:
        super().__init__(f"bucket {bucket!r}, key {key!r}, revision {revision}: stored value is invalid: {detail}")
        self.bucket = bucket
        self.key = key
        self.revision = revision


@dataclass(frozen=True)
class Entry(Generic[M]):
    """One revision of a key; `value` is None when that revision deleted it."""

    key: str
    revision: int
    value: M | None


@dataclass(frozen=True)
class CaughtUp:
    """Yielded once by a watch after the values stored when it started: state rebuilt from them is current."""


CAUGHT_UP = CaughtUp()


class KeyValue(Generic[M]):
    """One bucket whose values are `model`s. Get one with `Bus.kv(spec, model)`."""

    def __init__(self, store: NatsKeyValue, spec: BucketSpec, model: type[M]) -> None:
        self._store = store
        self.spec = spec
        self.model = model
        # While a watch of the bucket runs here, the last value written here to each key, as bytes and (frozen) model:
        # a writer that watches its own bucket gets its writes back without decoding them again.
        self._watches = 0
        self._written: dict[str, tuple[bytes, M]] = {}

    @property
    def bucket(self) -> str:
        return self.spec.name

    async def get(self, key: str) -> Entry[M] | None:
        """The key's current entry, or None if it was never written or is deleted."""
        self._check(key)
        try:
            found = await self._store.get(key)
        except nats.js.errors.KeyNotFoundError:  # also raised for a deleted key
            return None
        return self._entry(key, found.revision, found.value, None)

    async def create(self, key: str, value: M) -> int:
        """Writes `key` only if it is absent (or deleted); returns its revision or raises `KeyExists`."""
        self._check(key)
        try:
            revision: int = await self._store.create(key, self._encode(value, key))
        except nats.js.errors.KeyWrongLastSequenceError:
            current = await self._revision(key)
            raise KeyExists(
                self.bucket, key, 0, current, f"bucket {self.bucket!r}: key {key!r} exists (revision {current})"
            ) from None
        return revision

    async def update(self, key: str, value: M, revision: int) -> int:
        """Writes `key` only if it is still at `revision`; returns the new revision or raises `RevisionConflict`."""
        self._check(key)
        try:
            new_revision: int = await self._store.update(key, self._encode(value, key), last=revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            raise await self._conflict(key, revision) from None
        return new_revision

    async def update_all(self, writes: Sequence[tuple[str, M, int]], timeout: float = 10.0) -> list[int | KvConflict]:
        """Many compare-and-set writes at once, (key, value, revision) each (revision 0: create), sent together and
        acknowledged as they come rather than one round trip after another. Each write gets its new revision, or the
        `KvConflict` it lost (its `current` is not read: None); one not acknowledged within `timeout` counts as lost
        too (it may have been stored: the caller reads again either way). A key deleted before has a tombstone:
        creating it here conflicts; name the deletion's revision (`get_all` gives it), or use `create`."""
        if not writes:
            return []
        for key, _, _ in writes:
            self._check(key)
        replies = await self._requests(
            [
                (f"{self._store._pre}{key}", self._encode(value, key), {EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision)})
                for key, value, revision in writes
            ],
            timeout,
        )
        return [self._outcome(key, revision, reply) for (key, _, revision), reply in zip(writes, replies, strict=True)]

    async def get_all(self, keys: Sequence[str], timeout: float = 10.0) -> list[Entry[M] | None]:
        """The keys' current entries, read at once: the direct gets sent together and answered as they come, rather
        than one round trip (and nats-py's request machinery) after another. None for a key never written; for a
        deleted key, unlike `get`, its deletion (value None) with its revision, which a compare-and-set write after
        it names (`update_all` cannot create over a deletion). A key not answered within `timeout` raises
        TimeoutError."""
        if not keys:
            return []
        for key in keys:
            self._check(key)
        get = f"{self._store._js._prefix}.DIRECT.GET.{self._store._stream}.{self._store._pre}"
        replies = await self._requests([(f"{get}{key}", b"", None) for key in keys], timeout)
        return [self._read(key, reply) for key, reply in zip(keys, replies, strict=True)]

    def _read(self, key: str, reply: asyncio.Future[Msg]) -> Entry[M] | None:
        if not reply.done():
            raise TimeoutError(f"bucket {self.bucket!r}: reading {key!r}: no answer")
        msg = reply.result()
        headers = msg.headers or {}
        status = headers.get("Status")
        if status == "404":
            return None
        if status is not None:
            raise nats.js.errors.APIError(code=int(status), description=headers.get("Description", ""))
        revision = int(headers["Nats-Sequence"])
        if headers.get("KV-Operation") in (KV_DEL, KV_PURGE):
            return Entry(key, revision, None)
        return Entry(key, revision, self._decode(key, revision, msg.data))

    async def _requests(
        self, requests: Sequence[tuple[str, bytes, dict[str, str] | None]], timeout: float
    ) -> list[asyncio.Future[Msg]]:
        """Sends (subject, payload, headers) requests at once, with one reply subscription; their replies, each done
        once it came within `timeout` (a request not answered by then is left not done)."""
        # Our own replies, not nats-py's request or publish_async: a request each costs its own future, inbox token
        # and timeout task (a write of a 1 kB value took 71 µs of CPU that way, 41 here), and publish_async never
        # resolves a future when the server refuses a write (it raises in its reply handler), while a lost
        # compare-and-set is an expected answer here.
        nc = self._store._js._nc
        inbox = nc.new_inbox()
        loop = asyncio.get_running_loop()
        replies: list[asyncio.Future[Msg]] = [loop.create_future() for _ in requests]

        async def on_reply(msg: Msg) -> None:
            index = int(msg.subject.rsplit(".", 1)[1])
            if not replies[index].done():
                replies[index].set_result(msg)

        subscription = await nc.subscribe(f"{inbox}.*", cb=on_reply)
        try:
            for index, (subject, payload, headers) in enumerate(requests):
                await nc.publish(subject, payload, reply=f"{inbox}.{index}", headers=headers)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    for reply in replies:
                        await reply
        finally:
            await subscription.unsubscribe()
        return replies

    def _outcome(self, key: str, revision: int, reply: asyncio.Future[Msg]) -> int | KvConflict:
        if not reply.done():
            return RevisionConflict(self.bucket, key, revision, None, f"bucket {self.bucket!r}: {key!r}: no answer")
        msg = reply.result()
        if not msg.data:  # a status without a body: no stream listens on the subject
            status = (msg.headers or {}).get("Status", "")
            raise nats.js.errors.NoStreamResponseError(description=f"bucket {self.bucket!r}: status {status}")
        answer = orjson.loads(msg.data)
        error = answer.get("error")
        if error is None:
            sequence: int = answer["seq"]
            return sequence
        if error.get("err_code") in WRONG_LAST_SEQUENCE:
            conflict = KeyExists if revision == 0 else RevisionConflict
            return conflict(self.bucket, key, revision, None, f"bucket {self.bucket!r}: {key!r} not at {revision}")
        raise nats.js.errors.APIError(**error)

    async def put(self, key: str, value: M) -> int:
        """Writes `key` whatever its revision (last writer wins); returns the new revision."""
        self._check(key)
        put_revision: int = await self._store.put(key, self._encode(value, key))
        return put_revision

    async def delete(self, key: str, revision: int | None = None) -> None:
        """Deletes `key` (its history stays until the bucket's limits drop it); with `revision`, only if still at it."""
        self._check(key)
        self._written.pop(key, None)
        try:
            await self._store.delete(key, last=revision)
        except nats.js.errors.APIError as exc:  # nats-py passes the server's refusal on untranslated
            if revision is not None and exc.err_code in WRONG_LAST_SEQUENCE:
                raise await self._conflict(key, revision) from None
            raise

    async def history(self, key: str) -> list[Entry[M]]:
        """Every revision of `key` the bucket still holds, oldest first; deletions have value None."""
        self._check(key)
        try:
            found = await self._store.history(key)
        except nats.js.errors.NoKeysError:
            return []
        return [self._entry(e.key, e.revision, e.value, e.operation) for e in found if e.revision is not None]

    def watch(self, keys: str = ">") -> Watch[M]:
        """Current values of the keys matching `keys` (wildcards as in subjects), then `CAUGHT_UP`, then every change
        as it happens; use as `async with kv.watch() as changes: async for change in changes: ...`. A value written
        through this object while it watches comes back as the model written (the same object when the model is
        frozen), not decoded again."""
        return Watch(self, keys)

    def _check(self, key: str) -> None:
        if not _valid_key(key):
            raise ValueError(
                f"bucket {self.bucket!r}: {key!r} is not a valid key "
                "(letters, digits and - / _ = . only; not starting or ending with a dot)"
            )

    def _encode(self, value: M, key: str) -> bytes:
        if not isinstance(value, self.model):
            raise TypeError(f"bucket {self.bucket!r} holds {self.model.__name__}, not {type(value).__name__}")
        data = value.__pydantic_serializer__.to_json(value)  # the bytes model_dump_json decodes to a str
        if self._watches and value.model_config.get("frozen"):
            self._written[key] = (data, value)
        return data

    def _entry(self, key: str, revision: int | None, data: bytes | None, operation: str | None) -> Entry[M]:
        assert revision is not None  # entries read from the stream always carry their sequence
        if operation in (KV_DEL, KV_PURGE):
            return Entry(key, revision, None)
        return Entry(key, revision, self._decode(key, revision, data))

    def _watched(self, key: str, revision: int | None, data: bytes | None, operation: str | None) -> Entry[M]:
        """A watch's entry: the model written here if these are its bytes (written by this object, or the same
        value by another writer), else decoded."""
        written = self._written.get(key)
        if written is not None and operation not in (KV_DEL, KV_PURGE) and written[0] == data:
            del self._written[key]
            assert revision is not None
            return Entry(key, revision, written[1])
        return self._entry(key, revision, data, operation)

    def _decode(self, key: str, revision: int, data: bytes | None) -> M:
        try:
            return self.model.model_validate_json(data or b"")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
            )
            raise StoredValueError(self.bucket, key, revision, f"not a {self.model.__name__}: {problems}") from None

    async def _revision(self, key: str) -> int | None:
        try:
            found = await self._store.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return found.revision

    async def _conflict(self, key: str, expected: int) -> RevisionConflict:
        current = await self._revision(key)
        return RevisionConflict(
            self.bucket,
            key,
            expected,
            current,
            f"bucket {self.bucket!r}: key {key!r} is at revision {current if current is not None else 'none (deleted)'}"
            f", not {expected}",
        )


class Watch(Generic[M]):
    """A running watch of a bucket; ends when its `async with` block does."""

    def __init__(self, kv: KeyValue[M], keys: str) -> None:
        self._kv = kv
        self._keys = keys
        self._watcher: NatsKeyValue.KeyWatcher | None = None

    async def __aenter__(self) -> Self:
        # nats-py runs the watch on an ordered consumer that re-creates itself after missed heartbeats.
        self._watcher = await self._kv._store.watch(self._keys)
        self._kv._watches += 1
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._watcher is not None:
            self._kv._watches -= 1
            if not self._kv._watches:
                self._kv._written.clear()
            await self._watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves it unannotated

    def __aiter__(self) -> AsyncIterator[Entry[M] | CaughtUp]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[Entry[M] | CaughtUp]:
        if self._watcher is None:
            raise RuntimeError("use the watch as `async with kv.watch(...) as changes`")
        async for update in self._watcher:
            if update is None:  # nats-py's marker: the values stored at the start have all been delivered
                yield CAUGHT_UP
                continue
            yield self._kv._watched(update.key, update.revision, update.value, update.operation)


def _valid_key(key: str) -> bool:
    return VALID_KEY_RE.match(key) is not None and key[0] != "." and key[-1] != "."


async def open_bucket(js: JetStreamContext, spec: BucketSpec, model: type[M]) -> KeyValue[M]:
    try:
        store = await js.key_value(spec.name)
    except nats.js.errors.BucketNotFoundError:
        raise LookupError(
            f"key-value bucket {spec.name!r} (stream {KV_STREAM_TEMPLATE.format(bucket=spec.name)}) does not exist: "
            "Bus.ensure_buckets() creates the catalogue's buckets"
        ) from None
    return KeyValue(store, spec, model)
