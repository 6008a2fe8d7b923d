"""Fact ingest against a real nats-server: facts land in the WebApp's record in KV, rollouts and chaos windows too,
replicas writing the same record at once all get their fact in (compare-and-set), a redelivery changes nothing, and
facts the engine cannot place are refused."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from ballast.bus import Bus, Delivery, Reject
from ballast.events.catalogue import SLO_SLI
from ballast.events.contracts.chaos import ChaosTarget, ExperimentRef, ExperimentStarted, FaultKind
from ballast.events.contracts.common import ObjectRef
from ballast.events.contracts.k8s import ObservedObject
from ballast.events.contracts.reconcile import ReconcileOutcome
from ballast.events.envelope import new_event
from ballast.slo_engine.availability import Availability, WebAppRecord
from ballast.slo_engine.causes import CauseWindow
from ballast.slo_engine.ingest import FactIngest
from ballast.slo_engine.store import SliMirror, SliStore, webapp_key
from ballast.testing import eventually

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
MINUTE = timedelta(minutes=1)
RETENTION = timedelta(days=400)


@pytest.fixture
async def store(bus: Bus) -> SliStore:
    await bus.ensure_buckets([SLO_SLI])
    return SliStore(await bus.kv(SLO_SLI, WebAppRecord), await bus.kv(SLO_SLI, CauseWindow))


def delivery(subject: str, payload: BaseModel, ce_type: str, at: datetime) -> Delivery:
    event = new_event(ce_type, "/test", payload, time=at)
    return Delivery(event, subject, {}, 1, 1)


def fact(namespace: str, ready: int, at: datetime, *, kind: str = "WebApp", verb: str = "updated") -> Delivery:
    owner = None
    name = "web"
    if kind == "Deployment":
        owner = ObjectRef(
            api_version="platform.example.com/v1", kind="WebApp", namespace=namespace, name="web", uid="w"
        )
    observed = ObservedObject(
        cluster="local",
        object=ObjectRef(api_version="v1", kind=kind, namespace=namespace, name=name, uid="u"),
        resource_version="1",
        owner=owner,
        replicas=2,
        ready_replicas=ready,
    )
    subject = f"evt.k8s.local.{namespace}.{kind}.{verb}"
    return delivery(subject, observed, f"io.k8s.{kind.lower()}.{verb}.v1", at)


async def record(store: SliStore, namespace: str) -> WebAppRecord:
    entry = await store.webapps.get(webapp_key(namespace, "web"))
    assert entry is not None
    assert entry.value is not None
    return entry.value


async def test_facts_from_the_webapp_and_its_deployment_land_in_one_record(
    store: SliStore, unique: Callable[[str], str]
) -> None:
    namespace = unique("ns")
    ingest = FactIngest(store, cluster="local", retention=RETENTION)
    await ingest.on_fact(fact(namespace, 2, T0))
    await ingest.on_fact(fact(namespace, 1, T0 + MINUTE, kind="Deployment"))
    await ingest.on_fact(fact(namespace, 1, T0 + MINUTE, kind="Deployment"))  # redelivered
    await ingest.on_fact(fact(namespace, 2, T0 + 2 * MINUTE))
    kept = await record(store, namespace)
    assert [(c.at, c.state) for c in kept.changes] == [
        (T0, Availability.UP),
        (T0 + MINUTE, Availability.DOWN),
        (T0 + 2 * MINUTE, Availability.UP),
    ]
    await ingest.on_fact(fact(namespace, 2, T0 + 3 * MINUTE, verb="deleted"))
    assert (await record(store, namespace)).changes[-1].state is Availability.UNKNOWN
    # Its Deployment collected after it: the WebApp is gone, not down.
    await ingest.on_fact(fact(namespace, 2, T0 + 4 * MINUTE, kind="Deployment", verb="deleted"))
    assert (await record(store, namespace)).changes[-1].state is Availability.UNKNOWN


async def test_replicas_writing_one_record_at_once_all_get_their_fact_in(
    store: SliStore, unique: Callable[[str], str]
) -> None:
    namespace = unique("ns")
    replicas = [FactIngest(store, cluster="local", retention=RETENTION) for _ in range(4)]
    facts = [fact(namespace, index % 2 * 2, T0 + index * MINUTE) for index in range(20)]
    # Facts in order, each handled by some replica, many at once: every one lands at its time, none is lost to a
    # lost write.
    await asyncio.gather(*(replicas[index % 4].on_fact(f) for index, f in enumerate(facts)))
    kept = await record(store, namespace)
    assert kept.last_fact == T0 + 19 * MINUTE
    assert [(c.at, c.state) for c in kept.changes] == [
        (T0 + index * MINUTE, Availability.UP if index % 2 else Availability.DOWN) for index in range(20)
    ]


async def test_a_replica_whose_copy_of_a_record_is_stale_reads_the_other_write_and_loses_no_fact(
    bus: Bus, store: SliStore, unique: Callable[[str], str]
) -> None:
    namespace = unique("ns")
    # Two replicas: each its own store, so each its own copy of what it last wrote.
    other = SliStore(await bus.kv(SLO_SLI, WebAppRecord), await bus.kv(SLO_SLI, CauseWindow))
    one = FactIngest(store, cluster="local", retention=RETENTION)
    two = FactIngest(other, cluster="local", retention=RETENTION)
    await one.on_fact(fact(namespace, 2, T0))
    await two.on_fact(fact(namespace, 1, T0 + MINUTE, kind="Deployment"))
    await one.on_fact(fact(namespace, 2, T0 + 2 * MINUTE))  # against its stale copy: loses, reads, applies
    assert [(c.at, c.state) for c in (await record(store, namespace)).changes] == [
        (T0, Availability.UP),
        (T0 + MINUTE, Availability.DOWN),
        (T0 + 2 * MINUTE, Availability.UP),
    ]


async def test_a_burst_of_facts_about_one_webapp_is_written_together(
    store: SliStore, unique: Callable[[str], str]
) -> None:
    namespace = unique("ns")
    ingest = FactIngest(store, cluster="local", retention=RETENTION)
    await ingest.on_fact(fact(namespace, 2, T0))
    before = await store.webapps.get(webapp_key(namespace, "web"))
    assert before is not None
    burst = [fact(namespace, (index + 1) % 2 * 2, T0 + index * MINUTE) for index in range(1, 41)]
    await asyncio.gather(*(ingest.on_fact(f) for f in burst))
    after = await store.webapps.get(webapp_key(namespace, "web"))
    assert after is not None
    assert after.value is not None
    assert after.value.last_fact == T0 + 40 * MINUTE
    assert len(after.value.changes) == 41
    # Every fact is in, in fewer writes than facts: the writes are the ones between the two revisions (this test
    # is the only writer of the bucket while it runs).
    assert after.revision - before.revision < len(burst)


async def test_rollouts_and_chaos_windows_are_kept_and_another_clusters_facts_ignored(
    store: SliStore, unique: Callable[[str], str]
) -> None:
    namespace = unique("ns")
    ingest = FactIngest(store, cluster="local", retention=RETENTION)
    outcome = ReconcileOutcome(
        cluster="local",
        webapp=ObjectRef(
            api_version="platform.example.com/v1", kind="WebApp", namespace=namespace, name="web", uid="w"
        ),
        generation=3,
        observed_generation=3,
    )
    subject = f"evt.reconcile.local.{namespace}.reconciled"
    await ingest.on_cause(delivery(subject, outcome, "io.ballast.webapp.reconciled.v1", T0))
    await ingest.on_cause(delivery(subject, outcome, "io.ballast.webapp.reconciled.v1", T0 + MINUTE))  # same gen
    assert [(r.generation, r.at) for r in (await record(store, namespace)).rollouts] == [(3, T0)]

    started = ExperimentStarted(
        cluster="local",
        experiment=ExperimentRef(namespace=namespace, name="kill"),
        run_id="run-1",
        target=ChaosTarget(namespace=namespace, webapp="web"),
        fault=FaultKind.POD_DELETE,
        at=T0,
    )
    chaos_subject = f"evt.chaos.local.{namespace}.started"
    await ingest.on_cause(delivery(chaos_subject, started, "io.ballast.chaos.started.v1", T0))
    elsewhere = started.model_copy(update={"cluster": "other", "run_id": "run-2"})
    await ingest.on_cause(delivery(chaos_subject, elsewhere, "io.ballast.chaos.started.v1", T0))
    mirror = SliMirror(store)
    stop = asyncio.Event()
    following = asyncio.create_task(mirror.follow(stop))
    await eventually(lambda: mirror.caught_up.is_set(), timeout=10, what="the mirror caught up")
    runs = [w for w in mirror.causes.values() if w.namespace == namespace]
    assert [(w.ref, w.start, w.end) for w in runs] == [("run-1", T0, None)]
    assert mirror.webapps[(namespace, "web")].rollouts[0].generation == 3
    stop.set()
    await following


async def test_a_fact_dated_in_the_future_is_refused_naming_its_date(
    store: SliStore, unique: Callable[[str], str]
) -> None:
    ingest = FactIngest(store, cluster="local", retention=RETENTION)
    future = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(Reject, match=r"dated .* in the future"):
        await ingest.on_fact(fact(unique("ns"), 2, future))


async def test_a_batch_of_facts_is_stored_per_webapp_and_a_bad_fact_refused_alone(
    store: SliStore, unique: Callable[[str], str]
) -> None:
    one, two = unique("one-"), unique("two-")
    ingest = FactIngest(store, cluster="local", retention=RETENTION)
    await ingest.on_fact(fact(one, 2, T0))
    before = await store.webapps.get(webapp_key(one, "web"))
    assert before is not None
    batch = [fact(ns, (index + 1) % 2 * 2, T0 + index * MINUTE) for index in range(1, 21) for ns in (one, two)]
    batch.insert(7, fact(two, 1, datetime.now(UTC) + timedelta(hours=1)))  # dated in the future
    outcomes = await ingest.on_facts(batch)
    refused = [(index, outcome) for index, outcome in enumerate(outcomes) if outcome is not None]
    assert len(refused) == 1
    assert refused[0][0] == 7
    assert isinstance(refused[0][1], Reject)
    assert "in the future" in refused[0][1].reason
    for namespace in (one, two):
        kept = await record(store, namespace)
        assert kept.last_fact == T0 + 20 * MINUTE
        assert [c.at for c in kept.changes][-20:] == [T0 + index * MINUTE for index in range(1, 21)]
    after = await store.webapps.get(webapp_key(one, "web"))
    assert after is not None
    assert after.revision - before.revision <= 2  # the batch's 20 facts about it in one write (two with the other's)


async def test_batches_written_together_lose_no_fact_to_a_stale_copy_a_deleted_record_or_each_other(
    bus: Bus, store: SliStore, unique: Callable[[str], str]
) -> None:
    one, two, gone = unique("one-"), unique("two-"), unique("gone-")
    # Two replicas, each its own store (its own copy of what it last wrote).
    other = SliStore(await bus.kv(SLO_SLI, WebAppRecord), await bus.kv(SLO_SLI, CauseWindow))
    first = FactIngest(store, cluster="local", retention=RETENTION)
    second = FactIngest(other, cluster="local", retention=RETENTION)
    assert await first.on_facts([fact(ns, 2, T0) for ns in (one, two, gone)]) == [None] * 3
    assert await second.on_facts([fact(one, 1, T0 + MINUTE, kind="Deployment")]) == [None]
    # The first's copy of `one` is stale now, and `gone`'s record is deleted (a tombstone) behind its back.
    deleted = await store.webapps.get(webapp_key(gone, "web"))
    assert deleted is not None
    await other.webapps.delete(webapp_key(gone, "web"), revision=deleted.revision)

    # Two batches at once about the same WebApps: the second's facts join the writes the first has under way.
    batches = [[fact(ns, 2 * (index % 2), T0 + (2 + index) * MINUTE) for ns in (one, two, gone)] for index in range(2)]
    outcomes = await asyncio.gather(*(first.on_facts(batch) for batch in batches))

    assert outcomes == [[None] * 3, [None] * 3]
    assert [(c.at, c.state) for c in (await record(store, one)).changes] == [
        (T0, Availability.UP),
        (T0 + MINUTE, Availability.DOWN),
        (T0 + 3 * MINUTE, Availability.UP),
    ]
    assert [(c.at, c.state) for c in (await record(store, two)).changes] == [
        (T0, Availability.UP),
        (T0 + 2 * MINUTE, Availability.DOWN),
        (T0 + 3 * MINUTE, Availability.UP),
    ]
    # Written again from the facts after the deletion only: the record before it is gone.
    assert [(c.at, c.state) for c in (await record(store, gone)).changes] == [
        (T0 + 2 * MINUTE, Availability.DOWN),
        (T0 + 3 * MINUTE, Availability.UP),
    ]
