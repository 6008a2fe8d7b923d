"""The Helm chart (deploy/helm/ballast) with the real helm: it lints, renders the reconciler hardened and with exactly
the RBAC the reconciler's tests prove sufficient, installs the same API as `ballast up` and the tests, and installs
into a real API server that enforces the restricted Pod Security Standard, and renders the policy-gate's admission
webhook as shipped with only safe failure policies and timeouts; helm warns about none of it."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from ballast.kube.install import load_manifests
from ballast.local.tools import tool
from ballast.testing import eventually

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHART = DEPLOY / "helm" / "ballast"
KUBE_VERSION = "1.37.2"


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


def shipped(kind: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((DEPLOY / "rbac" / "reconciler.yaml").read_text())
    (found,) = [d for d in docs if d and d["kind"] == kind]
    return dict(found)


def test_the_chart_lints() -> None:
    helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)


def test_the_reconciler_gets_exactly_the_shipped_rbac_and_a_lease_in_its_namespace() -> None:
    docs = render(namespace="platform")
    assert find(docs, "ClusterRole")["rules"] == shipped("ClusterRole")["rules"]
    role = find(docs, "Role")
    assert role["metadata"]["namespace"] == "platform"
    assert role["rules"] == shipped("Role")["rules"]
    subjects = find(docs, "ClusterRoleBinding")["subjects"]
    assert subjects == [{"kind": "ServiceAccount", "name": "ballast-reconciler", "namespace": "platform"}]
    env = {e["name"]: e for e in find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BALLAST_LEASE_NAMESPACE"]["value"] == "platform"
    assert env["BALLAST_IDENTITY"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_reconciler_runs_restricted_with_a_standby() -> None:
    docs = render()
    deployment = find(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["image"] == "registry.example.com/ballast/reconciler:0.1.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert find(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert not [d for d in render("reconciler.replicas=1") if d["kind"] == "PodDisruptionBudget"]


API_KINDS = {"CustomResourceDefinition", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def test_the_chart_installs_the_api_that_ballast_up_and_the_tests_install() -> None:
    # What `ballast up` and the platform_api fixtures install, from deploy/crds and deploy/policies...
    installed = load_manifests(*sorted((DEPLOY / "crds").glob("*.yaml")), *sorted((DEPLOY / "policies").glob("*.yaml")))
    # ...is, document for document, what a helm install sends.
    rendered = [d for d in render(crds=True) if d["kind"] in API_KINDS]

    def identity(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    assert sorted(rendered, key=identity) == sorted(installed, key=identity)
    assert {identity(d)[0] for d in installed} == API_KINDS
    assert not [d for d in render("admissionPolicy.enabled=false") if d["kind"].startswith("ValidatingAdmission")]


def test_the_chart_holds_no_symlinks() -> None:
    # helm follows them with a warning on every lint, template and install.
    assert [p for p in CHART.rglob("*") if p.is_symlink()] == []


@pytest.mark.cluster
async def test_installs_into_a_cluster_enforcing_restricted_pod_security(kube_api: Any, kubeconfig_path: Path) -> None:
    from kubernetes_asyncio import client

    namespace = f"ballast-{uuid.uuid4().hex[:8]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    core = client.CoreV1Api(kube_api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace, labels=labels)))
    release = f"b{uuid.uuid4().hex[:8]}"
    # The admission policy is cluster-wide and other suites may have installed it outside Helm: leave it out here.
    install = ["install", release, str(CHART), "-n", namespace, "--set", "admissionPolicy.enabled=false"]
    await asyncio.to_thread(helm, *install, "--wait=false", kubeconfig=kubeconfig_path)
    try:
        apps = client.AppsV1Api(kube_api)

        async def available() -> bool:
            deployment = await apps.read_namespaced_deployment("ballast-reconciler", namespace)
            return bool(deployment.status.available_replicas == 2)

        # Pods admitted under restricted Pod Security (the local fake nodes then report them running).
        await eventually(available, timeout=60, what="the reconciler's two replicas available")
        extensions = client.ApiextensionsV1Api(kube_api)
        for crd in ("webapps.platform.example.com", "tenants.platform.example.com"):
            conditions = (await extensions.read_custom_resource_definition(crd)).status.conditions
            assert any(c.type == "Established" and c.status == "True" for c in conditions)
    finally:
        await asyncio.to_thread(helm, "uninstall", release, "-n", namespace, kubeconfig=kubeconfig_path)
        await core.delete_namespace(namespace)


# --- the policy-gate's admission webhook ----------------------------------------------------------------------------


def shipped_webhook() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "webhooks" / "policy-gate.yaml").read_text())
    return config


def webhook(*values: str, namespace: str = "ballast-system") -> dict[str, Any]:
    docs = render("policyGate.webhook.enabled=true", *values, namespace=namespace)
    (hook,) = find(docs, "ValidatingWebhookConfiguration")["webhooks"]
    return dict(hook)


def test_the_policy_gate_webhook_is_off_by_default_until_the_chart_deploys_the_gate() -> None:
    assert not [d for d in render() if d["kind"] == "ValidatingWebhookConfiguration"]


def test_the_policy_gate_webhook_is_the_shipped_one_for_the_release() -> None:
    (expected,) = shipped_webhook()["webhooks"]
    hook = webhook("policyGate.webhook.caBundle=Q0E=", namespace="platform")
    assert hook["rules"] == expected["rules"]
    assert (hook["sideEffects"], hook["admissionReviewVersions"]) == ("None", ["v1"])
    assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Ignore", 2)
    assert hook["clientConfig"] == {
        "caBundle": "Q0E=",
        "service": {"name": "ballast-policy-gate", "namespace": "platform", "path": "/validate", "port": 443},
    }
    (excluded,) = hook["namespaceSelector"]["matchExpressions"]
    assert excluded == {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": ["kube-system", "kube-public", "kube-node-lease", "platform"],
    }


def test_the_policy_gate_webhook_fails_closed_when_asked() -> None:
    hook = webhook("policyGate.webhook.failurePolicy=Fail", "policyGate.webhook.timeoutSeconds=1")
    assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Fail", 1)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("policyGate.webhook.failurePolicy=Open", "policyGate.webhook.failurePolicy must be Ignore or Fail, not Open"),
        ("policyGate.webhook.timeoutSeconds=5", "policyGate.webhook.timeoutSeconds must be 1 or 2"),
    ],
)
def test_unsafe_webhook_values_are_refused_at_render(value: str, says: str) -> None:
    command = [str(tool("helm")), "template", "ballast", str(CHART), "--kube-version", KUBE_VERSION]
    command += ["--set", "policyGate.webhook.enabled=true", "--set", value]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode != 0
    assert says in done.stderr, done.stderr


def test_the_deploy_directory_links_the_charts_webhook_file() -> None:
    link = DEPLOY / "webhooks" / "policy-gate.yaml"
    assert link.is_symlink()
    assert link.resolve() == (CHART / "files" / "policy-gate-webhook.yaml").resolve()
    assert Path(link.readlink()).parts[0] == ".."  # relative, so the checkout can move
