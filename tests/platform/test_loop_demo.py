"""`make loop-demo`, the platform's loop with every service running: the demo fails itself (exit 1) when a step does
not happen within its deadline, so a clean exit means the burn paged, chaos stopped, one incident opened and
resolved by itself, the freeze refused a deploy and let a hotfix through, and the postmortem and the what-if ran."""

from __future__ import annotations

from pathlib import Path

import pytest
from demo_runs import run_demo

pytestmark = pytest.mark.cluster


def test_the_loop_runs_from_burn_to_postmortem_and_stops(tmp_path: Path) -> None:
    out = run_demo("loop_demo.py", tmp_path / "loop")
    steps = [line for line in out.splitlines() if line.startswith("[loop-demo] ") and "/6 " in line]
    assert len(steps) == 6, steps
    assert "new image refused at admission: 403" in out
    assert "ErrorBudgetFreeze" in out or "error budget of SLO shop/availability" in out
    assert "INC-1 resolved by itself" in out
    assert "INC-2" not in out, "one burn, one incident"
    assert "# INC-1" in out or "INC-1" in out.split("6/6", 1)[1], "the postmortem printed"
    assert "allowed -> denied" in out, "the what-if found the create the candidate policy refuses"
    assert out.rstrip().endswith("[ballast up] stopped")
