"""Monitoring Ballast itself (deploy/monitoring, which links to the chart's files): the platform alerts pass the real
promtool's checks and their unit tests; the chart installs them as a PrometheusRule the prometheus-operator's CRD
accepts (from ../shared/crds beside the checkout, BALLAST_THIRD_PARTY_CRDS elsewhere); the Grafana dashboards are
valid dashboards whose every query is PromQL promtool accepts, over metrics Ballast exports, shipped by the chart as
ConfigMaps for Grafana's sidecar."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import CHART, DEPLOY, THIRD_PARTY_CRDS, find, render
from kubernetes_asyncio import client

from ballast.kube.install import install, load_manifests
from ballast.local.tools import tool

ROOT = DEPLOY.parent
ALERTS = CHART / "files" / "ballast-alerts.yaml"
DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))
ALERT_TESTS = Path(__file__).parent / "promtool" / "ballast-alerts.test.yaml"
PROMETHEUS_RULE_CRD = THIRD_PARTY_CRDS / "prometheus-operator" / "monitoring.coreos.com_prometheusrules.yaml"


def promtool(*args: str) -> str:
    done = subprocess.run([str(tool("promtool")), *args], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_the_platform_alerts_pass_promtool_and_each_fires_in_its_unit_tests() -> None:
    assert "SUCCESS: 12 rules found" in promtool("check", "rules", str(ALERTS))
    assert "SUCCESS" in promtool("test", "rules", str(ALERT_TESTS))
    # Every alert has a test that sees it fire.
    suite = yaml.safe_load(ALERT_TESTS.read_text())
    fired = {
        case["alertname"]
        for test in suite["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == set(alerts())


def test_every_alert_says_how_bad_and_what_happened() -> None:
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        # by job: the incident-bot takes the alert's service from it
        assert "job" in rule["expr"], name


def test_deploy_monitoring_links_the_charts_files() -> None:
    for name, target in (("ballast-alerts.yaml", ALERTS), ("dashboards", CHART / "files" / "dashboards")):
        link = DEPLOY / "monitoring" / name
        assert link.is_symlink()
        assert link.resolve() == target.resolve()


def test_the_chart_installs_the_alerts_as_a_prometheus_rule_only_when_asked() -> None:
    assert not [d for d in render() if d["kind"] == "PrometheusRule"]
    docs = render("prometheusRule.enabled=true", "prometheusRule.labels.release=prom")
    rule = find(docs, "PrometheusRule", "ballast-platform")
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())  # the same file, templates left for Prometheus


async def test_the_prometheus_operators_crd_accepts_the_rule(kube_api: Any, namespace: str) -> None:
    assert PROMETHEUS_RULE_CRD.is_file(), f"{PROMETHEUS_RULE_CRD} missing: the shared folder lies beside the checkout"
    await install(kube_api, load_manifests(PROMETHEUS_RULE_CRD))
    rule = find(render("prometheusRule.enabled=true", namespace=namespace), "PrometheusRule", "ballast-platform")
    custom = client.CustomObjectsApi(kube_api)
    created = await custom.create_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "prometheusrules", rule, dry_run="All"
    )
    assert len(created["spec"]["groups"]) == len(rule["spec"]["groups"])


# --- dashboards -------------------------------------------------------------------------------------------------------

# Grafana's variables, as a query reaches Prometheus: a multi-value variable in a regex matcher, the rate interval.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "$slo": ".*", "$job": ".*"}
METRIC = re.compile(r"\b((?:ballast|controller_runtime|workqueue)_[a-z_]+|up)\b")
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, query) of every panel target, Grafana's variables put in."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: a variable the test does not know: {expr}"
            found.append((panel["title"], expr))
    return found


def exported_metrics() -> set[str]:
    """The metric names Ballast's code defines (quoted where a metric is made)."""
    sources = [*ROOT.glob("libs/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]
    return {
        name
        for path in sources
        for name in re.findall(r'"((?:ballast|controller_runtime|workqueue)_[a-z_]+)"', path.read_text())
    }


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_a_dashboard_is_grafana_json_whose_queries_are_promql_over_ballasts_metrics(path: Path, tmp_path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] == path.stem
    assert "ballast" in dashboard["tags"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            assert panel["description"], panel["title"]
    found = queries(dashboard)
    # Each query as a recording rule: promtool parses and checks every one.
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": q} for i, (_, q) in enumerate(found)]}
        ]
    }
    check = tmp_path / "queries.yaml"
    check.write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(found)} rules found" in promtool("check", "rules", str(check))
    known = exported_metrics() | {"up"}
    for title, query in found:
        for name in METRIC.findall(query):
            base = next((name.removesuffix(s) for s in HISTOGRAM_SERIES if name.endswith(s)), name)
            assert base in known or name in known, f"{path.name}, {title}: {name} is not a metric Ballast exports"


def test_the_chart_ships_the_dashboards_for_grafanas_sidecar_only_when_asked() -> None:
    assert not [d for d in render() if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    docs = render("dashboards.enabled=true", "dashboards.annotations.grafana_folder=Ballast")
    shipped = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for path in DASHBOARDS:
        config_map = shipped[f"{path.stem}-dashboard"]
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Ballast"}
        assert json.loads(config_map["data"][path.name]) == json.loads(path.read_text())
