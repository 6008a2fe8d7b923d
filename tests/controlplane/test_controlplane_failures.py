"""Start-up failures a user can hit: binaries not built, a component that dies, one that never gets ready.
Stand-in binaries (shell scripts) make these fast and independent of `make tools`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ballast.local.controlplane import COMPONENTS, ControlPlane, ControlPlaneError
from ballast.local.tools import ToolsMissing
from ballast.testing.kube import existing_cluster_kubeconfig


def stand_in_tools(root: Path, etcd_script: str) -> Path:
    """A tools dir whose etcd runs `etcd_script`; every other component would just idle."""
    bin_dir = root / "tools" / "bin"
    bin_dir.mkdir(parents=True)
    for name in COMPONENTS:
        script = etcd_script if name == "etcd" else "exec sleep 60"
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir.parent / "kwok-stages.yaml").write_text("kind: Stage\n")
    return bin_dir


def test_missing_binaries_fail_with_the_make_tools_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_TOOLS_BIN", str(tmp_path / "never-built"))
    plane = ControlPlane()
    with pytest.raises(ToolsMissing, match="run `make tools`"):
        plane.start()
    assert plane.records == []
    assert not plane.data_dir.exists()  # its temporary data dir is cleaned up too


def test_a_component_that_exits_fails_start_up_with_its_log_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = "etcdmain: listen tcp 127.0.0.1:2380: bind: address already in use"
    monkeypatch.setenv("BALLAST_TOOLS_BIN", str(stand_in_tools(tmp_path, f"echo '{message}' >&2; exit 1")))
    plane = ControlPlane(data_dir=tmp_path / "data")
    with pytest.raises(ControlPlaneError) as failed:
        plane.start(timeout=30)
    assert "etcd exited with code 1 during start-up" in str(failed.value)
    assert message in str(failed.value)
    assert [r.name for r in plane.records] == ["etcd"]


def test_a_component_that_never_gets_ready_times_out_and_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BALLAST_TOOLS_BIN", str(stand_in_tools(tmp_path, "echo 'waiting for quorum'; exec sleep 60")))
    plane = ControlPlane(data_dir=tmp_path / "data")
    with pytest.raises(ControlPlaneError) as failed:
        plane.start(timeout=2)
    assert "etcd not ready within 2s (GET /health:" in str(failed.value)
    assert "waiting for quorum" in str(failed.value)
    (etcd,) = plane.records
    assert not etcd.running()
    assert not Path(f"/proc/{etcd.pid}").exists()  # stopped and reaped, not left behind


def test_an_existing_cluster_needs_a_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_USE_EXISTING_CLUSTER", "1")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with pytest.raises(pytest.UsageError, match="needs KUBECONFIG"):
        existing_cluster_kubeconfig()


def test_a_kubeconfig_alone_does_not_redirect_the_tests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").write_text("{}")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    monkeypatch.delenv("BALLAST_USE_EXISTING_CLUSTER", raising=False)
    assert existing_cluster_kubeconfig() is None
