"""`ballast demo`, the README's first command, end to end: every step converges and everything it started stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ballast.local.nats_server import free_port

pytestmark = pytest.mark.cluster


def test_the_demo_runs_every_step_and_cleans_up(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ballast.cli.main",
            "demo",
            "--state-dir",
            str(tmp_path),
            "--nats-port",
            str(free_port()),
            "--http-port-base",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = [line for line in done.stdout.splitlines() if line.startswith("[demo] ") and "/8 " in line]
    assert len(steps) == 8
    assert "refused by the API server (403)" in done.stdout
    assert "drift_repaired" in done.stdout
    assert done.stdout.rstrip().endswith("[ballast up] stopped")
