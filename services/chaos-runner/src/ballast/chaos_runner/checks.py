"""The steady-state hypothesis: ready replicas, an SLO's burn rate (asked of the slo-engine over `svc.slo.status`),
an HTTP check. A check that cannot be measured fails: chaos runs only while the steady state is known to hold.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from ballast.chaos_runner.api import Experiment, Hypothesis
from ballast.events.contracts.chaos import CheckKind
from ballast.events.contracts.slo import SloState

SloReader = Callable[[str, str], Awaitable[SloState | None]]  # (namespace, name) → the SLO's state, None: unknown


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: CheckKind
    passed: bool
    observed: str


def ready_check(hypothesis: Hypothesis, ready: int) -> CheckResult | None:
    if hypothesis.min_ready_replicas is None:
        return None
    wanted = hypothesis.min_ready_replicas
    return CheckResult(
        "ready-replicas", CheckKind.READY_REPLICAS, ready >= wanted, f"{ready} ready, at least {wanted} wanted"
    )


def burn_check(hypothesis: Hypothesis, state: SloState | None) -> CheckResult | None:
    if hypothesis.max_burn_rate is None:
        return None
    limit = hypothesis.max_burn_rate
    if state is None:
        return CheckResult("slo-burn", CheckKind.SLO_BURN, False, f"SLO {hypothesis.slo} has no known state")
    shortest = min(state.burn_rates, key=lambda w: w.window, default=None)
    if shortest is None:
        return CheckResult("slo-burn", CheckKind.SLO_BURN, False, f"SLO {hypothesis.slo} reports no burn rate")
    return CheckResult(
        "slo-burn",
        CheckKind.SLO_BURN,
        shortest.burn_rate < limit,
        f"burn rate {shortest.burn_rate:.3g} over {shortest.window}, below {limit:g} wanted",
    )


async def http_check(hypothesis: Hypothesis, session: aiohttp.ClientSession) -> CheckResult | None:
    check = hypothesis.http
    if check is None:
        return None
    try:
        async with session.get(
            check.url, timeout=aiohttp.ClientTimeout(total=check.timeout_seconds), allow_redirects=False
        ) as response:
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return CheckResult("http", CheckKind.HTTP, False, f"GET {check.url} failed: {type(exc).__name__}")
    return CheckResult(
        "http",
        CheckKind.HTTP,
        status == check.expect_status,
        f"GET {check.url}: {status}, {check.expect_status} wanted",
    )


async def check_all(
    experiment: Experiment, ready: int, slo: SloState | None, session: aiohttp.ClientSession
) -> list[CheckResult]:
    hypothesis = experiment.spec.hypothesis
    http = await http_check(hypothesis, session)
    return [r for r in (ready_check(hypothesis, ready), burn_check(hypothesis, slo), http) if r is not None]


def budget_spent(start_remaining: float | None, now_remaining: float | None) -> float:
    """Fraction of the period's budget consumed since the run started (never negative: a recovering budget owes
    nothing)."""
    if start_remaining is None or now_remaining is None:
        return 0.0
    return max(0.0, start_remaining - now_remaining)


def over_budget(max_spend_percent: float | None, start_remaining: float | None, spent: float) -> bool:
    """Whether the run spent more than its share of what was left when it started."""
    if max_spend_percent is None or start_remaining is None:
        return False
    return spent > max(start_remaining, 0.0) * max_spend_percent / 100
