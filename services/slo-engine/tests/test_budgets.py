"""Budget state in JetStream KV against a real nats-server: it survives an engine restart, transitions go out once
(also when a run stopped between storing and publishing them), replicas racing store one state, and
`svc.slo.status` answers from it over request/reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from ballast.bus import LAST, Bus
from ballast.bus.endpoints import EndpointCallError
from ballast.events.catalogue import CATALOGUE, PLATFORM_EVENTS, SLO_BUDGETS
from ballast.events.contracts.slo import (
    SLO_STATUS,
    BurnTier,
    SloEvent,
    SloStatusRequest,
    SloStatusResponse,
    slo_event_type,
)
from ballast.local.nats_server import NatsServer
from ballast.slo import Alerting, AlertTier, EventRatioSli, RollingWindow, ServiceLevelObjective, workbook_windows
from ballast.slo.evaluation import BudgetState, Figures, Measurement, evaluate
from ballast.slo_engine.budgets import (
    SHARDS,
    STATE_REFRESH,
    BudgetBook,
    BudgetShard,
    Evaluand,
    StoredBudget,
    UnpublishedEvent,
    current,
    legacy_key,
    shard_key,
    slo_id,
)
from ballast.slo_engine.status import StatusView
from ballast.telemetry.metrics import BusMetrics
from ballast.testing import eventually

CLUSTER = "local"
WINDOWS = workbook_windows(timedelta(days=30))
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def objective(name: str = "availability", service: str = "shop") -> ServiceLevelObjective:
    return ServiceLevelObjective(
        service=service,
        name=name,
        objective=99.9,
        window=RollingWindow(length=timedelta(days=30)),
        sli=EventRatioSli(error_query="e[{{.window}}]", total_query="t[{{.window}}]"),
        alerting=Alerting(name="ShopErrors", page=AlertTier(), ticket=AlertTier(enabled=False)),
    )


def measured(at: datetime, ratio: float, period: float = 0.0) -> Measurement:
    return Measurement(at=at, windows=dict.fromkeys(WINDOWS.windows(), ratio), period=period)


Connect = Callable[[], Awaitable[Bus]]


@pytest.fixture
async def connect(nats_server: NatsServer) -> AsyncIterator[Connect]:
    """New connections, as a restarted engine makes; all closed at the end."""
    opened: list[Bus] = []

    async def new() -> Bus:
        bus = await Bus.connect(nats_server.url, name="slo-engine", metrics=BusMetrics(CollectorRegistry()))
        await bus.ensure_streams([PLATFORM_EVENTS])
        await bus.ensure_buckets([SLO_BUDGETS])
        opened.append(bus)
        return bus

    yield new
    for bus in opened:
        if bus.is_connected:
            await bus.close()


async def book(bus: Bus) -> BudgetBook:
    kv = await bus.kv(SLO_BUDGETS, BudgetShard)
    return BudgetBook(kv, bus.publisher, CATALOGUE.registry, CLUSTER, f"/clusters/{CLUSTER}/slo-engine")


async def stored_budget(bus: Bus, namespace: str, name: str) -> tuple[StoredBudget | None, int]:
    """The SLO's budget as its shard holds it, and the shard's revision (0: no shard)."""
    entry = await (await bus.kv(SLO_BUDGETS, BudgetShard)).get(shard_key(namespace, name))
    if entry is None or entry.value is None:
        return None, 0
    return entry.value.budgets.get(slo_id(namespace, name)), entry.revision


async def old_layout(bus: Bus, namespace: str, name: str, record: StoredBudget) -> None:
    """Writes `record` as the engine did before shards: alone, under `<namespace>.<name>`."""
    await (await bus.kv(SLO_BUDGETS, StoredBudget)).put(legacy_key(namespace, name), record)


async def old_key_gone(bus: Bus, namespace: str, name: str) -> bool:
    return await (await bus.kv(SLO_BUDGETS, StoredBudget)).get(legacy_key(namespace, name)) is None


async def published(bus: Bus, namespace: str) -> list[tuple[str, str]]:
    """The SLO events of `namespace` in the stream: (type, id), in order."""
    found = []
    async with bus.read(PLATFORM_EVENTS.name, subjects=[f"evt.slo.{CLUSTER}.{namespace}.>"], until=LAST) as events:
        async for stored in events:
            assert stored.event is not None, stored.error
            found.append((stored.event.type, stored.event.id))
    return found


def firing_id(namespace: str, at: datetime) -> tuple[str, str]:
    return slo_event_type(SloEvent.PAGE_BURN_FIRING), f"{namespace}/availability:page:firing:{at.isoformat()}"


async def test_state_survives_an_engine_restart_and_a_transition_goes_out_once(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    first = await connect()
    state = await (await book(first)).evaluate(objective(), namespace, WINDOWS, measured(T0, 0.1))
    assert state.firing == {BurnTier.PAGE: T0}
    await first.close()

    restarted = await book(await connect())
    assert await restarted.state(namespace, "availability") == state
    still = await restarted.evaluate(objective(), namespace, WINDOWS, measured(T0 + MINUTE, 0.1))
    assert still.firing == {BurnTier.PAGE: T0}  # firing since before the restart, not reset
    # The measurement seen before the restart, again: no change, nothing told.
    assert await restarted.evaluate(objective(), namespace, WINDOWS, measured(T0, 0.1)) == still
    resolved_at = T0 + 2 * MINUTE
    await restarted.evaluate(objective(), namespace, WINDOWS, measured(resolved_at, 0.0))

    reader = await connect()
    assert await published(reader, namespace) == [
        firing_id(namespace, T0),
        (
            slo_event_type(SloEvent.PAGE_BURN_RESOLVED),
            f"{namespace}/availability:page:resolved:{resolved_at.isoformat()}",
        ),
    ]


def left_unpublished(namespace: str) -> StoredBudget:
    """What a run that stored its evaluation (the page tier firing at T0) and stopped before publishing leaves."""
    evaluation = evaluate(objective(), namespace, CLUSTER, WINDOWS, measured(T0, 0.1), None)
    (transition,) = evaluation.transitions
    return StoredBudget(
        state=evaluation.state, unpublished=(UnpublishedEvent.of(namespace, "availability", transition),)
    )


async def test_transitions_a_stopped_run_left_unpublished_go_out_once(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    bus = await connect()
    left = left_unpublished(namespace)
    kv = await bus.kv(SLO_BUDGETS, BudgetShard)
    shard = shard_key(namespace, "availability")
    await kv.put(shard, BudgetShard(budgets={slo_id(namespace, "availability"): left}))

    engine = await book(await connect())
    await engine.evaluate(objective(), namespace, WINDOWS, measured(T0 + MINUTE, 0.1))
    # Published by the next evaluation, and cleared from the bucket.
    assert await published(bus, namespace) == [firing_id(namespace, T0)]
    record, _ = await stored_budget(bus, namespace, "availability")
    assert record is not None
    assert record.unpublished == ()
    assert record.state.firing == {BurnTier.PAGE: T0}

    # Had the run published them before it stopped, publishing again stores nothing new.
    await kv.put(shard, BudgetShard(budgets={slo_id(namespace, "availability"): left}))
    await engine.evaluate(objective(), namespace, WINDOWS, measured(T0 + 2 * MINUTE, 0.1))
    assert await published(bus, namespace) == [firing_id(namespace, T0)]


async def test_a_budget_stored_before_shards_is_carried_over_and_its_unpublished_transitions_go_out_once(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    bus = await connect()
    left = left_unpublished(namespace)
    await old_layout(bus, namespace, "availability", left)

    engine = await book(await connect())
    assert await engine.state(namespace, "availability") == left.state  # read where it is
    still = await engine.evaluate(objective(), namespace, WINDOWS, measured(T0 + MINUTE, 0.1))
    assert still.firing == {BurnTier.PAGE: T0}  # evaluated against it: firing since before, not reset
    assert await published(bus, namespace) == [firing_id(namespace, T0)]
    record, _ = await stored_budget(bus, namespace, "availability")
    assert record is not None
    assert (record.state, record.unpublished) == (still, ())
    assert await old_key_gone(bus, namespace, "availability")


async def test_a_leaders_first_cycle_carries_the_old_layout_over_into_shards_keeping_every_state(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    bus = await connect()
    names = [f"slo-{i}" for i in range(12)]
    for name in names:
        state = evaluate(objective(name), namespace, CLUSTER, WINDOWS, measured(T0, 0.1), None).state
        await old_layout(bus, namespace, name, StoredBudget(state=state))
    view = StatusView()
    stop = asyncio.Event()
    following = asyncio.create_task(view.follow(await bus.kv(SLO_BUDGETS, BudgetShard), stop))
    try:
        await asyncio.wait_for(view.caught_up.wait(), timeout=10)
        shown = view.answer(SloStatusRequest(namespace=namespace))
        assert [s.slo.name for s in shown.slos] == sorted(names)  # the old keys, read as shards of one

        leader = await book(await connect())
        # Half of them measured this cycle; the rest are carried over all the same.
        measured_now = names[::2]
        states = await leader.evaluate_all(
            [Evaluand(objective(name), namespace, WINDOWS, measured(T0 + MINUTE, 0.1)) for name in measured_now]
        )
        assert [s.firing for s in states if isinstance(s, BudgetState)] == [{BurnTier.PAGE: T0}] * len(measured_now)
        for name in names:
            record, _ = await stored_budget(bus, namespace, name)
            assert record is not None, name
            assert record.state.evaluated_at == (T0 + MINUTE if name in measured_now else T0)
            assert await old_key_gone(bus, namespace, name)

        async def carried() -> bool:
            answer = view.answer(SloStatusRequest(namespace=namespace)).slos
            return [(s.slo.name, s.evaluated_at) for s in answer] == sorted(
                (name, T0 + MINUTE if name in measured_now else T0) for name in names
            )

        # The old keys' deletions do not take the SLOs out of the view: their shards hold them now.
        await eventually(carried, timeout=10, interval=0.05, what="the view shows every SLO from its shard")
    finally:
        stop.set()
        await following
    # The firing tiers found before the change are not told again.
    assert await published(bus, namespace) == []


def same_shard(namespace: str) -> tuple[str, str]:
    """Two SLO names whose budgets share a shard in `namespace`."""
    seen: dict[str, str] = {}
    for i in range(10 * SHARDS):
        name = f"slo-{i}"
        other = seen.setdefault(shard_key(namespace, name), name)
        if other != name:
            return other, name
    raise AssertionError("no two names share a shard")


async def test_a_shard_another_replica_wrote_meanwhile_is_read_again_and_its_write_kept(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    a, b = same_shard(namespace)
    leader = await book(await connect())
    first = await leader.evaluate_all([Evaluand(objective(n), namespace, WINDOWS, measured(T0, 0.1)) for n in (a, b)])
    assert [s.firing for s in first if isinstance(s, BudgetState)] == [{BurnTier.PAGE: T0}] * 2
    # Another replica evaluates `b` alone: the shard changes under the leader's copy of it.
    other = await book(await connect())
    resolved = await other.evaluate(objective(b), namespace, WINDOWS, measured(T0 + MINUTE, 0.0))
    assert resolved.firing == {}

    # The leader's cycle measures only `a`: its write of the shard loses, and `a` is done against the shard as stored,
    # so `b`'s newer state stays.
    (a_later,) = await leader.evaluate_all([Evaluand(objective(a), namespace, WINDOWS, measured(T0 + 2 * MINUTE, 0.1))])
    assert isinstance(a_later, BudgetState)
    assert (a_later.evaluated_at, a_later.firing) == (T0 + 2 * MINUTE, {BurnTier.PAGE: T0})
    reader = await connect()
    stored_b, _ = await stored_budget(reader, namespace, b)
    assert stored_b is not None
    assert stored_b.state == resolved

    # The leader's copy holds the shard as stored now: `b` is evaluated against the resolved state, and fires anew.
    later = T0 + 3 * MINUTE
    both = await leader.evaluate_all([Evaluand(objective(n), namespace, WINDOWS, measured(later, 0.1)) for n in (a, b)])
    assert [s.firing for s in both if isinstance(s, BudgetState)] == [{BurnTier.PAGE: T0}, {BurnTier.PAGE: later}]
    fires_again = (slo_event_type(SloEvent.PAGE_BURN_FIRING), f"{namespace}/{b}:page:firing:{later.isoformat()}")
    assert (await published(reader, namespace)).count(fires_again) == 1


async def test_a_cycle_writes_each_shard_once_however_many_of_its_slos_moved(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    bus = await connect()
    leader = await book(bus)
    names = [f"slo-{i}" for i in range(2 * SHARDS)]
    shards = {shard_key(namespace, name) for name in names}
    assert len(shards) < len(names)

    async def writes_during(at: datetime, ratio: float) -> int:
        before = (await bus.js.stream_info(f"KV_{SLO_BUDGETS.name}")).state.last_seq
        states = await leader.evaluate_all(
            [Evaluand(objective(name), namespace, WINDOWS, measured(at, ratio)) for name in names]
        )
        assert all(isinstance(s, BudgetState) and s.evaluated_at == at for s in states), states
        return int((await bus.js.stream_info(f"KV_{SLO_BUDGETS.name}")).state.last_seq - before)

    assert await writes_during(T0, 0.0001) == len(shards)  # no transitions: one write per shard
    assert await writes_during(T0 + MINUTE, 0.0002) == len(shards)  # every figure moved: again one per shard
    for name in names:
        record, _ = await stored_budget(bus, namespace, name)
        assert record is not None
        assert record.state.evaluated_at == T0 + MINUTE

    await leader.forget(namespace, names[0])
    assert await leader.state(namespace, names[0]) is None
    assert (await stored_budget(bus, namespace, names[0]))[0] is None
    assert (await stored_budget(bus, namespace, names[1]))[0] is not None


def test_a_value_of_the_layout_before_shards_reads_as_a_shard_of_one() -> None:
    state = evaluate(objective(), "shop", CLUSTER, WINDOWS, measured(T0, 0.1), None).state
    shard = BudgetShard.model_validate_json(StoredBudget(state=state).model_dump_json())
    assert shard.budgets == {"shop/availability": StoredBudget(state=state)}


async def test_replicas_evaluating_at_once_store_one_state_and_tell_once(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    replicas = [await book(await connect()) for _ in range(3)]
    states = await asyncio.gather(*(r.evaluate(objective(), namespace, WINDOWS, measured(T0, 0.1)) for r in replicas))
    assert all(s.firing == {BurnTier.PAGE: T0} for s in states)
    assert await published(await connect(), namespace) == [firing_id(namespace, T0)]


async def test_a_cycle_evaluates_all_at_once_and_one_whose_copy_is_stale_against_what_is_stored(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    leader = await book(await connect())
    names = ["a", "b", "c"]

    def cycle(at: datetime, ratio: float) -> list[Evaluand]:
        return [Evaluand(objective(name), namespace, WINDOWS, measured(at, ratio)) for name in names]

    first = await leader.evaluate_all(cycle(T0, 0.1))
    assert [s.firing for s in first if isinstance(s, BudgetState)] == [{BurnTier.PAGE: T0}] * 3
    # Another replica (a leader before a failover, say) evaluates "b" meanwhile: the leader's copy of it is stale.
    other = await book(await connect())
    resolved_at = T0 + MINUTE
    await other.evaluate(objective("b"), namespace, WINDOWS, measured(resolved_at, 0.0))

    later = T0 + 2 * MINUTE
    second = await leader.evaluate_all(cycle(later, 0.1))
    assert [s.evaluated_at for s in second if isinstance(s, BudgetState)] == [later] * 3
    # "b" was evaluated against the resolved state the other replica stored: it fires again, from `later`.
    assert [s.firing for s in second if isinstance(s, BudgetState)] == [
        {BurnTier.PAGE: T0},
        {BurnTier.PAGE: later},
        {BurnTier.PAGE: T0},
    ]
    told = await published(await connect(), namespace)
    assert sorted(told) == sorted(
        [
            *(
                (slo_event_type(SloEvent.PAGE_BURN_FIRING), f"{namespace}/{name}:page:firing:{T0.isoformat()}")
                for name in names
            ),
            (slo_event_type(SloEvent.PAGE_BURN_RESOLVED), f"{namespace}/b:page:resolved:{resolved_at.isoformat()}"),
            (slo_event_type(SloEvent.PAGE_BURN_FIRING), f"{namespace}/b:page:firing:{later.isoformat()}"),
        ]
    )
    reader = await connect()
    for name in names:
        record, _ = await stored_budget(reader, namespace, name)
        assert record is not None
        assert record.unpublished == ()  # told, then cleared
    # The same measurement again: nothing changes, nothing is written or told.
    assert await leader.evaluate_all(cycle(later, 0.1)) == second
    assert len(await published(await connect(), namespace)) == len(told)


async def test_a_state_whose_figures_did_not_move_is_stored_again_only_after_the_refresh(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    leader = await book(await connect())
    reader = await connect()

    async def cycle(at: datetime, ratio: float) -> tuple[BudgetState, int]:
        (state,) = await leader.evaluate_all(
            [Evaluand(objective("a"), namespace, WINDOWS, measured(at, ratio, 0.0002))]
        )
        assert isinstance(state, BudgetState)
        record, revision = await stored_budget(reader, namespace, "a")
        assert record is not None
        assert record.state == state
        return state, revision

    first, revision = await cycle(T0, 0.0005)
    same, same_revision = await cycle(T0 + timedelta(seconds=10), 0.0005)
    assert (same, same_revision) == (first, revision)  # not stored again: the stored state still tells it
    moved, moved_revision = await cycle(T0 + timedelta(seconds=20), 0.0006)
    assert moved.evaluated_at == T0 + timedelta(seconds=20)
    assert moved_revision > revision
    later = T0 + timedelta(seconds=20) + STATE_REFRESH
    refreshed, refreshed_revision = await cycle(later, 0.0006)
    assert refreshed.evaluated_at == later  # unchanged figures, but as old as the refresh: stored again
    assert refreshed_revision > moved_revision


def test_a_state_is_current_while_its_figures_period_and_age_allow() -> None:
    slo = objective()
    stored = evaluate(slo, "shop", CLUSTER, WINDOWS, measured(T0, 0.0005, 0.0002), None).state

    def figures(at: datetime, ratio: float, period: float) -> Figures:
        found = evaluate(slo, "shop", CLUSTER, WINDOWS, measured(at, ratio, period), stored).figures
        assert found is not None, "a newer measurement has figures"
        return found

    soon = T0 + timedelta(seconds=10)
    assert current(stored, figures(soon, 0.0005, 0.0002))
    # Beyond rounding: a burn rate, the budget left.
    assert not current(stored, figures(soon, 0.00051, 0.0002))
    assert not current(stored, figures(soon, 0.0005, 0.00021))
    # Too old, however unchanged.
    assert not current(stored, figures(T0 + STATE_REFRESH, 0.0005, 0.0002))
    # A tier that starts firing is never the same figures.
    assert not current(stored, figures(soon, 0.1, 0.0002))


async def test_the_status_endpoint_answers_from_the_stored_states(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    engine_bus = await connect()
    engine = await book(engine_bus)
    await engine.evaluate(objective("availability"), namespace, WINDOWS, measured(T0, 0.1, period=0.0005))
    await engine.evaluate(objective("latency", service="checkout"), namespace, WINDOWS, measured(T0, 0.0))

    view = StatusView()
    stop = asyncio.Event()
    following = asyncio.create_task(view.follow(await engine_bus.kv(SLO_BUDGETS, BudgetShard), stop))
    await engine_bus.serve(SLO_STATUS, view.handle)
    caller = await connect()

    async def ask(**filters: object) -> SloStatusResponse:
        answer = await caller.request(SLO_STATUS, SloStatusRequest.model_validate(filters))
        assert isinstance(answer, SloStatusResponse)
        return answer

    try:
        await asyncio.wait_for(view.caught_up.wait(), timeout=10)
        everything = await ask(namespace=namespace)
        assert [(s.slo.name, s.firing) for s in everything.slos] == [
            ("availability", (BurnTier.PAGE,)),
            ("latency", ()),
        ]
        (burning,) = (await ask(namespace=namespace, burning_only=True)).slos
        assert burning.budget_remaining == pytest.approx(0.5)
        assert burning.evaluated_at == T0
        assert [s.slo.name for s in (await ask(namespace=namespace, service="checkout")).slos] == ["latency"]

        # A later evaluation shows in the answer: the view follows the bucket.
        await engine.evaluate(objective("availability"), namespace, WINDOWS, measured(T0 + MINUTE, 0.0))

        async def resolved() -> bool:
            return not (await ask(namespace=namespace, burning_only=True)).slos

        await eventually(resolved, timeout=10, interval=0.05, what="status shows the tier resolved")
        with pytest.raises(EndpointCallError, match="name needs a namespace"):
            await caller.request(SLO_STATUS, SloStatusRequest.model_construct(name="availability"))
    finally:
        stop.set()
        await following
