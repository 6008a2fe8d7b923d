"""Kubernetes Events (events.k8s.io/v1) about the objects a controller manages, as `kubectl describe` shows them.

As with client-go's recorder, an event that repeats (same object, type, reason and note) within `series_window` does
not make a new Event: the first one's `series` counts the repeats, so a WebApp that stays Degraded for an hour has
one Warning with a count, not hundreds. Writing happens in the background from a bounded outbox: a slow or refusing
API server never holds a reconcile back, and events are dropped (counted, with a log line) rather than memory growing.
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
from ballast.runtime.outbox import Outbox

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


@dataclass(frozen=True)
class _Recorded:
    regarding: Regarding
    kind: EventKind
    reason: str
    action: str
    note: str
    at: float


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
        self._outbox: Outbox[_Recorded] = Outbox(
            "kubernetes-events", self._write_batch, capacity=capacity, max_batch=256
        )
        self._series: dict[_Key, _Series] = {}
        self._writers = writers
        self._stop = asyncio.Event()  # run()'s, so that pacing after a failed write ends with the run
        self._swept = 0.0
        self.written = 0

    @property
    def dropped(self) -> int:
        return self._outbox.dropped

    def record(self, regarding: Regarding, kind: EventKind, reason: str, action: str, note: str) -> None:
        """Queues one event; never blocks and never raises."""
        self._outbox.offer(_Recorded(regarding, kind, reason, action, note[:NOTE_LIMIT], time.time()))

    async def run(self, stop: asyncio.Event) -> None:
        """Writes queued events until `stop`; what is queued by then is still written (bounded by the outbox)."""
        self._stop = stop
        await self._outbox.run(stop)

    async def _write_batch(self, batch: list[_Recorded]) -> None:
        """Several writers keep up with a burst on a busy API server; events about one object stay in order."""
        by_object: dict[str, list[_Recorded]] = {}
        for event in batch:
            by_object.setdefault(event.regarding.uid, []).append(event)
        writers = asyncio.Semaphore(self._writers)
        async with asyncio.TaskGroup() as tasks:
            for events in by_object.values():
                tasks.create_task(self._write_in_order(events, writers))

    async def _write_in_order(self, events: list[_Recorded], writers: asyncio.Semaphore) -> None:
        async with writers:
            for event in events:
                try:
                    await self._write(event.regarding, event.kind, event.reason, event.action, event.note, event.at)
                    self.written += 1
                except Exception as exc:  # an event is worth a log line, never a crash or a retry storm
                    regarding = event.regarding
                    if isinstance(exc, NotFound) or (isinstance(exc, Forbidden) and "terminat" in exc.message):
                        # The namespace is going or gone: so is the object the event was about.
                        log.debug(
                            "event %s for %s/%s not written: namespace going",
                            event.reason,
                            regarding.kind,
                            regarding.name,
                        )
                        continue
                    what = str(exc) if isinstance(exc, ApiError) else repr(exc)
                    log.warning(
                        "could not write event %s for %s/%s: %s", event.reason, regarding.kind, regarding.name, what
                    )
                    await pause(self._stop, 0.1)

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
