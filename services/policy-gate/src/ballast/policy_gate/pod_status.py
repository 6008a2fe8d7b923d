"""Each gate replica's entry in `status.byPod` of the ConstraintTemplates and constraints, as Gatekeeper keeps one
per pod: a replica writes its own entry (what it loaded, with which errors) and keeps the others' entries of replicas
still alive; the leader drops, now and then, the entries of replicas gone.

Gatekeeper writes a status object per pod, owned by the pod, and aggregates them into `byPod`; the pod's deletion
takes its status with it. Here the list is written in place, read and written back with the object's
`resourceVersion` (a conflict is read again), and which replicas are alive is what their heartbeats in the
`policy-gate` bucket say (`replica.<cluster>.<id>`, every HEARTBEAT_INTERVAL): a replica silent for longer than
OUTAGE_AFTER is gone. Until a replica has read the heartbeats once, and while its own last heartbeat it has read is
older than that (its view lags), it keeps every entry. A replica whose entry went missing writes it again
(`ClusterPolicies` looks every STATUS_REPAIR_INTERVAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ballast.bus.kv import CaughtUp, KeyValue, KvConflict
from ballast.kube import Conflict, KubeApi, NotFound
from ballast.kube.pacing import pause
from ballast.kube.rest import send_json
from ballast.policy_gate.audit import OUTAGE_AFTER, Alive, replica_key

log = logging.getLogger(__name__)

# A replica's heartbeat key older than this is deleted (its replica long gone: a pod name is not used again).
FORGET_AFTER = timedelta(hours=1)
WRITE_ATTEMPTS = 5

Live = Callable[[], Collection[str] | None]  # the replicas alive now; None: not known yet (keep every entry)


def merged_by_pod(
    current: Any, mine: Mapping[str, Any] | None, me: str, live: Collection[str] | None
) -> list[dict[str, Any]]:
    """`byPod` with this replica's entry `mine` in place of the one it had (None: the one it had, if any), without
    the entries of replicas not alive (all kept while `live` is None), in the order of their ids."""
    entries = [dict(entry) for entry in (current if isinstance(current, list) else []) if isinstance(entry, Mapping)]

    def stays(entry: dict[str, Any]) -> bool:
        if entry.get("id") == me:
            return mine is None
        return live is None or entry.get("id") in live

    kept = [entry for entry in entries if stays(entry)]
    if mine is not None:
        kept.append(dict(mine))
    return sorted(kept, key=lambda entry: str(entry.get("id")))


def has_gone(current: Any, me: str, live: Collection[str] | None) -> bool:
    """Whether `byPod` holds an entry of a replica not alive (never while `live` is None)."""
    if live is None or not isinstance(current, list):
        return False
    return any(isinstance(e, Mapping) and e.get("id") != me and e.get("id") not in live for e in current)


async def write_by_pod(
    api: KubeApi, path: str, me: str, mine: Mapping[str, Any] | None, live: Collection[str] | None, **status: Any
) -> bool:
    """Writes `byPod` (see `merged_by_pod`) and the other `status` fields given to the object at `path` (read there,
    written to its status subresource); False if the object is gone. A write another made first is read again."""
    for _ in range(WRITE_ATTEMPTS):
        try:
            current = await send_json(api, "GET", path)
        except NotFound:
            return False
        by_pod = merged_by_pod((current.get("status") or {}).get("byPod"), mine, me, live)
        version = (current.get("metadata") or {}).get("resourceVersion")
        body = {"metadata": {"resourceVersion": version}, "status": {**status, "byPod": by_pod}}
        headers = {"Content-Type": "application/merge-patch+json"}
        try:
            await send_json(api, "PATCH", f"{path}/status", headers=headers, body=body)
        except NotFound:
            return False
        except Conflict:
            continue  # written meanwhile (another replica's entry, the audit): read it again
        return True
    raise Conflict(409, "Conflict", f"{path}: written by others {WRITE_ATTEMPTS} times while writing byPod")


class Replicas:
    """The gate replicas alive, from their heartbeats in the bucket (followed from the start)."""

    def __init__(self, kv: KeyValue[Alive], cluster: str, me: str) -> None:
        self._kv = kv
        self._prefix = replica_key(cluster, "")
        self._me = me
        # heartbeat key -> (the replica, its last heartbeat, the key's revision)
        self._seen: dict[str, tuple[str, datetime, int]] = {}
        self.caught_up = asyncio.Event()

    async def follow(self, stop: asyncio.Event) -> None:
        """Follows the heartbeats until `stop` (then at once, changes or not); NATS away: follows again."""
        while not stop.is_set():
            watching = asyncio.create_task(self._watch())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({watching, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (watching, stopping):
                task.cancel()
            await asyncio.wait({watching, stopping})
            if not watching.cancelled() and watching.exception() is not None:
                log.warning("following the gate replicas' heartbeats failed: %s", watching.exception())
                await pause(stop, 1.0)

    async def _watch(self) -> None:
        async with self._kv.watch(f"{self._prefix}>") as changes:
            async for change in changes:
                if isinstance(change, CaughtUp):
                    self.caught_up.set()
                elif change.value is None:
                    self._seen.pop(change.key, None)
                else:
                    self._seen[change.key] = (change.value.gate, change.value.at, change.revision)

    def live(self, now: datetime | None = None) -> Collection[str] | None:
        """The replicas heard from within OUTAGE_AFTER; None (not known) until the heartbeats were read once, and
        while this replica's own last heartbeat seen is older than that: then it is the view that lags (NATS away,
        the watch behind), not the others that are gone."""
        if not self.caught_up.is_set():
            return None
        moment = now or datetime.now(UTC)
        heard = {replica: at for replica, at, _ in self._seen.values()}
        mine = heard.get(self._me)
        if mine is None or moment - mine > OUTAGE_AFTER:
            return None
        return {replica for replica, at in heard.items() if moment - at <= OUTAGE_AFTER}

    async def forget_gone(self, now: datetime | None = None) -> None:
        """Deletes the heartbeats of replicas silent for FORGET_AFTER (unless one came meanwhile)."""
        moment = now or datetime.now(UTC)
        for key, (_, at, revision) in list(self._seen.items()):
            if moment - at > FORGET_AFTER:
                with contextlib.suppress(KvConflict):
                    await self._kv.delete(key, revision=revision)
