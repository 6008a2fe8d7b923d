"""Leader election on a real Lease in the real API server: one leader, clean hand-over, takeover after a crash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ballast.kube.leader import LeaderElector, LeaseTimings
from ballast.runtime import ConfigError, load_settings
from ballast.runtime.leases import LeaseSettings
from ballast.testing import eventually

pytestmark = pytest.mark.cluster

FAST = LeaseTimings(lease_duration=2.0, renew_deadline=1.5, retry_period=0.2)


class Candidate:
    def __init__(self, api: Any, namespace: str, identity: str) -> None:
        self.elector = LeaderElector(api, namespace=namespace, name="reconciler", identity=identity, timings=FAST)
        self.identity = identity
        self.leading = False
        self.terms = 0
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _lead(self, lost: asyncio.Event) -> None:
        self.leading, self.terms = True, self.terms + 1
        try:
            await lost.wait()
        finally:
            self.leading = False

    def start(self) -> Candidate:
        self.task = asyncio.create_task(self.elector.run(self._lead, self.stop))
        return self

    async def shut_down(self) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)

    async def crash(self) -> None:
        """Gone without a word: no release, no further renewals."""
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task
        self.leading = False


@pytest.fixture
async def candidates(kube_api: Any, namespace: str) -> AsyncIterator[Callable[[str], Candidate]]:
    made: list[Candidate] = []

    def make(identity: str) -> Candidate:
        candidate = Candidate(kube_api, namespace, identity).start()
        made.append(candidate)
        return candidate

    yield make
    for candidate in made:
        if candidate.task is not None and not candidate.task.done():
            await candidate.shut_down()


async def lease_holder(kube_api: Any, namespace: str) -> tuple[str, int]:
    from kubernetes_asyncio import client

    lease = await client.CoordinationV1Api(kube_api).read_namespaced_lease("reconciler", namespace)
    return lease.spec.holder_identity or "", lease.spec.lease_transitions or 0


async def test_exactly_one_candidate_leads(candidates: Any, kube_api: Any, namespace: str) -> None:
    a, b = candidates("a"), candidates("b")
    await eventually(lambda: a.leading or b.leading, what="a leader")
    leader = a if a.leading else b
    for _ in range(10):  # across several renewals, never two leaders
        assert a.leading != b.leading
        await asyncio.sleep(FAST.retry_period)  # observing over renewals, not synchronising
    holder, _ = await lease_holder(kube_api, namespace)
    assert holder == leader.identity


async def test_shutdown_releases_the_lease_to_a_standby(candidates: Any, kube_api: Any, namespace: str) -> None:
    first = candidates("first")
    await eventually(lambda: first.leading, what="first leads")
    second = candidates("second")
    await first.shut_down()
    await eventually(lambda: second.leading, timeout=10, what="the standby takes over")
    holder, transitions = await lease_holder(kube_api, namespace)
    assert holder == "second"
    assert transitions == 1


async def test_a_crashed_leader_is_replaced_once_its_lease_expires(
    candidates: Any, kube_api: Any, namespace: str
) -> None:
    first = candidates("first")
    await eventually(lambda: first.leading, what="first leads")
    second = candidates("second")
    await first.crash()
    assert not second.leading
    await eventually(lambda: second.leading, timeout=15, what="the standby takes over after expiry")
    assert (await lease_holder(kube_api, namespace))[0] == "second"


def test_lease_timings_that_let_two_replicas_lead_stop_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    class Leading(LeaseSettings):
        lease_name: str = "ballast-test"

    monkeypatch.setenv("BALLAST_RENEW_DEADLINE", "20")  # longer than the 15 s a standby waits
    with pytest.raises(ConfigError, match="BALLAST_RENEW_DEADLINE < BALLAST_LEASE_DURATION"):
        load_settings(Leading)
    monkeypatch.setenv("BALLAST_RENEW_DEADLINE", "10")
    elector = load_settings(Leading).elector(None)  # type: ignore[arg-type]  # no API call before run()
    assert (elector.name, elector.timings.renew_deadline, elector.timings.lease_duration) == ("ballast-test", 10, 15)
