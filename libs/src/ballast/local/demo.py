"""What the narrated demos on the local platform share (`make slo-demo`, `incident-demo`, `loop-demo`): an SLO that
burns within seconds instead of hours, the state directory each run starts afresh in, and waiting on a condition
with a deadline.

So that a demo takes minutes, its SLO's period is 1h with Sloth-format AlertWindows of 5s to 1m (instead of 30d with
5m to 3d); the factors scale with the period as for any SLO.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

FAST_ALERT_WINDOWS = """\
apiVersion: sloth.slok.dev/v1
kind: AlertWindows
spec:
  sloPeriod: 1h
  page: {quick: {errorBudgetPercent: 2, shortWindow: 5s, longWindow: 20s},
         slow: {errorBudgetPercent: 5, shortWindow: 10s, longWindow: 30s}}
  ticket: {quick: {errorBudgetPercent: 10, shortWindow: 15s, longWindow: 45s},
           slow: {errorBudgetPercent: 10, shortWindow: 30s, longWindow: 1m}}
"""


def traffic_selector(namespace: str, webapp: str) -> str:
    """The label matchers of a WebApp's synthetic traffic series (`ballast.local.traffic`)."""
    return f'namespace="{namespace}",webapp="{webapp}"'


def availability_slo(
    namespace: str, webapp: str, *, name: str = "availability", extra_spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A 99 % availability SLO over a WebApp's synthetic traffic (5xx are errors), period 1h, paging as
    `WebAvailability` (an SLO without an alert name has no tiers: it never pages)."""
    where = traffic_selector(namespace, webapp)
    return {
        "apiVersion": "platform.example.com/v1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "service": webapp,
            "objective": 99,
            "window": {"duration": "1h"},
            "sli": {
                "eventRatio": {
                    "errorQuery": f'sum(rate(http_requests_total{{{where},code=~"5.."}}[{{{{.window}}}}]))',
                    "totalQuery": f"sum(rate(http_requests_total{{{where}}}[{{{{.window}}}}]))",
                }
            },
            "alerting": {"name": "WebAvailability"},
            **(extra_spec or {}),
        },
    }


def fresh_state_dir(state_dir: Path, demo: str) -> Path | None:
    """`state_dir` emptied for a new run, with the fast alert windows in `alert-windows/`; None (nothing touched)
    when it holds something this demo did not make. A run counts what it sees and a postmortem reads back two hours,
    so a previous run's events must not be there; only a directory carrying this demo's marker is wiped."""
    marker = state_dir / f".{demo}"
    if state_dir.exists() and any(state_dir.iterdir()):
        if not marker.exists():
            return None
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    marker.touch()
    windows = state_dir / "alert-windows"
    windows.mkdir()
    (windows / "fast.yaml").write_text(FAST_ALERT_WINDOWS)
    return windows


async def until(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 120.0, interval: float = 0.25
) -> T:
    """The probe's first truthy answer; TimeoutError naming `what` (the demo fails) if none comes within `timeout`."""
    deadline = time.monotonic() + timeout
    while not (found := await probe()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(interval)
    return found
