"""The work queue and controller loop: dedupe, one worker per key, per-key backoff, requeue-after, isolation."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from ballast.kube.controller import Controller, ControllerMetrics, Result
from ballast.kube.workqueue import ShutDown, WorkQueue, WorkQueueMetrics
from ballast.testing import eventually

# Seconds allowed for what happens at once (no timer involved): reached only when the behaviour is broken, and far
# above what a loaded 2-core machine takes, as eventually()'s default deadline is.
PROMPT = 10.0


def queue(**options: float) -> tuple[WorkQueue[str], CollectorRegistry]:
    registry = CollectorRegistry()
    return WorkQueue("webapps", WorkQueueMetrics(registry), **options), registry


async def test_a_waiting_key_is_queued_once_however_often_it_is_added() -> None:
    q, registry = queue()
    for _ in range(3):
        q.add("shop/web")
    q.add("shop/api")
    assert [await q.get(), await q.get()] == ["shop/web", "shop/api"]
    assert len(q) == 0
    assert registry.get_sample_value("workqueue_adds_total", {"name": "webapps"}) == 2
    assert registry.get_sample_value("workqueue_depth", {"name": "webapps"}) == 0


async def test_a_key_added_while_processing_comes_back_only_after_done() -> None:
    q, _ = queue()
    q.add("shop/web")
    key = await q.get()
    q.add("shop/web")  # the object changed while we reconciled it
    assert len(q) == 0, "a key being processed must not be handed to a second worker"
    q.done(key)
    assert await asyncio.wait_for(q.get(), PROMPT) == "shop/web"


async def test_failing_keys_back_off_exponentially_per_key_and_forget_resets() -> None:
    q, registry = queue(base_delay=0.005, max_delay=0.04)
    delays = [q.add_rate_limited("shop/web") for _ in range(5)]
    assert delays == [0.005, 0.01, 0.02, 0.04, 0.04]
    assert q.next_delay("shop/api") == 0.005  # other keys are unaffected
    q.forget("shop/web")
    assert q.next_delay("shop/web") == 0.005
    assert registry.get_sample_value("workqueue_retries_total", {"name": "webapps"}) == 5


async def test_add_after_delivers_no_earlier_than_asked_and_the_earliest_wins() -> None:
    q, _ = queue()
    loop = asyncio.get_running_loop()
    asked = loop.time()
    q.add_after("shop/web", 5)
    q.add_after("shop/web", 0.05)  # an earlier requeue wins
    q.add_after("shop/web", 10)
    assert await asyncio.wait_for(q.get(), 30) == "shop/web"
    waited = loop.time() - asked
    assert waited >= 0.05
    # Before the next-earliest requeue (5 s): a later add_after that overrode the earliest would deliver at 5 s or
    # 10 s. The gap is two orders of magnitude above the 0.05 s asked, so a loaded machine cannot close it.
    assert waited < 5
    q.done("shop/web")
    assert len(q) == 0


def test_add_after_under_uvloop_where_a_due_time_already_past_gives_no_timer_handle() -> None:
    """The services run on uvloop, whose call_at for a time already past returns a plain Handle (no when()): a second
    add_after before that one fired crashed the slo-engine's controller (seen in CI's loop demo)."""
    import uvloop

    async def scenario() -> list[str]:
        q, _ = queue()
        q.add_after("shop/web", 1e-9)  # due before call_at is reached
        q.add_after("shop/api", 0.01)
        return sorted([await asyncio.wait_for(q.get(), PROMPT), await asyncio.wait_for(q.get(), PROMPT)])

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == ["shop/api", "shop/web"]


async def test_shut_down_wakes_blocked_workers() -> None:
    q, _ = queue()
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0)  # one loop iteration: the worker runs until it blocks in get()
    q.shut_down()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiting, PROMPT)
    q.add("shop/web")
    assert len(q) == 0


async def test_controller_retries_errors_with_backoff_then_succeeds() -> None:
    registry = CollectorRegistry()
    calls: list[str] = []

    async def reconcile(key: str) -> Result:
        calls.append(key)
        if len(calls) < 3:
            raise RuntimeError("apiserver said 409 Conflict")
        return Result()

    controller: Controller[str] = Controller("webapp", reconcile, ControllerMetrics(registry), workers=2)
    stop = asyncio.Event()
    running = asyncio.create_task(controller.run(stop))
    controller.enqueue("shop/web")
    await eventually(lambda: len(calls) == 3, what="two failures then success")
    labels = {"controller": "webapp"}
    assert registry.get_sample_value("controller_runtime_reconcile_total", labels | {"result": "error"}) == 2
    await eventually(
        lambda: registry.get_sample_value("controller_runtime_reconcile_total", labels | {"result": "success"}) == 1
    )
    assert controller.queue.failures("shop/web") == 0
    stop.set()
    await asyncio.wait_for(running, PROMPT)


async def test_requeue_after_reconciles_again() -> None:
    registry = CollectorRegistry()
    calls = 0

    async def reconcile(key: str) -> Result:
        nonlocal calls
        calls += 1
        return Result(requeue_after=0.01) if calls < 3 else Result()

    controller: Controller[str] = Controller("webapp", reconcile, ControllerMetrics(registry))
    stop = asyncio.Event()
    running = asyncio.create_task(controller.run(stop))
    controller.enqueue("shop/web")
    await eventually(lambda: calls == 3, what="two requeues")
    labels = {"controller": "webapp", "result": "requeue_after"}
    assert registry.get_sample_value("controller_runtime_reconcile_total", labels) == 2
    stop.set()
    await asyncio.wait_for(running, PROMPT)


async def test_a_slow_key_does_not_block_others() -> None:
    release = asyncio.Event()
    finished: list[str] = []

    async def reconcile(key: str) -> Result:
        if key == "shop/slow":
            await release.wait()
        finished.append(key)
        return Result()

    controller: Controller[str] = Controller("webapp", reconcile, ControllerMetrics(CollectorRegistry()), workers=2)
    stop = asyncio.Event()
    running = asyncio.create_task(controller.run(stop))
    controller.enqueue("shop/slow")
    controller.enqueue("shop/fast-1")
    controller.enqueue("shop/fast-2")
    await eventually(lambda: finished == ["shop/fast-1", "shop/fast-2"], what="fast keys done while slow one runs")
    release.set()
    await eventually(lambda: "shop/slow" in finished)
    stop.set()
    await asyncio.wait_for(running, PROMPT)
