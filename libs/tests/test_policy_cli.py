"""`ballast policy verify` (gator suites) and `ballast policy test` (conftest-like), with the real OPA: output and exit
codes. The gatekeeper-library suite comes from the shared checkout beside the repository (`BALLAST_CONFORMANCE`)."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ballast.cli.main import main

CONFORMANCE = Path(
    os.environ.get("BALLAST_CONFORMANCE") or Path(__file__).resolve().parents[3] / "shared" / "conformance"
)
ALLOWED_REPOS = CONFORMANCE / "gatekeeper-library" / "library" / "general" / "allowedrepos" / "suite.yaml"

TEMPLATE = """
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: k8srequiredlabels}
spec:
  crd: {spec: {names: {kind: K8sRequiredLabels}}}
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package k8srequiredlabels
      violation[{"msg": msg}] {
        label := input.parameters.labels[_]
        not input.review.object.metadata.labels[label]
        msg := sprintf("missing label %v", [label])
      }
"""
CONSTRAINTS = """
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sRequiredLabels
metadata: {name: owner}
spec: {parameters: {labels: [owner]}}
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sRequiredLabels
metadata: {name: team}
spec: {enforcementAction: warn, parameters: {labels: [team]}}
"""


def manifest(name: str, labels: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: shop, labels: {labels}}}\n"


@pytest.fixture
def policy_dir(tmp_path: Path, opa_binary: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BALLAST_OPA_BINARY", str(opa_binary))
    directory = tmp_path / "policy"
    directory.mkdir()
    (directory / "template.yaml").write_text(TEMPLATE)
    (directory / "constraints.yaml").write_text(CONSTRAINTS)
    return directory


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text("---\n".join([manifest("bare", "{}"), manifest("teamless", "{owner: me}"),
                                  manifest("good", "{owner: me, team: shop}")]))  # fmt: skip
    return path


def test_verify_runs_a_library_suite(opa_binary: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "verify", "--opa", str(opa_binary), str(ALLOWED_REPOS)]) == 0
    out = capsys.readouterr().out
    assert f"ok\t{ALLOWED_REPOS}" in out
    assert "5/5 cases passed" in out


def test_verify_fails_on_a_wrong_assertion(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bare.yaml").write_text(manifest("bare", "{}"))
    (tmp_path / "owner.yaml").write_text(CONSTRAINTS.split("---")[0])
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests:\n"
        "- name: labels\n  template: policy/template.yaml\n  constraint: owner.yaml\n  cases:\n"
        "  - name: bare-denied\n    object: bare.yaml\n    assertions: [{violations: 1, message: owner}]\n"
        "  - name: wrongly-expected-clean\n    object: bare.yaml\n    assertions: [{violations: no}]\n"
    )
    assert main(["policy", "verify", str(suite)]) == 1
    out = capsys.readouterr().out
    assert "--- FAIL: labels/wrongly-expected-clean" in out
    assert "want violations: no, got 1: ['missing label owner']" in out
    assert "1/2 cases passed" in out


def test_verify_expands_workloads_when_a_test_names_an_expansion_template(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "owner.yaml").write_text(CONSTRAINTS.split("---")[0])
    (tmp_path / "expansion.yaml").write_text(
        "apiVersion: expansion.gatekeeper.sh/v1alpha1\nkind: ExpansionTemplate\nmetadata: {name: expand-deployments}\n"
        "spec:\n  applyTo: [{groups: [apps], kinds: [Deployment], versions: [v1]}]\n  templateSource: spec.template\n"
        "  generatedGVK: {kind: Pod, group: '', version: v1}\n"
    )
    (tmp_path / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, labels: {owner: me}}\n"
        "spec: {template: {metadata: {labels: {}}, spec: {containers: [{name: c, image: nginx}]}}}\n"
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests:\n"
        "- name: expanded\n  template: policy/template.yaml\n  constraint: owner.yaml\n  expansion: expansion.yaml\n"
        "  cases:\n  - name: pod-without-owner\n    object: deployment.yaml\n    assertions:\n"
        "    - {violations: 1, message: '^\\[Implied by expand-deployments\\] missing label owner$'}\n"
    )
    assert main(["policy", "verify", str(suite)]) == 0, capsys.readouterr().out


def test_policy_test_text_output_and_exit_code(
    policy_dir: Path, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "test", str(manifests), "--policy", str(policy_dir)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"FAIL - {manifests} - ConfigMap/shop/bare - K8sRequiredLabels/owner: missing label owner" in lines
    assert f"WARN - {manifests} - ConfigMap/shop/teamless - K8sRequiredLabels/team: missing label team" in lines
    assert lines[-1] == "3 objects, 1 passed, 1 warnings, 1 failures"


def test_policy_test_json_and_junit(policy_dir: Path, manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test", str(manifests), "--policy", str(policy_dir), "-o", "json"]) == 1
    results = {r["object"]: r for r in json.loads(capsys.readouterr().out)}
    assert [f["msg"] for f in results["ConfigMap/shop/bare"]["failures"]] == ["missing label owner"]
    assert [w["constraint"] for w in results["ConfigMap/shop/teamless"]["warnings"]] == ["K8sRequiredLabels/team"]
    assert results["ConfigMap/shop/good"]["failures"] == results["ConfigMap/shop/good"]["warnings"] == []

    assert main(["policy", "test", str(manifests), "--policy", str(policy_dir), "-o", "junit"]) == 1
    suite = ET.fromstring(capsys.readouterr().out.split("?>", 1)[1]).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    failure = suite.find("testcase[@name='ConfigMap/shop/bare']/failure")
    assert failure is not None
    assert failure.get("message") == "missing label owner"


def test_fail_on_warn_and_clean_inputs(policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teamless = tmp_path / "teamless.yaml"
    teamless.write_text(manifest("teamless", "{owner: me}"))
    assert main(["policy", "test", str(teamless), "--policy", str(policy_dir)]) == 0
    assert main(["policy", "test", str(teamless), "--policy", str(policy_dir), "--fail-on-warn"]) == 1
    good = tmp_path / "good.yaml"
    good.write_text(manifest("good", "{owner: me, team: shop}"))
    assert main(["policy", "test", str(good), "--policy", str(policy_dir), "--fail-on-warn"]) == 0
    capsys.readouterr()


def test_a_policy_opa_refuses_stops_the_test_with_its_message(
    policy_dir: Path, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (policy_dir / "template.yaml").write_text(TEMPLATE.replace("not input", "nott input"))
    assert main(["policy", "test", str(manifests), "--policy", str(policy_dir)]) == 2
    assert "templates/K8sRequiredLabels/rego:" in capsys.readouterr().err
