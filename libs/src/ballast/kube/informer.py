"""List-then-watch for one resource path, kept as a local cache, as client-go's informers do.

- Starts with a list (the cache and a resourceVersion), then watches from that version with bookmarks, so a
  reconnect resumes where it left off instead of replaying or missing changes.
- A watch that ends (the server's timeout) or goes silent longer than `silence_timeout` is resumed from the last
  version seen; 410 Gone (the version was compacted away) means relist, and the relist's difference to the cache is
  reported as events, so nothing deleted during the gap is missed.
- Objects stay plain JSON dicts: decoding thousands of objects into client models costs more than it brings.
  orjson decodes them and shares one string object per distinct key across all of them (its key cache), which is
  most of the memory json.loads would spend on a cache of thousands of objects.
- `transform` trims each object before it is cached and handed on, as client-go's SetTransform does: a cache of
  thousands of objects is mostly managedFields nobody reads (`strip_managed_fields`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Literal

import orjson

from ballast.kube.pacing import pause
from ballast.kube.rest import send, send_json

log = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Key = tuple[str, str]  # (namespace or "", name)
Handler = Callable[[EventType, dict[str, Any]], None]
Transform = Callable[[dict[str, Any]], dict[str, Any]]


def strip_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


def object_key(obj: dict[str, Any]) -> Key:
    metadata = obj["metadata"]
    return metadata.get("namespace", ""), metadata["name"]


class Gone(Exception):
    """The resourceVersion we would resume from is no longer available: relist."""


class Informer:
    def __init__(
        self,
        api: Any,  # kubernetes_asyncio ApiClient
        path: str,  # e.g. /apis/apps/v1/deployments or /api/v1/namespaces/shop/configmaps
        on_event: Handler,
        *,
        label_selector: str | None = None,
        transform: Transform = strip_managed_fields,
        watch_timeout: int = 300,
        silence_timeout: float = 90.0,
    ) -> None:
        self._api = api
        self.path = path
        self._on_event = on_event
        self._selector = label_selector
        self._transform = transform
        self._watch_timeout = watch_timeout
        self._silence = silence_timeout
        self.store: dict[Key, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0
        self.resumes = 0

    async def run(self, stop: asyncio.Event) -> None:
        retry = 0.2
        while not stop.is_set():
            try:
                await self._list()
                self.synced.set()
                retry = 0.2
                while not stop.is_set():
                    await self._watch_until(stop)
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
            except Exception as exc:
                status = getattr(exc, "status", None)
                if status is None or stop.is_set():
                    raise
                log.warning("watch of %s failed with HTTP %s; relisting in %.1fs", self.path, status, retry)
                await pause(stop, retry)
                retry = min(retry * 2, 10.0)

    def _query(self, **extra: str) -> list[tuple[str, str]]:
        query = [(k, v) for k, v in extra.items()]
        if self._selector:
            query.append(("labelSelector", self._selector))
        return query

    async def _list(self) -> None:
        body = await send_json(self._api, "GET", self.path, query=self._query(), timeout=60)
        fresh = {object_key(item): self._transform(item) for item in body.get("items", [])}
        previous, self.store = self.store, fresh
        self.resource_version = body["metadata"]["resourceVersion"]
        # A relist reports what changed while we were not watching, the deletions included.
        for key, obj in fresh.items():
            old = previous.get(key)
            if old is None:
                self._on_event("ADDED", obj)
            elif old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._on_event("MODIFIED", obj)
        for key, obj in previous.items():
            if key not in fresh:
                self._on_event("DELETED", obj)

    async def _watch_until(self, stop: asyncio.Event) -> None:
        query = self._query(
            watch="true",
            resourceVersion=self.resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(self._watch_timeout),
        )
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            response = await send(self._api, "GET", self.path, query=query, timeout=None)
        except ApiException as exc:
            if exc.status == 410:
                raise Gone from exc
            raise
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
                raise Gone
            raise OSError(f"watch error: {obj.get('message', obj)}")
        version = obj.get("metadata", {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        obj = self._transform(obj)
        key = object_key(obj)
        if kind == "DELETED":
            self.store.pop(key, None)
            self._on_event("DELETED", obj)
        elif kind in ("ADDED", "MODIFIED"):
            self.store[key] = obj
            self._on_event(kind, obj)
