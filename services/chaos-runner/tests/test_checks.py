"""The steady-state checks and the budget arithmetic; the HTTP check against a real local HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from ballast.chaos_runner.api import Hypothesis
from ballast.chaos_runner.checks import budget_spent, burn_check, http_check, over_budget, ready_check
from ballast.events.contracts.slo import SloRef, SloState, WindowRate


def slo(*rates: tuple[timedelta, float], remaining: float = 0.5) -> SloState:
    return SloState(
        slo=SloRef(namespace="shop", name="avail", service="shop"),
        objective=99.9,
        period=timedelta(days=30),
        budget_remaining=remaining,
        burn_rates=tuple(WindowRate(window=w, burn_rate=r) for w, r in rates),
        budget_exhausted=False,
        time_to_exhaustion=None,
        evaluated_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def test_ready_replicas() -> None:
    assert ready_check(Hypothesis(), 0) is None
    held = ready_check(Hypothesis(min_ready_replicas=2), 2)
    assert held is not None
    assert held.passed
    failed = ready_check(Hypothesis(min_ready_replicas=2), 1)
    assert failed is not None
    assert (failed.passed, failed.observed) == (False, "1 ready, at least 2 wanted")


def test_the_burn_check_reads_the_shortest_window_and_fails_when_unknown() -> None:
    hypothesis = Hypothesis(max_burn_rate=2, slo="avail")
    state = slo((timedelta(hours=1), 5.0), (timedelta(minutes=5), 1.5))
    held = burn_check(hypothesis, state)
    assert held is not None
    assert held.passed, held.observed
    burning = burn_check(hypothesis, slo((timedelta(minutes=5), 2.0)))
    assert burning is not None
    assert not burning.passed
    unknown = burn_check(hypothesis, None)
    assert unknown is not None
    assert not unknown.passed
    assert "no known state" in unknown.observed


def test_the_budget_spent_is_what_the_run_saw_go_and_its_share_of_what_was_left() -> None:
    assert budget_spent(0.8, 0.75) == pytest.approx(0.05)
    assert budget_spent(0.8, 0.9) == 0.0, "a recovering budget owes nothing"
    assert budget_spent(None, 0.5) == 0.0
    assert not over_budget(10, 0.8, 0.08)
    assert over_budget(10, 0.8, 0.081)
    assert over_budget(10, -0.1, 0.001), "nothing left: any spending is too much"
    assert not over_budget(None, 0.8, 0.5)


@pytest.fixture
async def http_server() -> AsyncIterator[str]:
    async def healthy(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/healthz", healthy)
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_the_http_check_wants_the_expected_status(http_server: str) -> None:
    async with aiohttp.ClientSession() as session:
        ok = await http_check(Hypothesis.model_validate({"http": {"url": f"{http_server}/healthz"}}), session)
        assert ok is not None
        assert ok.passed
        down = await http_check(Hypothesis.model_validate({"http": {"url": f"{http_server}/broken"}}), session)
        assert down is not None
        assert (down.passed, down.observed) == (False, f"GET {http_server}/broken: 503, 200 wanted")
        gone = await http_check(
            Hypothesis.model_validate({"http": {"url": "http://127.0.0.1:9/none", "timeoutSeconds": 1}}), session
        )
        assert gone is not None
        assert not gone.passed
        assert "failed" in gone.observed
