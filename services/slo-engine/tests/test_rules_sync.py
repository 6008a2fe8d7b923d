"""An SLO's rules as a PrometheusRule (the prometheus-operator's real CRD, from ../shared/crds beside the checkout or
BALLAST_THIRD_PARTY_CRDS) and as a rule file, against a real API server: files only while the CRD is absent, an
owned PrometheusRule once it is there, none for an SLO Prometheus cannot express, deleted with the SLO by the
garbage collector, and swept by `prune` when left behind."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from slo_fixtures import slo_api  # noqa: F401  (fixture)

from ballast.kube.apply import delete, get
from ballast.kube.install import install, load_manifests
from ballast.kube.resource import CUSTOM_RESOURCE_DEFINITION
from ballast.local.tools import tool
from ballast.slo import RuleOptions, load_texts
from ballast.slo.crd import GROUP, SLOS, VERSION, ServiceLevelObjectiveSpec, to_objective
from ballast.slo.rules import RecordingRule, document_rules
from ballast.slo_engine.rules_sync import (
    PROMETHEUS_RULE,
    RuleSync,
    desired_prometheus_rule,
    rule_file_text,
    slo_rules,
)
from ballast.testing import eventually

pytestmark = pytest.mark.cluster
THIRD_PARTY_CRDS = Path(
    os.environ.get("BALLAST_THIRD_PARTY_CRDS", Path(__file__).resolve().parents[4] / "shared" / "crds")
)
PROMETHEUS_RULE_CRD = THIRD_PARTY_CRDS / "prometheus-operator" / "monitoring.coreos.com_prometheusrules.yaml"
OPTIONS = RuleOptions(version=version("ballast-libs"))
CHECKOUT: dict[str, Any] = {
    "service": "checkout",
    "objective": 99.9,
    "window": {"duration": "30d"},
    "sli": {
        "eventRatio": {
            "errorQuery": 'sum(rate(http_requests_total{webapp="checkout",code=~"5.."}[{{.window}}]))',
            "totalQuery": 'sum(rate(http_requests_total{webapp="checkout"}[{{.window}}]))',
        }
    },
    "alerting": {"name": "CheckoutErrors"},
}
AVAILABILITY: dict[str, Any] = CHECKOUT | {"sli": {"webAppAvailability": {"webApp": "checkout"}}}


async def create_slo(kube_api: Any, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ServiceLevelObjective", "metadata": {"name": name}}
    created: dict[str, Any] = await client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, SLOS, body | {"spec": spec}
    )
    return created


def objective_of(obj: dict[str, Any]) -> Any:
    metadata = obj["metadata"]
    return to_objective(metadata["namespace"], metadata["name"], ServiceLevelObjectiveSpec.model_validate(obj["spec"]))


async def crd_absent(kube_api: Any) -> None:
    """Other tests of the session may have installed the CRD: this test starts without it."""
    await delete(kube_api, CUSTOM_RESOURCE_DEFINITION, None, PROMETHEUS_RULE.name)

    async def gone() -> bool:
        return await get(kube_api, CUSTOM_RESOURCE_DEFINITION, None, PROMETHEUS_RULE.name) is None

    await eventually(gone, timeout=60, what="the PrometheusRule CRD gone")


def test_the_prometheus_rule_is_owned_by_the_slo_and_holds_the_sloth_rules_labelled_with_the_namespace() -> None:
    slo = {"metadata": {"name": "checkout", "namespace": "shop", "uid": "0b1c"}, "spec": CHECKOUT}
    groups = slo_rules("shop", objective_of(slo), OPTIONS)
    rule = desired_prometheus_rule(slo, groups)
    assert rule["metadata"]["name"] == "checkout"
    assert rule["metadata"]["namespace"] == "shop"
    assert rule["metadata"]["labels"] == {
        "app.kubernetes.io/component": "SLO",
        "app.kubernetes.io/managed-by": "ballast-slo-engine",
    }
    (owner,) = rule["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "platform.example.com/v1",
        "kind": "ServiceLevelObjective",
        "name": "checkout",
        "uid": "0b1c",
        "controller": True,
        "blockOwnerDeletion": False,
    }
    names = [group["name"] for group in rule["spec"]["groups"]]
    assert names == [
        "sloth-slo-sli-recordings-checkout-checkout",
        "sloth-slo-meta-recordings-checkout-checkout",
        "sloth-slo-alerts-checkout-checkout",
    ]
    every_rule = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    recordings = [r for r in every_rule if "record" in r]
    assert all(r["labels"]["namespace"] == "shop" for r in recordings)  # and so the alerts' series
    info = next(r for r in recordings if r["record"] == "sloth_slo_info")
    assert info["labels"]["sloth_spec"] == "platform.example.com/v1"


def test_an_slo_with_a_minimum_request_rate_gets_its_request_rates_recorded_in_a_group_of_its_own(
    tmp_path: Path,
) -> None:
    slo = {"metadata": {"name": "checkout", "namespace": "shop", "uid": "0b1c"}, "spec": CHECKOUT}
    sloths = slo_rules("shop", objective_of(slo), OPTIONS)
    gated = {"metadata": slo["metadata"], "spec": CHECKOUT | {"minRequestRate": 0.5}}
    groups = slo_rules("shop", objective_of(gated), OPTIONS)
    # Sloth's three groups first (their rules differ only where the alerts check the minimum), then the engine's.
    assert [g.name for g in groups[:3]] == [g.name for g in sloths]
    assert groups[:2] == sloths[:2]
    (extra,) = groups[3:]
    assert extra.name == "ballast-slo-requests-checkout-checkout"
    recorded = {rule.record: rule for rule in extra.rules if isinstance(rule, RecordingRule)}
    # The long windows of the Workbook's four conditions, where the generated alerts check the minimum.
    assert sorted(recorded) == [f"ballast:slo_requests:rate{w}" for w in ("1d", "1h", "3d", "6h")]
    hourly = recorded["ballast:slo_requests:rate1h"]
    assert hourly.expr == 'sum(sum(rate(http_requests_total{webapp="checkout"}[1h])))'
    assert hourly.labels["namespace"] == "shop"
    assert (hourly.labels["sloth_service"], hourly.labels["sloth_slo"], hourly.labels["sloth_window"]) == (
        "checkout",
        "checkout",
        "1h",
    )
    path = tmp_path / "shop_checkout.yaml"
    path.write_text(rule_file_text(groups, OPTIONS.version))
    checked = subprocess.run(
        [str(tool("promtool")), "check", "rules", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_rules_follow_the_slo_as_a_prometheus_rule_when_the_crd_exists_and_as_files(
    kube_api: Any, slo_api: None, namespace: str, tmp_path: Path
) -> None:
    assert PROMETHEUS_RULE_CRD.is_file(), f"{PROMETHEUS_RULE_CRD} missing: the shared folder lies beside the checkout"
    await crd_absent(kube_api)
    sync = RuleSync(kube_api, tmp_path, OPTIONS)
    checkout = await create_slo(kube_api, namespace, "checkout", CHECKOUT)

    without_crd = await sync.sync(checkout, objective_of(checkout))
    assert not without_crd.prometheus_rule
    assert without_crd.rule_file == tmp_path / f"{namespace}_checkout.yaml"
    written = yaml.safe_load(without_crd.rule_file.read_text())
    assert written["groups"][0]["name"] == "sloth-slo-sli-recordings-checkout-checkout"

    await install(kube_api, load_manifests(PROMETHEUS_RULE_CRD))

    async def synced_as_object() -> bool:
        return (await sync.sync(checkout, objective_of(checkout))).prometheus_rule

    await eventually(
        synced_as_object, timeout=30, interval=0.2, what="the PrometheusRule applied once the CRD is served"
    )
    stored = await get(kube_api, PROMETHEUS_RULE, namespace, "checkout")
    assert stored is not None
    assert stored["metadata"]["ownerReferences"][0]["uid"] == checkout["metadata"]["uid"]
    assert len(stored["spec"]["groups"]) == 3  # the API server accepted every rule as the CRD's schema says

    # Deleted by hand: the next sync puts it back.
    assert await delete(kube_api, PROMETHEUS_RULE, namespace, "checkout")
    assert await get(kube_api, PROMETHEUS_RULE, namespace, "checkout") is None
    assert (await sync.sync(checkout, objective_of(checkout))).prometheus_rule
    assert await get(kube_api, PROMETHEUS_RULE, namespace, "checkout") is not None

    # An SLO Prometheus cannot express (availability from the cluster's facts) has no rules.
    available = await create_slo(kube_api, namespace, "available", AVAILABILITY)
    none = await sync.sync(available, objective_of(available))
    assert none.unsupported is not None
    assert "webapp_availability SLI has no Prometheus error-ratio query" in none.unsupported
    assert await get(kube_api, PROMETHEUS_RULE, namespace, "available") is None
    assert not (tmp_path / f"{namespace}_available.yaml").exists()

    # The SLO goes: the garbage collector deletes its PrometheusRule, `prune` the file nobody else removes.
    await client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, "checkout")

    async def collected() -> bool:
        return await get(kube_api, PROMETHEUS_RULE, namespace, "checkout") is None

    await eventually(collected, timeout=60, interval=0.2, what="the PrometheusRule deleted with its SLO")
    assert (tmp_path / f"{namespace}_checkout.yaml").exists()
    live = [(namespace, "available"), *await _others(kube_api, namespace)]
    assert await sync.prune(live) == [(namespace, "checkout")]
    assert not (tmp_path / f"{namespace}_checkout.yaml").exists()


async def test_prune_removes_prometheus_rules_of_slos_deleted_while_the_engine_was_away(
    kube_api: Any, slo_api: None, namespace: str, tmp_path: Path
) -> None:
    await install(kube_api, load_manifests(PROMETHEUS_RULE_CRD))
    sync = RuleSync(kube_api, tmp_path, OPTIONS)
    kept = await create_slo(kube_api, namespace, "kept", CHECKOUT)
    left = await create_slo(kube_api, namespace, "left", CHECKOUT)

    async def applied(obj: dict[str, Any]) -> bool:
        return (await sync.sync(obj, objective_of(obj))).prometheus_rule

    await eventually(lambda: applied(kept), timeout=30, interval=0.2, what="kept's PrometheusRule")
    assert await applied(left)

    # The engine (and only it: the owner is still there) is told "left" is gone; other namespaces' rules are not ours
    # to judge here, so only this namespace's keys are compared.
    pruned = await sync.prune([(namespace, "kept"), *await _others(kube_api, namespace)])
    assert pruned == [(namespace, "left")]
    assert await get(kube_api, PROMETHEUS_RULE, namespace, "left") is None
    assert await get(kube_api, PROMETHEUS_RULE, namespace, "kept") is not None
    assert rule_files(tmp_path) == [f"{namespace}_kept.yaml"]


def rule_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def _others(kube_api: Any, namespace: str) -> list[tuple[str, str]]:
    """Ballast's PrometheusRules of other tests' namespaces: left alone."""
    listed = await client.CustomObjectsApi(kube_api).list_cluster_custom_object(
        PROMETHEUS_RULE.group, PROMETHEUS_RULE.version, PROMETHEUS_RULE.plural
    )
    keys = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed["items"]]
    return [key for key in keys if key[0] != namespace]


def test_ballast_slo_generate_writes_for_an_object_the_rules_the_engine_syncs() -> None:
    text = yaml.safe_dump(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ServiceLevelObjective",
            "metadata": {"name": "checkout", "namespace": "shop"},
            "spec": CHECKOUT,
        }
    )
    loaded = load_texts([("slo.yaml", text)], period=timedelta(days=30))  # Sloth's default, unused by an object
    assert loaded.errors == []
    (group,) = loaded.groups
    from_file = document_rules(group, OPTIONS).groups
    from_cluster = slo_rules(
        "shop", to_objective("shop", "checkout", ServiceLevelObjectiveSpec.model_validate(CHECKOUT)), OPTIONS
    )
    assert from_file == from_cluster
