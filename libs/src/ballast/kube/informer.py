"""List-then-watch for one resource path, kept as a local cache, as client-go's informers do.

- Starts with a list (the cache and a resourceVersion), then watches from that version with bookmarks, so a
  reconnect resumes where it left off instead of replaying or missing changes.
- A watch that ends (the server's timeout) or goes silent longer than `silence_timeout` is resumed from the last
  version seen; 410 Gone (the version was compacted away), or a watch refused with 429 (the kind's watch cache still
  initializing: lists are answered meanwhile), means relist, and the relist's difference to the cache is
  reported as events, so nothing deleted during the gap is missed. An object created and deleted within the gap is in
  neither list nor watch: `on_relist` tells whoever wrote such objects to look at their own records (a controller
  that created a child the cache never saw, say).
- Objects stay plain JSON dicts: decoding thousands of objects into client models costs more than it brings.
  orjson decodes them and shares one string object per distinct key across all of them (its key cache), which is
  most of the memory json.loads would spend on a cache of thousands of objects.
- `transform` trims each object before it is cached and handed on, as client-go's SetTransform does: a cache of
  thousands of objects is mostly managedFields nobody reads (`strip_managed_fields`).
- Handlers are called `(event, new, old)` — `old` is the cached object the event replaces (None for an addition) —
  so predicates can compare; any number subscribe (`subscribe`), the controllers that watch the same kind share one
  cache and one watch.
- Named indexes (`add_index` / `by_index`), as client-go's Indexers: the objects of one owner are found without a
  scan of the cache, which would cost O(objects) per lookup and O(objects²) across a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Literal

import orjson

from ballast.kube.errors import ApiError, Gone
from ballast.kube.pacing import pause
from ballast.kube.resource import Resource
from ballast.kube.rest import KubeApi, send, send_json

log = logging.getLogger(__name__)

WatchEvent = Literal["ADDED", "MODIFIED", "DELETED"]
ObjectKey = tuple[str, str]  # (namespace or "", name)
WatchHandler = Callable[[WatchEvent, dict[str, Any], dict[str, Any] | None], None]  # (event, new, old)
Transform = Callable[[dict[str, Any]], dict[str, Any]]
IndexFunc = Callable[[dict[str, Any]], Iterable[Hashable]]


def strip_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


def object_key(obj: dict[str, Any]) -> ObjectKey:
    metadata = obj["metadata"]
    return metadata.get("namespace", ""), metadata["name"]


class _Index:
    def __init__(self, values_of: IndexFunc) -> None:
        self.values_of = values_of
        self.objects: dict[Hashable, dict[ObjectKey, dict[str, Any]]] = {}
        self.values: dict[ObjectKey, tuple[Hashable, ...]] = {}

    def put(self, key: ObjectKey, obj: dict[str, Any]) -> None:
        self.remove(key)
        values = tuple(self.values_of(obj))
        if values:
            self.values[key] = values
            for value in values:
                self.objects.setdefault(value, {})[key] = obj

    def remove(self, key: ObjectKey) -> None:
        for value in self.values.pop(key, ()):
            objects = self.objects[value]
            del objects[key]
            if not objects:
                del self.objects[value]


class Informer:
    """A cache of one resource (across namespaces, or in one), kept by list-then-watch, that tells its
    subscribers what changed."""

    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Transform = strip_managed_fields,
        watch_timeout: int = 300,
        silence_timeout: float = 90.0,
    ) -> None:
        self._api = api
        self.resource = resource
        self.path = resource.collection(namespace)
        self._handlers: list[WatchHandler] = []
        self._relist_handlers: list[Callable[[], None]] = []
        self._listed = False
        self._selectors = [
            (k, v) for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v
        ]
        self._transform = transform
        self._watch_timeout = watch_timeout
        self._silence = silence_timeout
        self.store: dict[ObjectKey, dict[str, Any]] = {}
        self._indexes: dict[str, _Index] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0
        self.resumes = 0

    def subscribe(self, handler: WatchHandler) -> None:
        """`handler(event, new, old)` for every change from now on, the initial list included."""
        self._handlers.append(handler)

    def on_relist(self, handler: Callable[[], None]) -> None:
        """`handler()` after every relist that follows a gap in watching (410 Gone, a failed watch or list), once
        the cache holds the fresh list and its differences have been told."""
        self._relist_handlers.append(handler)

    def add_index(self, name: str, values_of: IndexFunc) -> None:
        """Index the cache by what `values_of(obj)` gives (none, one or more values per object)."""
        if name in self._indexes:
            raise ValueError(f"index {name!r} of {self.resource.kind} declared twice")
        index = self._indexes[name] = _Index(values_of)
        for key, obj in self.store.items():
            index.put(key, obj)

    def by_index(self, name: str, value: Hashable) -> list[dict[str, Any]]:
        """The cached objects whose index `name` gives `value`."""
        return list(self._indexes[name].objects.get(value, {}).values())

    def _put(self, key: ObjectKey, obj: dict[str, Any]) -> dict[str, Any] | None:
        old = self.store.get(key)
        self.store[key] = obj
        for index in self._indexes.values():
            index.put(key, obj)
        return old

    def _remove(self, key: ObjectKey) -> dict[str, Any] | None:
        old = self.store.pop(key, None)
        for index in self._indexes.values():
            index.remove(key)
        return old

    def _tell(self, event: WatchEvent, new: dict[str, Any], old: dict[str, Any] | None) -> None:
        for handler in self._handlers:
            handler(event, new, old)

    async def run(self, stop: asyncio.Event) -> None:
        retry = 0.2
        while not stop.is_set():
            try:
                await self._list()
                self.synced.set()
                retry = 0.2
                while not stop.is_set():
                    try:
                        await self._watch_until(stop)
                    except ApiError as exc:
                        if exc.status != 429:
                            raise
                        # Busy, or the kind's watch cache (re)initializing (a CRD just installed). Watches are
                        # refused for as long as that lasts, which on a loaded machine was more than 30 s, while
                        # lists are answered (from etcd): so relist, after the server's Retry-After (1 s then, as
                        # client-go honours it), and the cache keeps up — what changed meanwhile, deletions
                        # included, is told by the relist's difference and `on_relist`.
                        wait = min(exc.retry_after or 1.0, 10.0)
                        log.info("watch of %s refused with HTTP 429; relisting in %.1fs", self.path, wait)
                        await pause(stop, wait)
                        self.relists += 1
                        break
                    retry = 0.2
                    self.resumes += 1
            except Gone:
                log.info("watch of %s expired (410 Gone): relisting", self.path)
                self.relists += 1
            except (OSError, TimeoutError, json.JSONDecodeError) as exc:
                if stop.is_set():
                    return
                log.warning("watch of %s failed (%s); relisting in %.1fs", self.path, exc, retry)
                await pause(stop, retry)  # backing off from a failing API server
                retry = min(retry * 2, 10.0)
            except ApiError as exc:
                if stop.is_set():
                    return
                wait = min(exc.retry_after or retry, 10.0)  # a list refused with 429 says when to come back
                log.warning("watch of %s failed with HTTP %s; relisting in %.1fs", self.path, exc.status, wait)
                await pause(stop, wait)
                retry = min(retry * 2, 10.0)

    def _query(self, **extra: str) -> list[tuple[str, str]]:
        return [*extra.items(), *self._selectors]

    async def _list(self) -> None:
        body = await send_json(self._api, "GET", self.path, query=self._query(), timeout=60)
        after_gap = self._listed  # a list before this one: we were watching, then were not
        fresh = {object_key(item): self._transform(item) for item in body.get("items", [])}
        self.resource_version = body["metadata"]["resourceVersion"]
        # A relist reports what changed while we were not watching, the deletions included.
        for key in [key for key in self.store if key not in fresh]:
            old = self._remove(key)
            assert old is not None
            self._tell("DELETED", old, old)
        for key, obj in fresh.items():
            old = self._put(key, obj)
            if old is None:
                self._tell("ADDED", obj, None)
            elif old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._tell("MODIFIED", obj, old)
        self._listed = True
        if after_gap:
            for handler in self._relist_handlers:
                handler()

    async def _watch_until(self, stop: asyncio.Event) -> None:
        query = self._query(
            watch="true",
            resourceVersion=self.resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(self._watch_timeout),
        )
        response = await send(self._api, "GET", self.path, query=query, timeout=None)
        # One task per watch connection, not per line: a busy operator reads thousands of lines a second.
        reading = asyncio.ensure_future(self._read(response))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({reading, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not reading.done():
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
            response.release()
        if not reading.cancelled():
            reading.result()  # Gone, a watch error, a line that does not parse: run() decides

    async def _read(self, response: Any) -> None:
        """Dispatches the watch's lines until the server ends it (its timeoutSeconds) or it is silent too long."""
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        try:
            async with asyncio.timeout(self._silence) as silence:
                async for line in response.content:
                    now = loop.time()
                    if now - renewed > 1.0:  # moving the deadline once a second is enough, and cheaper per line
                        silence.reschedule(now + self._silence)
                        renewed = now
                    if line.strip():
                        self._dispatch(orjson.loads(line))
        except TimeoutError:
            if not silence.expired():
                raise  # the connection's own timeout, not silence
            log.info("watch of %s silent for %.0fs: reconnecting", self.path, self._silence)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object", {})
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(410, "Expired", obj.get("message", ""), obj)
            raise OSError(f"watch error: {obj.get('message', obj)}")
        version = obj.get("metadata", {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        obj = self._transform(obj)
        key = object_key(obj)
        if kind == "DELETED":
            self._tell("DELETED", obj, self._remove(key))
        elif kind in ("ADDED", "MODIFIED"):
            old = self._put(key, obj)
            self._tell("MODIFIED" if old is not None else "ADDED", obj, old)
