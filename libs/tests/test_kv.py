"""Typed key-value state against a real nats-server: compare-and-set, deletes, history, watches, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from nats.js.api import KeyValueConfig
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict

from ballast.bus import CAUGHT_UP, Bus, CaughtUp, Entry, KeyExists, KeyValue, KvConflict, RevisionConflict
from ballast.bus.kv import StoredValueError
from ballast.events.catalogue import BUCKETS, BucketSpec
from ballast.local.nats_server import NatsServer
from ballast.telemetry.metrics import BusMetrics


class Budget(BaseModel):
    slo: str
    remaining: float


@pytest.fixture
def bucket(unique: Callable[[str], str]) -> BucketSpec:
    return BucketSpec(name=unique("budgets-"), description="test budgets", history=5)


@pytest.fixture
async def budgets(bus: Bus, bucket: BucketSpec) -> AsyncIterator[KeyValue[Budget]]:
    await bus.ensure_buckets([bucket])
    yield await bus.kv(bucket, Budget)
    await bus.js.delete_key_value(bucket.name)


async def test_create_then_update_with_the_revision_read(budgets: KeyValue[Budget]) -> None:
    first = await budgets.create("shop.web", Budget(slo="web", remaining=1.0))

    entry = await budgets.get("shop.web")
    assert entry == Entry("shop.web", first, Budget(slo="web", remaining=1.0))
    second = await budgets.update("shop.web", Budget(slo="web", remaining=0.5), revision=first)

    assert second > first
    assert await budgets.get("shop.web") == Entry("shop.web", second, Budget(slo="web", remaining=0.5))
    assert await budgets.get("shop.other") is None


async def test_create_of_an_existing_key_is_a_typed_conflict(budgets: KeyValue[Budget]) -> None:
    revision = await budgets.create("shop.web", Budget(slo="web", remaining=1.0))

    with pytest.raises(KeyExists) as raised:
        await budgets.create("shop.web", Budget(slo="web", remaining=0.0))

    assert isinstance(raised.value, KvConflict)
    assert (raised.value.key, raised.value.expected, raised.value.current) == ("shop.web", 0, revision)
    assert (await budgets.get("shop.web")) == Entry("shop.web", revision, Budget(slo="web", remaining=1.0))


async def test_update_from_a_stale_revision_names_key_expected_and_current(budgets: KeyValue[Budget]) -> None:
    stale = await budgets.create("shop.web", Budget(slo="web", remaining=1.0))
    current = await budgets.update("shop.web", Budget(slo="web", remaining=0.9), revision=stale)

    with pytest.raises(RevisionConflict) as raised:
        await budgets.update("shop.web", Budget(slo="web", remaining=0.1), revision=stale)

    conflict = raised.value
    assert (conflict.bucket, conflict.key, conflict.expected, conflict.current) == (
        budgets.bucket,
        "shop.web",
        stale,
        current,
    )
    assert "shop.web" in str(conflict)
    assert str(stale) in str(conflict)
    assert str(current) in str(conflict)
    assert (await budgets.get("shop.web")) == Entry("shop.web", current, Budget(slo="web", remaining=0.9))


async def test_delete_with_a_stale_revision_conflicts_and_a_deleted_key_can_be_created_again(
    budgets: KeyValue[Budget],
) -> None:
    stale = await budgets.create("shop.web", Budget(slo="web", remaining=1.0))
    current = await budgets.put("shop.web", Budget(slo="web", remaining=0.7))

    with pytest.raises(RevisionConflict) as raised:
        await budgets.delete("shop.web", revision=stale)
    assert raised.value.current == current

    await budgets.delete("shop.web", revision=current)
    assert await budgets.get("shop.web") is None
    with pytest.raises(RevisionConflict) as after_delete:
        await budgets.update("shop.web", Budget(slo="web", remaining=0.5), revision=current)
    assert after_delete.value.current is None

    again = await budgets.create("shop.web", Budget(slo="web", remaining=1.0))
    assert (await budgets.get("shop.web")) == Entry("shop.web", again, Budget(slo="web", remaining=1.0))


async def test_history_lists_revisions_oldest_first_with_deletions(budgets: KeyValue[Budget]) -> None:
    one = await budgets.create("shop.web", Budget(slo="web", remaining=1.0))
    two = await budgets.update("shop.web", Budget(slo="web", remaining=0.5), revision=one)
    await budgets.delete("shop.web")
    await budgets.put("shop.other", Budget(slo="other", remaining=1.0))

    history = await budgets.history("shop.web")

    assert [(e.revision, e.value) for e in history[:2]] == [
        (one, Budget(slo="web", remaining=1.0)),
        (two, Budget(slo="web", remaining=0.5)),
    ]
    assert len(history) == 3
    assert history[2].value is None
    assert history[2].revision > two
    assert await budgets.history("shop.never") == []


async def test_watch_gives_current_values_then_caught_up_then_changes_and_deletions(
    budgets: KeyValue[Budget],
) -> None:
    await budgets.put("shop.web", Budget(slo="web", remaining=1.0))
    latest = await budgets.put("shop.web", Budget(slo="web", remaining=0.8))
    await budgets.put("shop.api", Budget(slo="api", remaining=1.0))
    await budgets.put("bank.api", Budget(slo="bank", remaining=1.0))

    seen: list[Entry[Budget] | CaughtUp] = []
    async with budgets.watch("shop.>") as changes:
        iterator = aiter(changes)
        async with asyncio.timeout(10):
            while not seen or seen[-1] is not CAUGHT_UP:
                seen.append(await anext(iterator))
            assert {(e.key, e.value.remaining) for e in seen[:-1] if isinstance(e, Entry) and e.value} == {
                ("shop.web", 0.8),
                ("shop.api", 1.0),
            }
            assert len(seen) == 3
            assert any(isinstance(e, Entry) and e.revision == latest for e in seen)

            updated = await budgets.put("shop.api", Budget(slo="api", remaining=0.2))
            await budgets.put("bank.api", Budget(slo="bank", remaining=0.0))  # outside the watched keys
            await budgets.delete("shop.web")

            assert await anext(iterator) == Entry("shop.api", updated, Budget(slo="api", remaining=0.2))
            deleted = await anext(iterator)
            assert isinstance(deleted, Entry)
            assert (deleted.key, deleted.value) == ("shop.web", None)


class FrozenBudget(BaseModel):
    model_config = ConfigDict(frozen=True)

    slo: str
    remaining: float


async def test_a_watch_gives_back_its_own_objects_writes_undecoded_and_decodes_every_other_value(
    bus: Bus, bucket: BucketSpec
) -> None:
    await bus.ensure_buckets([bucket])
    mine, other = await bus.kv(bucket, FrozenBudget), await bus.kv(bucket, FrozenBudget)
    mutable = await bus.kv(bucket, Budget)
    try:
        async with mine.watch() as changes, mutable.watch() as mutable_changes, asyncio.timeout(10):
            iterator, mutable_iterator = aiter(changes), aiter(mutable_changes)
            assert await anext(iterator) is CAUGHT_UP
            assert await anext(mutable_iterator) is CAUGHT_UP

            written = FrozenBudget(slo="web", remaining=0.5)
            revision = await mine.put("shop.web", written)
            entry = await anext(iterator)
            assert entry == Entry("shop.web", revision, written)
            assert isinstance(entry, Entry)
            assert entry.value is written  # the model written, not decoded again

            with pytest.raises(RevisionConflict):  # a write that lost never shows as the value
                await mine.update("shop.web", FrozenBudget(slo="web", remaining=0.4), revision=revision + 100)
            by_other = await other.put("shop.web", FrozenBudget(slo="web", remaining=0.1))
            assert await anext(iterator) == Entry("shop.web", by_other, FrozenBudget(slo="web", remaining=0.1))

            mutable_written = Budget(slo="api", remaining=1.0)  # a model that may change after: always decoded
            mutable_revision = await mutable.put("shop.api", mutable_written)
            mutable_entry = [await anext(mutable_iterator) for _ in range(3)][-1]
            assert mutable_entry == Entry("shop.api", mutable_revision, mutable_written)
            assert isinstance(mutable_entry, Entry)
            assert mutable_entry.value is not mutable_written
    finally:
        await bus.js.delete_key_value(bucket.name)


async def test_watch_of_an_empty_bucket_is_caught_up_at_once(budgets: KeyValue[Budget]) -> None:
    async with budgets.watch() as changes, asyncio.timeout(10):
        assert await anext(aiter(changes)) is CAUGHT_UP


async def test_invalid_stored_value_is_a_clear_error(bus: Bus, budgets: KeyValue[Budget]) -> None:
    store = await bus.js.key_value(budgets.bucket)
    revision = await store.put("shop.web", b'{"slo": "web", "remaining": "lots"}')

    with pytest.raises(StoredValueError) as raised:
        await budgets.get("shop.web")

    message = str(raised.value)
    assert budgets.bucket in message
    assert "shop.web" in message
    assert f"revision {revision}" in message
    assert "remaining" in message


async def test_bad_keys_and_missing_buckets_are_clear_errors(
    bus: Bus, budgets: KeyValue[Budget], unique: Callable[[str], str]
) -> None:
    with pytest.raises(ValueError, match="'shop web' is not a valid key"):
        await budgets.put("shop web", Budget(slo="web", remaining=1.0))
    with pytest.raises(LookupError, match="ensure_buckets"):
        await bus.kv(BucketSpec(name=unique("missing-"), description="never made"), Budget)


async def test_ensure_buckets_is_idempotent_and_updates_history_and_age(bus: Bus, bucket: BucketSpec) -> None:
    await bus.ensure_buckets([bucket])
    await bus.ensure_buckets([bucket])
    changed = BucketSpec(name=bucket.name, description="changed", history=9, max_age=timedelta(days=2))

    await bus.ensure_buckets([changed])

    status = await (await bus.js.key_value(bucket.name)).status()
    assert (status.history, status.ttl, status.stream_info.config.description) == (9, 2 * 86400, "changed")
    await bus.js.delete_key_value(bucket.name)


async def test_buckets_are_read_by_direct_get_made_now_or_before(
    bus: Bus, bucket: BucketSpec, unique: Callable[[str], str]
) -> None:
    await bus.ensure_buckets([bucket])
    assert (await bus.js.stream_info(f"KV_{bucket.name}")).config.allow_direct
    # A bucket an earlier version made without direct gets is switched over, its values kept.
    older = BucketSpec(name=unique("older-"), description="made before direct gets")
    made_before = await bus.js.create_key_value(KeyValueConfig(bucket=older.name, description=older.description))
    await made_before.put("web", Budget(slo="web", remaining=0.5).model_dump_json().encode())
    assert not (await bus.js.stream_info(f"KV_{older.name}")).config.allow_direct

    await bus.ensure_buckets([older])

    assert (await bus.js.stream_info(f"KV_{older.name}")).config.allow_direct
    entry = await (await bus.kv(older, Budget)).get("web")
    assert entry is not None
    assert entry.value == Budget(slo="web", remaining=0.5)
    await bus.js.delete_key_value(older.name)
    await bus.js.delete_key_value(bucket.name)


async def test_catalogue_buckets_are_created(bus: Bus) -> None:
    await bus.ensure_buckets()

    for spec in BUCKETS:
        status = await (await bus.js.key_value(spec.name)).status()
        assert status.history == spec.history


async def test_state_survives_a_server_restart(fresh_nats_server: NatsServer, bucket: BucketSpec) -> None:
    bus = await Bus.connect(fresh_nats_server.url, name="test", metrics=BusMetrics(CollectorRegistry()))
    await bus.ensure_buckets([bucket])
    budgets = await bus.kv(bucket, Budget)
    revision = await budgets.create("shop.web", Budget(slo="web", remaining=0.25))
    await bus.close()

    fresh_nats_server.restart()  # SIGKILL, then the same port and store

    bus = await Bus.connect(fresh_nats_server.url, name="test", metrics=BusMetrics(CollectorRegistry()))
    try:
        budgets = await bus.kv(bucket, Budget)
        assert await budgets.get("shop.web") == Entry("shop.web", revision, Budget(slo="web", remaining=0.25))
        with pytest.raises(KeyExists):
            await budgets.create("shop.web", Budget(slo="web", remaining=1.0))
    finally:
        await bus.close()


async def test_update_all_writes_many_at_once_and_reports_each_lost_compare_and_set(budgets: KeyValue[Budget]) -> None:
    there = await budgets.create("shop.there", Budget(slo="there", remaining=1.0))
    moved = await budgets.create("shop.moved", Budget(slo="moved", remaining=1.0))
    moved_again = await budgets.update("shop.moved", Budget(slo="moved", remaining=0.9), revision=moved)

    outcomes = await budgets.update_all(
        [
            ("shop.new", Budget(slo="new", remaining=1.0), 0),
            ("shop.there", Budget(slo="there", remaining=0.8), there),
            ("shop.moved", Budget(slo="moved", remaining=0.7), moved),  # a stale revision
            ("shop.there-too", Budget(slo="there", remaining=1.0), 0),
        ]
    )

    new, updated, lost, created = outcomes
    assert isinstance(new, int)
    assert isinstance(updated, int)
    assert isinstance(created, int)
    assert isinstance(lost, RevisionConflict)
    assert (lost.key, lost.expected) == ("shop.moved", moved)
    assert await budgets.get("shop.new") == Entry("shop.new", new, Budget(slo="new", remaining=1.0))
    assert await budgets.get("shop.there") == Entry("shop.there", updated, Budget(slo="there", remaining=0.8))
    assert await budgets.get("shop.moved") == Entry("shop.moved", moved_again, Budget(slo="moved", remaining=0.9))
    (exists,) = await budgets.update_all([("shop.new", Budget(slo="new", remaining=0.5), 0)])
    assert isinstance(exists, KeyExists)
    assert await budgets.update_all([]) == []


async def test_get_all_reads_many_keys_at_once_and_tells_a_deletion_by_its_revision(
    bus: Bus, budgets: KeyValue[Budget]
) -> None:
    created = await budgets.create("shop.web", Budget(slo="web", remaining=1.0))
    updated = await budgets.update("shop.web", Budget(slo="web", remaining=0.5), revision=created)
    gone = await budgets.create("shop.gone", Budget(slo="gone", remaining=1.0))
    await budgets.delete("shop.gone", revision=gone)
    await budgets.create("shop.api", Budget(slo="api", remaining=0.2))
    keys = ["shop.web", "shop.never", "shop.gone", "shop.api", "shop.web"]

    found = await budgets.get_all(keys)

    assert found[0] == Entry("shop.web", updated, Budget(slo="web", remaining=0.5))
    assert found[1] is None  # never written
    assert await budgets.get("shop.gone") is None
    deletion = found[2]
    assert deletion is not None
    assert deletion.value is None
    assert deletion.revision > gone  # the deletion's own revision: a write after it names it
    assert [found[3], found[4]] == [await budgets.get("shop.api"), found[0]]
    (written,) = await budgets.update_all([("shop.gone", Budget(slo="gone", remaining=0.9), deletion.revision)])
    assert isinstance(written, int)
    assert await budgets.get("shop.gone") == Entry("shop.gone", written, Budget(slo="gone", remaining=0.9))
    assert await budgets.get_all([]) == []
    with pytest.raises(ValueError, match="'shop web' is not a valid key"):
        await budgets.get_all(["shop.web", "shop web"])
    store = await bus.js.key_value(budgets.bucket)
    await store.put("shop.bad", b'{"slo": "bad"}')
    with pytest.raises(StoredValueError, match=r"'shop\.bad'"):
        await budgets.get_all(["shop.web", "shop.bad"])
