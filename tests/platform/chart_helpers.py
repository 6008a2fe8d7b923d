"""The chart under test and helm as the platform's tests run it: the paths, helm itself (its warnings fail the test,
as users would see them), a rendering, and lookups in what it rendered."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ballast.local.tools import tool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHART = DEPLOY / "helm" / "ballast"
KUBE_VERSION = "1.37.2"
# The prometheus-operator's CRDs: ../shared/crds, which CI lays beside the checkout (BALLAST_THIRD_PARTY_CRDS points
# elsewhere); no package registry serves them.
THIRD_PARTY_CRDS = Path(
    os.environ.get("BALLAST_THIRD_PARTY_CRDS", Path(__file__).resolve().parents[3] / "shared" / "crds")
)
SERVICE_MONITOR_CRD = THIRD_PARTY_CRDS / "prometheus-operator" / "monitoring.coreos.com_servicemonitors.yaml"


def helm(*args: str, kubeconfig: Path | None = None) -> str:
    command = [str(tool("helm")), *args]
    if kubeconfig is not None:
        command += ["--kubeconfig", str(kubeconfig)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stderr}"
    # Whatever helm warns about (a symlink in the chart, a world-readable kubeconfig) users would see too.
    assert not done.stderr, f"helm {' '.join(args)} warned:\n{done.stderr}"
    return done.stdout


def render(*values: str, namespace: str = "ballast-system", crds: bool = False) -> list[dict[str, Any]]:
    sets = [arg for value in values for arg in ("--set", value)]
    include = ["--include-crds"] if crds else []
    out = helm("template", "ballast", str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION, *include, *sets)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def pod_spec(docs: list[dict[str, Any]], service: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(docs, "Deployment", f"ballast-{service}")["spec"]["template"]["spec"]
    return spec


def container(docs: list[dict[str, Any]], service: str) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(docs, service)["containers"] if c["name"] == service]
    return dict(found)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
