"""Kubernetes Events (events.k8s.io/v1) about the objects a controller manages, as `kubectl describe` shows them.

As with client-go's recorder, an event that repeats (same object, type, reason and note) within `series_window` does
not make a new Event: the first one's `series` counts the repeats, so a WebApp that stays Degraded for an hour has
one Warning with a count, not hundreds. Writing happens in the background from a bounded queue: a slow or refusing
API server never holds a reconcile back, and events are dropped (with a log line) rather than memory growing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from ballast.kube.errors import ApiError, Forbidden, NotFound
from ballast.kube.pacing import pause
from ballast.kube.resource import EVENT
from ballast.kube.rest import KubeApi, micro_time, send_json

log = logging.getLogger(__name__)

EventKind = Literal["Normal", "Warning"]
NOTE_LIMIT = 1024  # the API server refuses longer notes


def _micro_time(at: float) -> str:
    return micro_time(datetime.fromtimestamp(at, UTC))


@dataclass(frozen=True)
class Regarding:
    """The object an event is about (an ObjectReference)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    def reference(self) -> dict[str, str]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
        }


@dataclass
class _Series:
    name: str
    count: int
    last_seen: float


@dataclass
class _Users:
    lock: asyncio.Lock
    count: int = 0


_Key = tuple[str, str, str, str]  # (uid, type, reason, note)


class EventRecorder:
    def __init__(
        self,
        api: KubeApi,
        *,
        controller: str,
        instance: str,
        series_window: float = 600.0,
        capacity: int = 10_000,
        writers: int = 8,
    ) -> None:
        self._api = api
        self.controller = controller
        self.instance = instance[:128]
        self._window = series_window
        self._queue: asyncio.Queue[tuple[Regarding, EventKind, str, str, str, float]] = asyncio.Queue(capacity)
        self._series: dict[_Key, _Series] = {}
        self._writers = writers
        self._locks: dict[str, _Users] = {}  # per object: its events are written in order
        self._swept = 0.0
        self.written = 0
        self.dropped = 0

    def record(self, regarding: Regarding, kind: EventKind, reason: str, action: str, note: str) -> None:
        """Queues one event; never blocks and never raises."""
        try:
            self._queue.put_nowait((regarding, kind, reason, action, note[:NOTE_LIMIT], time.time()))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event queue full; dropping %s %s for %s/%s", kind, reason, regarding.kind, regarding.name)

    async def run(self, stop: asyncio.Event) -> None:
        """Writes queued events until `stop`; what is queued by then is still written (bounded by the queue).
        Several writers keep up with a burst on a busy API server; events about one object stay in order."""
        async with asyncio.TaskGroup() as writers:
            for _ in range(self._writers):
                writers.create_task(self._writer(stop))

    async def _writer(self, stop: asyncio.Event) -> None:
        while not (stop.is_set() and self._queue.empty()):
            try:
                async with asyncio.timeout(0.5):
                    item = await self._queue.get()
            except TimeoutError:
                continue
            uid = item[0].uid
            users = self._locks.setdefault(uid, _Users(asyncio.Lock()))
            users.count += 1
            try:
                async with users.lock:
                    await self._write(*item)
                self.written += 1
            except Exception as exc:  # an event is worth a log line, never a crash or a retry storm
                if isinstance(exc, NotFound) or (isinstance(exc, Forbidden) and "terminat" in exc.message):
                    # The namespace is going or gone: so is the object the event was about.
                    log.debug("event %s for %s/%s not written: namespace going", item[2], item[0].kind, item[0].name)
                    continue
                what = str(exc) if isinstance(exc, ApiError) else repr(exc)
                log.warning("could not write event %s for %s/%s: %s", item[2], item[0].kind, item[0].name, what)
                await pause(stop, 0.1)
            finally:
                users.count -= 1
                if users.count == 0:
                    del self._locks[uid]

    async def _write(
        self, regarding: Regarding, kind: EventKind, reason: str, action: str, note: str, at: float
    ) -> None:
        self._forget_older_than(at - self._window)
        key = (regarding.uid, kind, reason, note)
        path = EVENT.collection(regarding.namespace)
        series = self._series.get(key)
        if series is not None and series.last_seen < at - self._window:
            series = None
        if series is not None:
            series.count += 1
            series.last_seen = at
            patch = {"series": {"count": series.count, "lastObservedTime": _micro_time(at)}}
            try:
                await send_json(
                    self._api,
                    "PATCH",
                    f"{path}/{series.name}",
                    headers={"Content-Type": "application/merge-patch+json"},
                    body=patch,
                )
                return
            except NotFound:
                pass  # expired (events live an hour by default): start a new one
        name = f"{regarding.name}.{secrets.token_hex(8)}"
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": regarding.namespace},
            "eventTime": _micro_time(at),
            "reportingController": self.controller,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "regarding": regarding.reference(),
            "note": note,
            "type": kind,
        }
        await send_json(self._api, "POST", path, body=body)
        self._series[key] = _Series(name, 1, at)

    def _forget_older_than(self, horizon: float) -> None:
        # A series past the window starts over; sweeping at most once per window keeps this O(1) per event.
        if horizon < self._swept:
            return
        self._swept = horizon + self._window
        for key in [k for k, s in self._series.items() if s.last_seen < horizon]:
            del self._series[key]
