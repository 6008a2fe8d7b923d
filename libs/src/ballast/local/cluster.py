"""`python -m ballast.local.cluster up|down`: a local control plane that outlives the command (`make cluster-up`).

`up` starts it in the background and records what it started (pids, ports, kubeconfig) in `<state-dir>/state.json`;
`down` stops exactly the recorded processes, each only if its pid still belongs to the process that was started,
and removes the state dir. The default state dir `.ballast/cluster` in the current directory is git-ignored.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from ballast.local.controlplane import ControlPlane, ControlPlaneError, ControlPlaneState, stop_processes
from ballast.local.tools import ToolsMissing

DEFAULT_STATE_DIR = Path(".ballast/cluster")
STATE_FILE = "state.json"


def load_state(state_dir: Path) -> ControlPlaneState | None:
    path = state_dir / STATE_FILE
    if not path.is_file():
        return None
    return ControlPlaneState.model_validate_json(path.read_text())


def _print_access(state: ControlPlaneState) -> None:
    print(f"kubeconfig: {state.kubeconfig}")
    print(f"export KUBECONFIG={state.kubeconfig}")


def _stop(state: ControlPlaneState, state_dir: Path) -> int:
    stopped = stop_processes(state.processes)
    shutil.rmtree(state_dir, ignore_errors=True)
    return len(stopped)


def up(state_dir: Path, nodes: int, timeout: float) -> int:
    state_dir = state_dir.resolve()
    previous = load_state(state_dir)
    if previous is not None:
        alive = previous.running()
        if len(alive) == len(previous.processes):
            print(f"local cluster already running at {previous.server} (pids {', '.join(str(p.pid) for p in alive)})")
            _print_access(previous)
            return 0
        gone = sorted({p.name for p in previous.processes} - {p.name for p in alive})
        print(f"recorded cluster is incomplete ({', '.join(gone)} not running): stopping the rest, starting afresh")
        _stop(previous, state_dir)
    data_dir = state_dir / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    plane = ControlPlane(nodes=nodes, data_dir=data_dir)
    began = time.monotonic()
    try:
        plane.start(timeout=timeout)
    except (ToolsMissing, ControlPlaneError) as exc:
        # The processes are stopped; the logs stay for a closer look (the next `up` clears them).
        print(f"cluster up failed: {exc}\nfull logs: {data_dir / 'logs'}", file=sys.stderr)
        return 1
    state = plane.state()
    (state_dir / STATE_FILE).write_text(state.model_dump_json(indent=2))
    print(f"local cluster ready at {state.server} in {time.monotonic() - began:.1f}s ({nodes} kwok nodes)")
    print(f"logs: {data_dir / 'logs'}")
    _print_access(state)
    return 0


def down(state_dir: Path) -> int:
    state_dir = state_dir.resolve()
    state = load_state(state_dir)
    if state is None:
        print(f"no local cluster recorded in {state_dir}")
        return 0
    stopped = _stop(state, state_dir)
    print(f"local cluster stopped ({stopped} of {len(state.processes)} recorded processes were still running)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ballast.local.cluster",
        description="A local Kubernetes control plane that outlives the command.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the local control plane in the background")
    start.add_argument("--nodes", type=int, default=3, help="number of kwok fake nodes (default 3)")
    start.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness (default 120)")
    stop = commands.add_parser("down", help="stop the recorded local control plane")
    for command in (start, stop):
        command.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="default .ballast/cluster")
    args = parser.parse_args(argv)
    if args.command == "up" and args.nodes < 0:
        parser.error("--nodes must be >= 0")
    if args.command == "up":
        return up(args.state_dir, args.nodes, args.timeout)
    return down(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
