"""The ecosystem tools `make tools` builds run: opa evaluates Rego, helm lints and renders a chart, promtool checks
alerting rules and rejects a broken one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from ballast.local.tools import tool

pytestmark = pytest.mark.cluster

FIXTURES = Path(__file__).parent / "fixtures"
CHART = FIXTURES / "chart" / "webapp"


def run(name: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    """(exit code, stdout and stderr together)."""
    done = subprocess.run(
        [str(tool(name)), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("image", "denials"),
    [
        ("registry.example.com/shop/web:1.2.3", []),
        (
            "docker.io/nginx:latest",
            [
                "image docker.io/nginx:latest is not from registry.example.com",
                "image docker.io/nginx:latest uses the mutable tag latest",
            ],
        ),
    ],
)
def test_opa_evaluates_a_policy(image: str, denials: list[str]) -> None:
    code, out = run(
        "opa",
        "eval",
        "--format=json",
        f"--data={FIXTURES / 'policy' / 'images.rego'}",
        "--stdin-input",
        "data.ballast.fixtures.images.deny",
        stdin=json.dumps({"image": image}),
    )
    assert code == 0, out
    assert sorted(json.loads(out)["result"][0]["expressions"][0]["value"]) == denials


@pytest.fixture
def helm_env(tmp_path: Path) -> dict[str, str]:
    """helm keeps caches and repository config under HOME: give it a throwaway one."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_DATA_HOME": str(tmp_path / "data"),
    }


def test_helm_lints_and_renders_a_chart(helm_env: dict[str, str]) -> None:
    code, out = run("helm", "lint", str(CHART), env=helm_env)
    assert code == 0, out
    assert "1 chart(s) linted, 0 chart(s) failed" in out

    code, out = run("helm", "template", "demo", str(CHART), "--set", "replicas=3", env=helm_env)
    assert code == 0, out
    (deployment,) = [doc for doc in yaml.safe_load_all(out) if doc]
    assert deployment["metadata"]["name"] == "demo-webapp"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/shop/web:1.2.3"


def test_helm_rejects_values_the_chart_schema_forbids(helm_env: dict[str, str]) -> None:
    code, out = run("helm", "template", "demo", str(CHART), "--set", "replicas=0", env=helm_env)
    assert code != 0
    assert "at '/replicas': minimum: got 0, want 1" in out


def test_promtool_accepts_valid_rules() -> None:
    code, out = run("promtool", "check", "rules", str(FIXTURES / "rules" / "valid.yaml"))
    assert code == 0, out
    assert "SUCCESS: 2 rules found" in out


def test_promtool_rejects_an_invalid_expression() -> None:
    code, out = run("promtool", "check", "rules", str(FIXTURES / "rules" / "invalid.yaml"))
    assert code == 1, out
    assert "FAILED" in out
    assert "unclosed left parenthesis" in out
