"""Each gate replica's entry in `status.byPod`: merged with the others' entries, those of replicas gone dropped; which
replicas are alive, from their heartbeats in the real bucket."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from ballast.bus import Bus
from ballast.events.catalogue import POLICY_GATE
from ballast.policy_gate.audit import OUTAGE_AFTER, Alive, replica_key
from ballast.policy_gate.pod_status import FORGET_AFTER, Replicas, has_gone, merged_by_pod
from ballast.testing import eventually

A = {"id": "gate-a", "errors": []}
B = {"id": "gate-b", "errors": []}
C = {"id": "gate-c", "errors": []}


def test_a_replica_puts_its_entry_in_place_of_its_old_one_and_keeps_the_live_others() -> None:
    mine = {"id": "gate-b", "errors": [{"code": "ingest_error", "message": "no"}]}
    assert merged_by_pod([C, B, A], mine, "gate-b", {"gate-a", "gate-b", "gate-c"}) == [A, mine, C]
    assert merged_by_pod(None, mine, "gate-b", {"gate-b"}) == [mine]


def test_entries_of_replicas_gone_are_dropped_and_all_kept_while_nobody_knows() -> None:
    assert merged_by_pod([A, B, C], dict(A), "gate-a", {"gate-a", "gate-c"}) == [A, C]
    assert merged_by_pod([A, B, C], dict(A), "gate-a", None) == [A, B, C]
    # Only dropping (no entry of its own to write): its own entry stays as it was.
    assert merged_by_pod([A, B, C], None, "gate-a", {"gate-a"}) == [A]
    assert merged_by_pod(["junk", {"no": "id"}, B], None, "gate-b", {"gate-b"}) == [B]


def test_gone_entries_are_found_only_when_the_live_replicas_are_known() -> None:
    assert has_gone([A, B], "gate-a", {"gate-a"})
    assert not has_gone([A, B], "gate-a", {"gate-a", "gate-b"})
    assert not has_gone([A, B], "gate-a", None)
    assert not has_gone(None, "gate-a", {"gate-a"})


def test_a_heartbeat_key_holds_what_an_identity_a_key_cannot() -> None:
    assert replica_key("dev", "gate-7f9c-12") == "replica.dev.gate-7f9c-12"
    assert replica_key("dev", "host name:1..2") == "replica.dev.host_name_1_.2"


async def test_the_replicas_alive_are_those_heard_from_lately_and_long_silent_ones_are_forgotten(bus: Bus) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    await bus.ensure_buckets([POLICY_GATE])
    kv = await bus.kv(POLICY_GATE, Alive)
    now = datetime.now(UTC)
    await kv.put(replica_key(cluster, "fresh"), Alive(at=now, gate="fresh"))
    await kv.put(replica_key(cluster, "silent"), Alive(at=now - OUTAGE_AFTER * 2, gate="silent"))
    await kv.put(replica_key(cluster, "long gone"), Alive(at=now - FORGET_AFTER * 2, gate="long gone"))
    await kv.put(replica_key(f"{cluster}x", "elsewhere"), Alive(at=now, gate="elsewhere"))
    replicas = Replicas(kv, cluster, "me")
    assert replicas.live() is None  # nothing read yet: every entry stays
    stop = asyncio.Event()
    async with asyncio.timeout(30), asyncio.TaskGroup() as tasks:
        tasks.create_task(replicas.follow(stop))
        await replicas.caught_up.wait()
        assert replicas.live(now) is None  # its own heartbeat not seen yet: the view may lag, nobody is gone
        await kv.put(replica_key(cluster, "me"), Alive(at=now, gate="me"))
        await eventually(lambda: replicas.live(now) is not None, timeout=10, what="its own heartbeat seen")
        assert replicas.live(now) == {"fresh", "me"}
        assert replicas.live(now + OUTAGE_AFTER * 2) is None  # its own beat old: the view lags, not the others
        await kv.put(replica_key(cluster, "silent"), Alive(at=datetime.now(UTC), gate="silent"))  # back
        await eventually(lambda: "silent" in (replicas.live(now) or ()), timeout=10, what="the replica heard again")
        await replicas.forget_gone()
        assert await kv.get(replica_key(cluster, "long gone")) is None
        assert await kv.get(replica_key(cluster, "fresh")) is not None
        stop.set()
