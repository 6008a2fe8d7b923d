"""`python -m ballast.local.cluster up|down` (make cluster-up / cluster-down)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from ballast.kube.client import api_client
from ballast.local.cluster import STATE_FILE, load_state, main
from ballast.local.controlplane import ControlPlaneState, ProcessRecord


def cluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ballast.local.cluster", *args], capture_output=True, text=True, timeout=180, check=False
    )


@pytest.mark.cluster
async def test_up_leaves_a_cluster_running_that_down_stops(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"
    try:
        up = await asyncio.to_thread(cluster, "up", "--nodes", "1", "--state-dir", str(state_dir))
        assert up.returncode == 0, up.stdout + up.stderr
        state = load_state(state_dir)
        assert state is not None
        assert [p.name for p in state.running()] == [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        ]
        assert f"export KUBECONFIG={state.kubeconfig}" in up.stdout

        api = await api_client(str(state.kubeconfig))
        async with api:
            nodes = await client.CoreV1Api(api).list_node()
        assert [n.metadata.name for n in nodes.items] == ["kwok-node-0"]

        again = await asyncio.to_thread(cluster, "up", "--state-dir", str(state_dir))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already running" in again.stdout
        assert f"export KUBECONFIG={state.kubeconfig}" in again.stdout
        assert load_state(state_dir) == state

        down = await asyncio.to_thread(cluster, "down", "--state-dir", str(state_dir))
        assert down.returncode == 0, down.stdout + down.stderr
        assert "stopped (5 of 5 recorded processes were still running)" in down.stdout
        assert not any(p.running() for p in state.processes)
        assert not state_dir.exists()
    finally:
        await asyncio.to_thread(cluster, "down", "--state-dir", str(state_dir))


def test_down_signals_only_processes_that_are_still_the_recorded_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    state_dir = tmp_path / "cluster"

    def record(*processes: ProcessRecord) -> None:
        state_dir.mkdir(exist_ok=True)
        state = ControlPlaneState(
            data_dir=state_dir / "data",
            kubeconfig=state_dir / "data" / "kubeconfig",
            server="https://127.0.0.1:6443",
            nodes=0,
            ports={},
            processes=list(processes),
        )
        (state_dir / STATE_FILE).write_text(state.model_dump_json())

    try:
        sleep = ProcessRecord.of("etcd", sleeper.pid, Path(shutil.which("sleep") or "sleep"))
        assert sleep.running()
        # The same pid, but a process started at another time (the pid was reused), or running another binary.
        reused = sleep.model_copy(update={"start_ticks": sleep.start_ticks - 1})
        other = sleep.model_copy(update={"binary": "/usr/local/bin/etcd"})
        record(reused, other)
        assert main(["down", "--state-dir", str(state_dir)]) == 0
        assert "stopped (0 of 2 recorded processes were still running)" in capsys.readouterr().out
        assert sleeper.poll() is None
        assert not state_dir.exists()

        record(sleep)
        assert main(["down", "--state-dir", str(state_dir)]) == 0
        assert "stopped (1 of 1 recorded processes were still running)" in capsys.readouterr().out
        assert sleeper.wait(timeout=10) == -15
    finally:
        sleeper.kill()
        sleeper.wait()
