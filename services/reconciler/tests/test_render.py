"""Desired state without I/O: what a WebApp and a Tenant render to."""

from __future__ import annotations

from typing import Any

import pytest

from ballast.reconciler.api import PodSecurityLevel, Tenant, WebApp
from ballast.reconciler.children import CHILD_TYPES
from ballast.reconciler.render import (
    namespace_labels,
    render,
    render_deployment,
    render_tenant_namespace,
)


def webapp(**spec: Any) -> WebApp:
    return WebApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "shop", "uid": "uid-1", "generation": 1},
            "spec": {"image": "registry.example.com/shop/web:1.2.3"} | spec,
        }
    )


def kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return [m["kind"] for m in manifests]


def pod_spec(app: WebApp) -> dict[str, Any]:
    spec: dict[str, Any] = render_deployment(app)["spec"]["template"]["spec"]
    return spec


def test_a_minimal_webapp_gets_hardened_defaults() -> None:
    children = render(webapp(), service_monitors=True)
    assert kinds(children) == ["ServiceAccount", "Deployment", "Service", "NetworkPolicy", "ServiceMonitor"]
    for child in children:
        assert child["metadata"]["namespace"] == "shop"
        assert child["metadata"]["ownerReferences"] == [
            {"apiVersion": "platform.example.com/v1", "kind": "WebApp", "name": "web", "uid": "uid-1",
             "controller": True, "blockOwnerDeletion": True}
        ]  # fmt: skip
        assert (child["apiVersion"], child["kind"]) in CHILD_TYPES
    deployment = children[1]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": "25%"}
    container = pod_spec(webapp())["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "http"}


def test_rendering_is_deterministic() -> None:
    app = webapp(replicas=3, env=[{"name": "MODE", "value": "prod"}])
    assert render(app, service_monitors=True) == render(app, service_monitors=True)


def test_restricted_meets_the_restricted_pod_security_standard() -> None:
    spec = pod_spec(webapp())
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    container = spec["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["readOnlyRootFilesystem"] is True
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {}}]


def test_baseline_and_privileged_relax_only_what_they_allow() -> None:
    baseline = pod_spec(webapp(security={"podSecurityStandard": "baseline"}))
    assert baseline["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert baseline["containers"][0]["securityContext"] == {"allowPrivilegeEscalation": False, "privileged": False}
    privileged = pod_spec(webapp(security={"podSecurityStandard": "privileged"}))
    assert privileged["securityContext"] == {}
    assert "volumes" not in privileged


def test_autoscaling_hands_replicas_to_the_hpa() -> None:
    app = webapp(replicas=2, autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 10,
                                          "targetCPUUtilization": 60})  # fmt: skip
    children = {m["kind"]: m for m in render(app, service_monitors=False)}
    assert "replicas" not in children["Deployment"]["spec"]
    hpa = children["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    assert "PodDisruptionBudget" in children


@pytest.mark.parametrize(("replicas", "has_pdb"), [(1, False), (2, True)])
def test_a_disruption_budget_only_when_more_than_one_replica(replicas: int, has_pdb: bool) -> None:
    assert ("PodDisruptionBudget" in kinds(render(webapp(replicas=replicas), service_monitors=False))) is has_pdb


def test_network_policy_modes() -> None:
    strict = {m["kind"]: m for m in render(webapp(), service_monitors=False)}["NetworkPolicy"]["spec"]
    assert strict["ingress"] == [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 8080}]}]
    assert any(rule.get("ports", [{}])[0].get("port") == 53 for rule in strict["egress"])
    standard_app = webapp(security={"networkPolicy": "standard"})
    standard = {m["kind"]: m for m in render(standard_app, service_monitors=False)}["NetworkPolicy"]["spec"]
    assert standard["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    assert standard["egress"] == [{}]
    none = webapp(security={"networkPolicy": "none"})
    assert "NetworkPolicy" not in kinds(render(none, service_monitors=False))


def test_service_monitor_needs_monitoring_and_its_crd() -> None:
    assert "ServiceMonitor" not in kinds(render(webapp(), service_monitors=False))
    off = webapp(monitoring={"enabled": False})
    assert "ServiceMonitor" not in kinds(render(off, service_monitors=True))
    monitor = render(webapp(monitoring={"scrapeInterval": "15s"}), service_monitors=True)[-1]
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]


def test_resources_and_env_reach_the_container() -> None:
    app = webapp(
        resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        env=[{"name": "MODE", "value": "prod"}],
    )
    container = pod_spec(app)["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": "500m", "memory": "256Mi"}}  # fmt: skip
    assert container["env"] == [{"name": "MODE", "value": "prod"}]


def tenant(**spec: Any) -> Tenant:
    return Tenant.model_validate({"metadata": {"name": "shop"}, "spec": {"namespaces": ["shop"]} | spec})


def test_tenant_namespaces_get_guardrails() -> None:
    shop = tenant(
        maxPodSecurity="baseline",
        quota={"hard": {"pods": 20, "requests.cpu": "4"}},
        limitRange={"default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}},
    )
    children = {m["kind"]: m for m in render_tenant_namespace(shop, "shop")}
    assert children["NetworkPolicy"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert children["ResourceQuota"]["spec"] == {"hard": {"pods": "20", "requests.cpu": "4"}}
    assert children["LimitRange"]["spec"]["limits"] == [
        {"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}}
    ]
    labels = namespace_labels(shop)
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["platform.example.com/max-pod-security"] == "baseline"


def test_a_tenant_without_quota_or_limits_gets_only_the_default_deny() -> None:
    assert kinds(render_tenant_namespace(tenant(), "shop")) == ["NetworkPolicy"]
    assert namespace_labels(tenant())["pod-security.kubernetes.io/enforce"] == PodSecurityLevel.RESTRICTED.value
