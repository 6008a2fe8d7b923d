"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: one active replica, standbys ready.

The leader renews every `retry_period`; if it cannot renew for `renew_deadline` it steps down by itself, before
`lease_duration` runs out for the others. A standby takes the lease once it has seen the same holder record unchanged
for `lease_duration` by its own clock (never trusting another machine's clock). On shutdown the leader releases the
lease so that a standby takes over at once instead of waiting for it to expire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ballast.kube.pacing import pause

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTimings:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def _micro_time(moment: datetime) -> str:
    # MicroTime wants exactly six fractional digits (isoformat drops them when they are zero).
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: Any,  # kubernetes_asyncio ApiClient
        *,
        namespace: str,
        name: str,
        identity: str,
        timings: LeaseTimings = LeaseTimings(),
    ) -> None:
        from kubernetes_asyncio import client

        self._leases = client.CoordinationV1Api(api)
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

    async def _try_acquire_or_renew(self) -> bool:
        from kubernetes_asyncio.client.exceptions import ApiException

        loop = asyncio.get_running_loop()
        now = datetime.now(UTC)
        try:
            lease = await self._leases.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("reading lease failed: %s", exc.reason)
                return False
            return await self._write(None, now, transitions=0, acquire=True)
        except (TimeoutError, OSError) as exc:
            log.warning("reading lease failed: %s", exc)
            return False
        spec = lease.spec
        holder = spec.holder_identity or ""
        record = (holder, spec.renew_time.isoformat() if spec.renew_time else None)
        if record != self._observed:
            self._observed, self._observed_at = record, loop.time()
        duration = spec.lease_duration_seconds or self.timings.lease_duration
        expired = loop.time() - self._observed_at >= duration
        if holder not in ("", self.identity) and not expired:
            return False
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        return await self._write(lease, now, transitions=transitions, acquire=holder != self.identity)

    async def _write(self, lease: Any, now: datetime, *, transitions: int, acquire: bool) -> bool:
        from kubernetes_asyncio.client.exceptions import ApiException

        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timings.lease_duration),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
            "acquireTime": _micro_time(now)
            if acquire or lease is None or lease.spec.acquire_time is None
            else _micro_time(lease.spec.acquire_time),
        }
        try:
            if lease is None:
                # Plain dicts: the client's models would re-serialise times without MicroTime's fixed precision.
                body: Any = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
                await self._leases.create_namespaced_lease(self.namespace, body)
            else:
                # resourceVersion makes this a compare-and-swap: of two candidates, one gets a 409.
                metadata = {"name": self.name, "namespace": self.namespace,
                            "resourceVersion": lease.metadata.resource_version}  # fmt: skip
                replacement: Any = {"metadata": metadata, "spec": spec}
                await self._leases.replace_namespaced_lease(self.name, self.namespace, replacement)
        except ApiException as exc:
            if exc.status not in (409, 422):
                log.warning("writing lease failed: %s %s", exc.status, exc.reason)
            return False
        except (TimeoutError, OSError) as exc:
            log.warning("writing lease failed: %s", exc)
            return False
        self._observed = (self.identity, spec["renewTime"])
        self._observed_at = asyncio.get_running_loop().time()
        return True

    async def _release(self) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            lease = await self._leases.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return
            now = _micro_time(datetime.now(UTC))
            metadata = {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": lease.metadata.resource_version,
            }
            spec = {"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now, "acquireTime": now,
                    "leaseTransitions": lease.spec.lease_transitions or 0}  # fmt: skip
            released: Any = {"metadata": metadata, "spec": spec}
            await self._leases.replace_namespaced_lease(self.name, self.namespace, released)
            log.info("released leadership", extra={"lease": f"{self.namespace}/{self.name}"})
        except (TimeoutError, ApiException, OSError) as exc:
            log.warning("releasing lease failed (standbys take over when it expires): %s", exc)
