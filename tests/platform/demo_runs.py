"""Running a demo script the way `make <name>-demo` does, on free ports and in a test's own state directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ballast.local.nats_server import free_port

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run_demo(script: str, state_dir: Path, timeout: float = 600) -> str:
    """Runs `scripts/<script>` to its end and returns what it printed; fails the test with its output's tail when it
    exits non-zero (every demo fails itself when a step does not happen within its deadline)."""
    argv = [str(SCRIPTS / script), "--state-dir", str(state_dir), "--nats-port", str(free_port())]
    done = subprocess.run(
        [sys.executable, *argv, "--http-port-base", str(free_port())],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    return done.stdout
