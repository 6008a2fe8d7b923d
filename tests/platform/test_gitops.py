"""The GitOps manifests (deploy/gitops): Argo CD's Application and Flux's GitRepository and HelmRelease point at this
chart, and the chart renders with exactly the values they give (helm, with the chart's schema, warning about
nothing): the services wired to NATS and Prometheus, the ServiceMonitors, the platform alerts and the dashboards.
Neither Argo CD nor Flux runs here: what they would apply is what `helm template` renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import CHART, DEPLOY, KUBE_VERSION, container, env_of, find, helm

ROOT = DEPLOY.parent
GITOPS = DEPLOY / "gitops"


def argocd() -> tuple[dict[str, Any], Path, str, dict[str, Any]]:
    (app,) = yaml.safe_load_all((GITOPS / "argocd-application.yaml").read_text())
    source = app["spec"]["source"]
    return app, ROOT / source["path"], app["spec"]["destination"]["namespace"], source["helm"]["valuesObject"]


def flux() -> tuple[dict[str, Any], Path, str, dict[str, Any]]:
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all((GITOPS / "flux-helmrelease.yaml").read_text())}
    release = docs["HelmRelease"]
    chart = release["spec"]["chart"]["spec"]
    assert chart["sourceRef"] == {"kind": "GitRepository", "name": docs["GitRepository"]["metadata"]["name"]}
    return release, ROOT / chart["chart"], release["spec"]["targetNamespace"], release["spec"]["values"]


def test_argo_cd_syncs_the_chart_into_its_namespace() -> None:
    app, chart, namespace, _ = argocd()
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    assert chart.resolve() == CHART.resolve()
    assert namespace == "ballast-system"
    sync = app["spec"]["syncPolicy"]
    assert sync["automated"] == {"prune": True, "selfHeal": True}
    assert {"CreateNamespace=true", "ServerSideApply=true"} <= set(sync["syncOptions"])


def test_flux_releases_the_chart_from_its_git_source() -> None:
    release, chart, namespace, _ = flux()
    assert (release["apiVersion"], release["kind"]) == ("helm.toolkit.fluxcd.io/v2", "HelmRelease")
    assert chart.resolve() == CHART.resolve()
    assert namespace == "ballast-system"
    assert release["spec"]["install"]["crds"] == release["spec"]["upgrade"]["crds"] == "CreateReplace"


def test_both_give_the_same_values() -> None:
    assert argocd()[3] == flux()[3]


@pytest.mark.parametrize("manifest", [argocd, flux], ids=["argocd", "flux"])
def test_the_chart_renders_with_their_values(manifest: Any, tmp_path: Path) -> None:
    _, chart, namespace, values = manifest()
    given = tmp_path / "values.yaml"
    given.write_text(yaml.safe_dump(values))
    rendered = helm(
        "template", "ballast", str(chart), "-n", namespace, "--kube-version", KUBE_VERSION, "-f", str(given)
    )
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    services = ("reconciler", "slo-engine", "policy-gate", "chaos-runner", "incident-bot")
    for service in services:
        assert env_of(container(docs, service))["BALLAST_NATS_URL"] == values["nats"]["url"]
    assert env_of(container(docs, "slo-engine"))["BALLAST_PROMETHEUS_URL"] == values["sloEngine"]["prometheus"]["url"]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert {d["metadata"]["name"] for d in monitors} == {f"ballast-{s}" for s in services}
    assert all(d["metadata"]["labels"]["release"] == "kube-prometheus-stack" for d in monitors)
    assert find(docs, "PrometheusRule", "ballast-platform")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert {
        d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    } == {
        "ballast-slos-dashboard",
        "ballast-platform-dashboard",
    }
