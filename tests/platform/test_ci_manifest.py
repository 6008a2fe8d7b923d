"""The CI manifest for a platform repository (deploy/ci/github-actions.yaml): its ballast steps, run here as the
workflow runs them on deploy/samples, pass; the same policy step fails a WebApp that breaks the sample policies,
naming them in the JUnit report. GitHub Actions itself does not run here: the steps before them (checkout, Python,
Go, `make dev`, OPA's `go install`) set up what this checkout has already (OPA from `make tools`)."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from ballast.local.tools import tool

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "deploy" / "ci" / "github-actions.yaml"


def steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    found: list[dict[str, Any]] = job["steps"]
    return found


def ballast_steps() -> list[str]:
    return [step["run"] for step in steps() if str(step.get("run", "")).startswith(".venv/bin/ballast ")]


def run_step(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A step's command as the runner's shell runs it (bash -e), in `cwd`, OPA where the workflow puts it."""
    env = os.environ | {"BALLAST_OPA_BINARY": str(tool("opa"))}
    return subprocess.run(
        ["bash", "-ec", command], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300
    )


def test_the_workflow_sets_up_the_cli_and_the_policy_gates_opa() -> None:
    runs = [str(step.get("run", "")) for step in steps()]
    assert "make dev" in runs
    opa_version = next(
        line
        for line in (ROOT / "scripts" / "build-tools.sh").read_text().splitlines()
        if line.startswith("OPA_VERSION=")
    )
    assert any(f"open-policy-agent/opa@{opa_version.split(':-')[1].rstrip('}')}" in run for run in runs)
    assert len(ballast_steps()) == 3


def test_its_checks_pass_on_the_samples(tmp_path: Path) -> None:
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(ROOT / ".venv")
    (workdir / "deploy").symlink_to(ROOT / "deploy")
    for command in ballast_steps():
        done = run_step(command, workdir)
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    report = ET.parse(workdir / "policy-results.xml").getroot()
    (suite,) = report
    assert (suite.get("tests"), suite.get("failures")) == ("4", "0")
    (rules,) = [d for d in yaml.safe_load_all((workdir / "slo-rules.yaml").read_text()) if d]
    assert (rules["kind"], rules["metadata"]["name"]) == ("PrometheusRule", "checkout-requests")


def test_its_policy_step_fails_a_webapp_the_policies_refuse(tmp_path: Path) -> None:
    workdir = tmp_path / "checkout"
    samples = workdir / "deploy" / "samples"
    samples.mkdir(parents=True)
    (workdir / ".venv").symlink_to(ROOT / ".venv")
    (samples / "policies").symlink_to(ROOT / "deploy" / "samples" / "policies")
    (samples / "webapps.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "platform.example.com/v1",
                "kind": "WebApp",
                "metadata": {"name": "cart", "namespace": "shop"},
                "spec": {"image": "docker.io/library/nginx:1.27"},
            }
        )
    )
    policy_step = next(command for command in ballast_steps() if " policy test " in command)
    done = run_step(policy_step, workdir)
    assert done.returncode != 0  # the step, and so the check, fails
    report = ET.parse(workdir / "policy-results.xml").getroot()
    (case,) = report.iter("testcase")
    failure = case.find("failure")
    assert failure is not None
    assert failure.text is not None
    assert "BallastAllowedRegistries/webapps-from-the-company-registry" in failure.text
    assert "BallastMinReplicas/shop-webapps-run-two: WebApp cart may run 1 replica(s)" in failure.text
