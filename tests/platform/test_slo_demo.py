"""`make slo-demo`: an SLO on a WebApp with the real Prometheus. The demo fails itself (exit 1) when a step does not
happen within its deadline, so a clean exit means the rules loaded, injected errors paged in Prometheus and in the
engine, and recovery cleared both; the figures it prints come from the engine's own evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
from demo_runs import run_demo

pytestmark = pytest.mark.cluster


def test_injected_errors_page_in_prometheus_and_the_engine_and_recovery_clears_both(tmp_path: Path) -> None:
    out = run_demo("slo_demo.py", tmp_path / "slo")
    steps = [line for line in out.splitlines() if line.startswith("[slo-demo] ") and "/6 " in line]
    assert len(steps) == 6, steps
    assert "page tier firing in Prometheus and in the engine" in out
    assert "io.ballast.slo.page_burn_firing.v1" in out
    assert "io.ballast.slo.page_burn_resolved.v1" in out
    # The engine's burn rates, as the demo prints them from the state it stored.
    assert "engine firing: page" in out
    assert "cleared in both" in out
    assert "[slo-demo] done:" in out
