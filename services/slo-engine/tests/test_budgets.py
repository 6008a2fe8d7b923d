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
    STATE_REFRESH,
    BudgetBook,
    Evaluand,
    StoredBudget,
    UnpublishedEvent,
    budget_key,
    current,
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
    kv = await bus.kv(SLO_BUDGETS, StoredBudget)
    return BudgetBook(kv, bus.publisher, CATALOGUE.registry, CLUSTER, f"/clusters/{CLUSTER}/slo-engine")


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


async def test_transitions_a_stopped_run_left_unpublished_go_out_once(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    bus = await connect()
    # What a run that stored its evaluation and stopped before publishing leaves in the bucket.
    evaluation = evaluate(objective(), namespace, CLUSTER, WINDOWS, measured(T0, 0.1), None)
    (transition,) = evaluation.transitions
    left = StoredBudget(
        state=evaluation.state, unpublished=(UnpublishedEvent.of(namespace, "availability", transition),)
    )
    kv = await bus.kv(SLO_BUDGETS, StoredBudget)
    await kv.put(budget_key(namespace, "availability"), left)

    engine = await book(await connect())
    await engine.evaluate(objective(), namespace, WINDOWS, measured(T0 + MINUTE, 0.1))
    # Published by the next evaluation, and cleared from the bucket.
    assert await published(bus, namespace) == [firing_id(namespace, T0)]
    entry = await kv.get(budget_key(namespace, "availability"))
    assert entry is not None
    assert entry.value is not None
    assert entry.value.unpublished == ()

    # Had the run published them before it stopped, publishing again stores nothing new.
    await kv.put(budget_key(namespace, "availability"), left)
    await engine.evaluate(objective(), namespace, WINDOWS, measured(T0 + 2 * MINUTE, 0.1))
    assert await published(bus, namespace) == [firing_id(namespace, T0)]


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
    stored = await (await connect()).kv(SLO_BUDGETS, StoredBudget)
    for name in names:
        entry = await stored.get(budget_key(namespace, name))
        assert entry is not None
        assert entry.value is not None
        assert entry.value.unpublished == ()  # told, then cleared
    # The same measurement again: nothing changes, nothing is written or told.
    assert await leader.evaluate_all(cycle(later, 0.1)) == second
    assert len(await published(await connect(), namespace)) == len(told)


async def test_a_state_whose_figures_did_not_move_is_stored_again_only_after_the_refresh(
    connect: Connect, unique: Callable[[str], str]
) -> None:
    namespace = unique("shop-")
    leader = await book(await connect())
    kv = await (await connect()).kv(SLO_BUDGETS, StoredBudget)

    async def cycle(at: datetime, ratio: float) -> tuple[BudgetState, int]:
        (state,) = await leader.evaluate_all(
            [Evaluand(objective("a"), namespace, WINDOWS, measured(at, ratio, 0.0002))]
        )
        assert isinstance(state, BudgetState)
        entry = await kv.get(budget_key(namespace, "a"))
        assert entry is not None
        return state, entry.revision

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
    following = asyncio.create_task(view.follow(await engine_bus.kv(SLO_BUDGETS, StoredBudget), stop))
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
