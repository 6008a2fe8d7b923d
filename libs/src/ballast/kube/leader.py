"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: one active replica, standbys ready.

The leader renews every `retry_period`; if it cannot renew for `renew_deadline` it steps down by itself, before
`lease_duration` runs out for the others. A standby takes the lease once it has seen the same holder record unchanged
for `lease_duration` by its own clock (never trusting another machine's clock). On shutdown the leader releases the
lease so that a standby takes over at once instead of waiting for it to expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ballast.kube.errors import ApiError, Conflict, Invalid, NotFound
from ballast.kube.pacing import pause
from ballast.kube.resource import LEASE
from ballast.kube.rest import KubeApi, micro_time, send_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTimings:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def default_identity() -> str:
    """Who campaigns (and writes Events): host and process, unique among replicas."""
    return f"{socket.gethostname()}-{os.getpid()}"


class LeaderElector:
    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        timings: LeaseTimings = LeaseTimings(),
    ) -> None:
        self._api = api
        self._path = LEASE.collection(namespace)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timings = timings
        self.is_leader = asyncio.Event()
        self._observed: tuple[str, str | None] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0  # our monotonic time when the record last changed

    async def run(self, lead: Callable[[asyncio.Event], Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
        """Campaigns until `stop`; while leading, runs `lead(lost)`, which must return soon after `lost` is set."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if not await self._try_acquire_or_renew():
                await pause(stop, self.timings.retry_period)
                continue
            log.info("became leader", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity})
            self.is_leader.set()
            lost = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(lead(lost))
                last_renewed = loop.time()
                while not stop.is_set():
                    await pause(stop, self.timings.retry_period)
                    if stop.is_set():
                        break
                    if await self._try_acquire_or_renew():
                        last_renewed = loop.time()
                    elif loop.time() - last_renewed >= self.timings.renew_deadline or self._held_by_other():
                        log.warning("lost leadership", extra={"lease": f"{self.namespace}/{self.name}"})
                        break
                lost.set()
            self.is_leader.clear()
            if stop.is_set():
                await self._release()

    def _held_by_other(self) -> bool:
        return self._observed is not None and self._observed[0] not in ("", self.identity)

    async def _read(self) -> dict[str, Any]:
        return await send_json(self._api, "GET", f"{self._path}/{self.name}")

    async def _try_acquire_or_renew(self) -> bool:
        loop = asyncio.get_running_loop()
        now = datetime.now(UTC)
        try:
            lease = await self._read()
        except NotFound:
            return await self._write(None, now, transitions=0, acquire=True)
        except ApiError as exc:
            log.warning("reading lease failed: %s", exc)
            return False
        except (TimeoutError, OSError) as exc:
            log.warning("reading lease failed: %s", exc)
            return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"))
        if record != self._observed:
            self._observed, self._observed_at = record, loop.time()
        duration = spec.get("leaseDurationSeconds") or self.timings.lease_duration
        expired = loop.time() - self._observed_at >= duration
        if holder not in ("", self.identity) and not expired:
            return False
        transitions = (spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        return await self._write(lease, now, transitions=transitions, acquire=holder != self.identity)

    async def _write(self, lease: dict[str, Any] | None, now: datetime, *, transitions: int, acquire: bool) -> bool:
        held_since = ((lease or {}).get("spec") or {}).get("acquireTime")
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timings.lease_duration),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
            "acquireTime": micro_time(now) if acquire or not held_since else held_since,
        }
        try:
            if lease is None:
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}  # fmt: skip
                await send_json(self._api, "POST", self._path, body=body)
            else:
                # resourceVersion makes this a compare-and-swap: of two candidates, one gets a 409.
                metadata = {"name": self.name, "namespace": self.namespace,
                            "resourceVersion": lease["metadata"]["resourceVersion"]}  # fmt: skip
                replacement = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
                               "spec": spec}  # fmt: skip
                await send_json(self._api, "PUT", f"{self._path}/{self.name}", body=replacement)
        except (Conflict, Invalid):
            return False  # another candidate wrote first
        except ApiError as exc:
            log.warning("writing lease failed: %s", exc)
            return False
        except (TimeoutError, OSError) as exc:
            log.warning("writing lease failed: %s", exc)
            return False
        self._observed = (self.identity, spec["renewTime"])
        self._observed_at = asyncio.get_running_loop().time()
        return True

    async def _release(self) -> None:
        try:
            lease = await self._read()
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now = micro_time(datetime.now(UTC))
            metadata = {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": lease["metadata"]["resourceVersion"],
            }
            vacant = {"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now, "acquireTime": now,
                      "leaseTransitions": spec.get("leaseTransitions") or 0}  # fmt: skip
            released = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": vacant}
            await send_json(self._api, "PUT", f"{self._path}/{self.name}", body=released)
            log.info("released leadership", extra={"lease": f"{self.namespace}/{self.name}"})
        except (TimeoutError, ApiError, OSError) as exc:
            log.warning("releasing lease failed (standbys take over when it expires): %s", exc)
