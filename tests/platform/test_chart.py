"""The Helm chart (deploy/helm/ballast) with the real helm: it lints, renders the reconciler hardened and with exactly
the RBAC the reconciler's tests prove sufficient, installs the same API as `ballast up` and the tests, and installs
into a real API server that enforces the restricted Pod Security Standard, and renders the policy-gate's admission
webhook as shipped with only safe failure policies and timeouts; helm warns about none of it. The slo-engine,
policy-gate, chaos-runner and incident-bot are in it too, each switchable off, restricted, with exactly the RBAC listed
here, its ports from ballast.runtime.ports, a PDB and a NetworkPolicy; all of them install into a real API server
whose namespace enforces the restricted standard, their pod templates admitted without warnings; on request a
ServiceMonitor each, which the prometheus-operator's CRD (from ../shared/crds) accepts."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import (
    CHART,
    DEPLOY,
    KUBE_VERSION,
    SERVICE_MONITOR_CRD,
    container,
    env_of,
    find,
    helm,
    pod_spec,
    render,
)
from kubernetes_asyncio import client

from ballast.kube.install import install, load_manifests
from ballast.local.tools import tool
from ballast.testing import eventually


def shipped(kind: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((DEPLOY / "rbac" / "reconciler.yaml").read_text())
    (found,) = [d for d in docs if d and d["kind"] == kind]
    return dict(found)


def test_the_chart_lints() -> None:
    helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)


def test_the_reconciler_gets_exactly_the_shipped_rbac_and_a_lease_in_its_namespace() -> None:
    docs = render(namespace="platform")
    assert find(docs, "ClusterRole", "ballast-reconciler")["rules"] == shipped("ClusterRole")["rules"]
    role = find(docs, "Role", "ballast-reconciler-leader-election")
    assert role["metadata"]["namespace"] == "platform"
    assert role["rules"] == shipped("Role")["rules"]
    subjects = find(docs, "ClusterRoleBinding", "ballast-reconciler")["subjects"]
    assert subjects == [{"kind": "ServiceAccount", "name": "ballast-reconciler", "namespace": "platform"}]
    deployment = find(docs, "Deployment", "ballast-reconciler")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BALLAST_LEASE_NAMESPACE"]["value"] == "platform"
    assert env["BALLAST_IDENTITY"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_reconciler_runs_restricted_with_a_standby() -> None:
    docs = render()
    deployment = find(docs, "Deployment", "ballast-reconciler")
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
    # Enforce refuses a non-restricted Pod; warn answers a Deployment whose pod template is not restricted with a
    # Warning (which helm would print, and helm() fails on anything printed to stderr).
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
    core = client.CoreV1Api(kube_api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace, labels=labels)))
    release = f"b{uuid.uuid4().hex[:8]}"
    # The admission policy is cluster-wide and other suites may have installed it outside Helm: leave it out here. The
    # gate's webhook too: registered, it would send every other suite's writes to a gate the fake nodes cannot run
    # (its configuration is checked by rendering, and the same file against the real API server by the gate's tests).
    values = ["admissionPolicy.enabled=false", "policyGate.webhook.enabled=false"]
    install = ["install", release, str(CHART), "-n", namespace, *[a for v in values for a in ("--set", v)]]
    await asyncio.to_thread(helm, *install, "--wait=false", kubeconfig=kubeconfig_path)
    try:
        apps = client.AppsV1Api(kube_api)
        rendered = [d for d in render(*values, namespace=namespace) if d["kind"] == "Deployment"]
        assert {d["metadata"]["name"] for d in rendered} == {f"ballast-{s}" for s in ("reconciler", *SERVICES)}

        async def available() -> bool:
            for deployment in rendered:
                status = (await apps.read_namespaced_deployment(deployment["metadata"]["name"], namespace)).status
                if status.available_replicas != 2:
                    return False
            return True

        # Pods admitted under restricted Pod Security (the local fake nodes then report them running).
        await eventually(available, timeout=120, interval=0.5, what="every service's two replicas available")
        extensions = client.ApiextensionsV1Api(kube_api)
        for crd in ("webapps.platform.example.com", "tenants.platform.example.com"):
            conditions = (await extensions.read_custom_resource_definition(crd)).status.conditions
            assert any(c.type == "Established" and c.status == "True" for c in conditions)

        # Each pod template, asked again without helm: a Deployment draws no warning, its Pod is admitted.
        for deployment in rendered:
            status, warnings, body = await dry_run(apps.create_namespaced_deployment, namespace, renamed(deployment))
            assert (status, warnings) == (201, []), body
            status, warnings, body = await dry_run(core.create_namespaced_pod, namespace, pod_of(deployment))
            assert (status, warnings) == (201, []), body
        # ...and the same check does refuse a template that is not restricted.
        loose = renamed(rendered[0])
        loose["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
        status, warnings, _ = await dry_run(apps.create_namespaced_deployment, namespace, loose)
        assert status == 201
        assert any("allowPrivilegeEscalation" in w for w in warnings), warnings
        status, _, body = await dry_run(core.create_namespaced_pod, namespace, pod_of(loose))
        assert status == 403
        assert "violates PodSecurity" in body, body
    finally:
        await asyncio.to_thread(helm, "uninstall", release, "-n", namespace, kubeconfig=kubeconfig_path)
        await core.delete_namespace(namespace)


async def dry_run(create: Any, namespace: str, body: dict[str, Any]) -> tuple[int, list[str], str]:
    """The API server's answer to a create that stores nothing: status, Warning headers, body."""
    response = await create(namespace, body, dry_run="All", _preload_content=False)
    try:
        return response.status, list(response.headers.getall("Warning", [])), await response.text()
    finally:
        response.release()


def renamed(deployment: dict[str, Any]) -> dict[str, Any]:
    copy = yaml.safe_load(yaml.safe_dump(deployment))
    copy["metadata"]["name"] += "-check"
    return dict(copy)


def pod_of(deployment: dict[str, Any]) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    metadata = {"name": deployment["metadata"]["name"] + "-pod-check", "labels": template["metadata"]["labels"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


# --- the policy-gate's admission webhook ----------------------------------------------------------------------------


def shipped_webhook() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "webhooks" / "policy-gate.yaml").read_text())
    return config


def webhook(*values: str, namespace: str = "ballast-system") -> dict[str, Any]:
    docs = render("policyGate.webhook.enabled=true", *values, namespace=namespace)
    (hook,) = find(docs, "ValidatingWebhookConfiguration")["webhooks"]
    return dict(hook)


def test_the_policy_gate_webhook_is_registered_with_the_gate_and_trusts_the_charts_certificate() -> None:
    from cryptography import x509

    docs = render(namespace="platform")
    (hook,) = find(docs, "ValidatingWebhookConfiguration")["webhooks"]
    secret = find(docs, "Secret", "ballast-policy-gate-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    served = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    served.verify_directly_issued_by(ca)  # raises unless the CA the API server trusts signed what the gate serves
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "ballast-policy-gate.platform.svc" in names.get_values_for_type(x509.DNSName)
    # Not without the gate, and not when asked not to.
    for values in (["policyGate.enabled=false"], ["policyGate.webhook.enabled=false"]):
        assert not [d for d in render(*values) if d["kind"] == "ValidatingWebhookConfiguration"]


def test_with_its_own_certificate_secret_the_gate_gets_no_generated_one_and_the_webhook_an_injected_ca() -> None:
    docs = render(
        "policyGate.tls.existingSecret=gate-serving",
        "policyGate.webhook.annotations.cert-manager\\.io/inject-ca-from=ballast-system/gate-serving",
    )
    assert not [d for d in docs if d["kind"] == "Secret"]
    config = find(docs, "ValidatingWebhookConfiguration")
    assert config["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "ballast-system/gate-serving"}
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    volumes = {v["name"]: v for v in pod_spec(docs, "policy-gate")["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "gate-serving"


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


# --- the services beside the reconciler ------------------------------------------------------------------------------

SERVICES = ("slo-engine", "policy-gate", "chaos-runner", "incident-bot")
VALUES_KEY = {"reconciler": "reconciler", "slo-engine": "sloEngine", "policy-gate": "policyGate",
              "chaos-runner": "chaosRunner", "incident-bot": "incidentBot"}  # fmt: skip
Grants = dict[tuple[str, str, tuple[str, ...]], frozenset[str]]
READ = frozenset({"get", "list", "watch"})
LEASE_RULES = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]


def verbs(*names: str) -> frozenset[str]:
    return frozenset(names)


# What each service may do, cluster-wide: (API group, resource, resourceNames) -> verbs. Written out here so that a
# change to files/<service>-rbac.yaml has to be made twice, on purpose.
CLUSTER_GRANTS: dict[str, Grants] = {
    "slo-engine": {
        ("platform.example.com", "webapps", ()): READ,
        ("platform.example.com", "servicelevelobjectives", ()): READ | verbs("create", "delete"),
        ("platform.example.com", "servicelevelobjectives/status", ()): verbs("patch"),
        ("events.k8s.io", "events", ()): verbs("create", "patch"),
        ("monitoring.coreos.com", "prometheusrules", ()): verbs("get", "list", "create", "patch", "delete"),
        ("apiextensions.k8s.io", "customresourcedefinitions", ("prometheusrules.monitoring.coreos.com",)): verbs("get"),
    },
    "policy-gate": {
        ("templates.gatekeeper.sh", "constrainttemplates", ()): READ,
        ("templates.gatekeeper.sh", "constrainttemplates/status", ()): verbs("patch"),
        ("constraints.gatekeeper.sh", "*", ()): READ,
        ("constraints.gatekeeper.sh", "*/status", ()): verbs("patch"),
        ("config.gatekeeper.sh", "configs", ()): READ,
        ("apiextensions.k8s.io", "customresourcedefinitions", ()): verbs("get", "create", "update", "delete"),
        ("", "namespaces", ()): READ,
        ("apps", "replicasets", ()): verbs("list"),
        # get for the budget freeze, list and watch from policyGate.rbac.watch's default (audit)
        ("apps", "deployments", ()): READ,
        ("platform.example.com", "webapps", ()): READ,
    },
    "chaos-runner": {
        ("platform.example.com", "chaosexperiments", ()): READ,
        ("platform.example.com", "chaosexperiments/status", ()): verbs("patch"),
        ("events.k8s.io", "events", ()): verbs("create", "patch"),
        ("", "pods", ()): verbs("get", "list", "delete"),
        ("", "pods/eviction", ()): verbs("create"),
        ("", "nodes", ()): verbs("get", "list", "patch"),
        ("apps", "deployments", ()): verbs("get", "list", "patch"),
        ("", "namespaces", ()): verbs("get"),
        ("litmuschaos.io", "chaosengines", ()): verbs("get", "create", "patch"),
        ("litmuschaos.io", "chaosresults", ()): verbs("get"),
    },
}


def grants(rules: list[dict[str, Any]]) -> Grants:
    """Rules flattened to the verbs granted per (group, resource, names), whichever rules grant them."""
    flat: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "resourceNames", "verbs"}, rule
        assert "*" not in rule["verbs"], rule
        assert "*" not in rule["apiGroups"], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource, tuple(rule.get("resourceNames", ())))
                flat.setdefault(key, set()).update(rule["verbs"])
    return {key: frozenset(granted) for key, granted in flat.items()}


def owned_by(docs: list[dict[str, Any]], service: str) -> list[tuple[str, str]]:
    """The service's objects: named for it (ballast-<service>…, <release>-<service>) or bound to its ServiceAccount."""
    owned = []
    for doc in docs:
        subjects = [subject.get("name") for subject in doc.get("subjects", [])]
        if service in doc["metadata"]["name"] or f"ballast-{service}" in subjects:
            owned.append((doc["kind"], doc["metadata"]["name"]))
    return owned


def test_every_service_is_in_the_chart_by_default() -> None:
    docs = render()
    for service in SERVICES:
        kinds = {kind for kind, _ in owned_by(docs, service)}
        assert {"Deployment", "ServiceAccount", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds, service
        assert find(docs, "Deployment", f"ballast-{service}")["spec"]["replicas"] == 2


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_switched_off_leaves_nothing_behind_and_the_chart_still_lints(service: str) -> None:
    value = f"{VALUES_KEY[service]}.enabled=false"
    helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, "--set", value)
    docs = render(value)
    assert owned_by(docs, service) == []
    # The others are all still there.
    for other in set(SERVICES) - {service}:
        find(docs, "Deployment", f"ballast-{other}")


@pytest.mark.parametrize("service", ["reconciler", *SERVICES])
def test_every_pod_runs_under_the_restricted_pod_security_standard(service: str) -> None:
    pod = pod_spec(render(), service)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532  # the images' USER
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC", "hostUsers"} & set(pod)
    for volume in pod.get("volumes", []):
        assert set(volume) - {"name"} <= {"emptyDir", "secret", "configMap", "projected"}, volume
    for each in pod["containers"]:
        assert each["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, each["name"]
        assert not [p for p in each.get("ports", []) if "hostPort" in p]
        assert each["resources"]["requests"]
        assert each["resources"]["limits"]
        assert each["livenessProbe"]
        assert each["readinessProbe"]


@pytest.mark.parametrize("service", ["reconciler", *SERVICES])
def test_probes_and_ports_are_the_services_own(service: str) -> None:
    from ballast.runtime import PORTS

    docs = render()
    main = container(docs, service)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    env = env_of(main)
    assert ports["http"] == PORTS[service].health
    assert env["BALLAST_HTTP_PORT"] == str(PORTS[service].health)
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    if PORTS[service].webhook is None:
        assert set(ports) == {"http"}
    else:
        assert ports["https"] == PORTS[service].webhook
        assert env["BALLAST_HTTPS_PORT"] == str(PORTS[service].webhook)
    assert main["image"] == f"registry.example.com/ballast/{service}:0.1.0"
    assert env["BALLAST_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # The Service reaches the same named ports.
    service_ports = {p["name"]: p["targetPort"] for p in find(docs, "Service", f"ballast-{service}")["spec"]["ports"]}
    assert set(service_ports.values()) <= set(ports)


@pytest.mark.parametrize("service", ["slo-engine", "policy-gate", "chaos-runner"])
def test_each_services_rbac_grants_exactly_its_listed_verbs(service: str) -> None:
    docs = render(namespace="platform")
    role = find(docs, "ClusterRole", f"ballast-{service}")
    assert grants(role["rules"]) == CLUSTER_GRANTS[service]
    # The one copy of the rules: what deploy/rbac/<service>.yaml (linked into the chart) holds, less the values' part.
    files = list(yaml.safe_load_all((DEPLOY / "rbac" / f"{service}.yaml").read_text()))
    (shipped_role,) = [d for d in files if d["kind"] == "ClusterRole"]
    assert role["rules"][: len(shipped_role["rules"])] == shipped_role["rules"]
    binding = find(docs, "ClusterRoleBinding", f"ballast-{service}")
    assert binding["roleRef"]["name"] == f"ballast-{service}"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"ballast-{service}", "namespace": "platform"}]


@pytest.mark.parametrize("service", ["slo-engine", "policy-gate"])
def test_the_leaders_hold_a_lease_in_the_release_namespace_only(service: str) -> None:
    docs = render(namespace="platform")
    role = find(docs, "Role", f"ballast-{service}-leader-election")
    assert role["metadata"]["namespace"] == "platform"
    assert role["rules"] == LEASE_RULES
    binding = find(docs, "RoleBinding", f"ballast-{service}-leader-election")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"ballast-{service}", "namespace": "platform"}]
    assert env_of(container(docs, service))["BALLAST_LEASE_NAMESPACE"] == "platform"


def test_the_chaos_runner_and_the_incident_bot_hold_no_lease() -> None:
    docs = render()
    roles = [d["metadata"]["name"] for d in docs if d["kind"] in ("Role", "RoleBinding")]
    assert not [name for name in roles if "chaos-runner" in name or "incident-bot" in name]
    # Runs are owned through heartbeats in KV instead; the runner's own namespace is never a target.
    assert env_of(container(render(namespace="platform"), "chaos-runner"))["BALLAST_NAMESPACE"] == "platform"


def test_the_policy_gate_without_the_cluster_gets_no_api_access() -> None:
    docs = render("policyGate.watchCluster=false")
    assert find(docs, "ServiceAccount", "ballast-policy-gate")["automountServiceAccountToken"] is False
    assert pod_spec(docs, "policy-gate")["automountServiceAccountToken"] is False
    assert [kind for kind, _ in owned_by(docs, "policy-gate") if "Role" in kind] == []
    assert "BALLAST_WATCH_CLUSTER" not in env_of(container(docs, "policy-gate"))
    policy = find(docs, "NetworkPolicy", "ballast-policy-gate")["spec"]
    assert {p["port"] for rule in policy["egress"] for p in rule["ports"]} == {53, 4222}
    # With it (the default): the cluster, the audit's settings and the sync kinds.
    docs = render("policyGate.syncKinds={networking.k8s.io/v1/Ingress,v1/Service}")
    env = env_of(container(docs, "policy-gate"))
    assert env["BALLAST_WATCH_CLUSTER"] == "true"
    assert env["BALLAST_SYNC_KINDS"] == "networking.k8s.io/v1/Ingress,v1/Service"
    assert (env["BALLAST_AUDIT_INTERVAL"], env["BALLAST_CONSTRAINT_VIOLATIONS_LIMIT"]) == ("60", "20")


def test_the_policy_gate_writes_violation_events_only_when_asked_and_only_where_told() -> None:
    events = {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}

    def rules(docs: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
        return find(docs, "ClusterRole", "ballast-policy-gate")["rules"], find(
            docs, "Role", "ballast-policy-gate-leader-election"
        )["rules"]

    cluster_wide, own = rules(render())
    assert events not in cluster_wide
    assert events not in own
    assert not {k for k in env_of(container(render(), "policy-gate")) if "EVENTS" in k}
    # Asked for: in the release namespace only.
    docs = render("policyGate.events.admission=true", "policyGate.events.audit=true")
    cluster_wide, own = rules(docs)
    assert events in own
    assert events not in cluster_wide
    env = env_of(container(docs, "policy-gate"))
    assert (env["BALLAST_EMIT_ADMISSION_EVENTS"], env["BALLAST_EMIT_AUDIT_EVENTS"]) == ("true", "true")
    # In each object's namespace: anywhere.
    docs = render("policyGate.events.audit=true", "policyGate.events.involvedNamespace=true")
    cluster_wide, own = rules(docs)
    assert events in cluster_wide
    assert env_of(container(docs, "policy-gate"))["BALLAST_EVENTS_INVOLVED_NAMESPACE"] == "true"
    # Without the cluster there is no API to write them through: refused at render.
    command = [str(tool("helm")), "template", "ballast", str(CHART), "--kube-version", KUBE_VERSION]
    command += ["--set", "policyGate.watchCluster=false", "--set", "policyGate.events.admission=true"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode != 0
    assert "policyGate.events needs policyGate.watchCluster" in done.stderr


def test_the_policy_gate_watches_only_the_kinds_named_in_values_and_never_everything() -> None:
    docs = render(
        "policyGate.rbac.watch[0].apiGroups[0]=networking.k8s.io", "policyGate.rbac.watch[0].resources[0]=ingresses"
    )
    flat = grants(find(docs, "ClusterRole", "ballast-policy-gate")["rules"])
    assert flat[("networking.k8s.io", "ingresses", ())] == READ
    # The list replaces the default: what is left of WebApps and Deployments is the freeze's get.
    assert flat[("platform.example.com", "webapps", ())] == flat[("apps", "deployments", ())] == verbs("get")
    command = [str(tool("helm")), "template", "ballast", str(CHART), "--kube-version", KUBE_VERSION]
    command += ["--set", "policyGate.rbac.watch[0].apiGroups[0]=", "--set", "policyGate.rbac.watch[0].resources[0]=*"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode != 0
    assert "policyGate.rbac.watch[0]: name the API groups and resources the gate reads" in done.stderr


def test_the_chaos_runner_loses_its_litmus_rules_when_litmus_is_off() -> None:
    flat = grants(find(render("chaosRunner.litmus.enabled=false"), "ClusterRole", "ballast-chaos-runner")["rules"])
    expected = {key: verbs for key, verbs in CLUSTER_GRANTS["chaos-runner"].items() if key[0] != "litmuschaos.io"}
    assert flat == expected


def test_the_incident_bot_has_no_kubernetes_api_access_at_all() -> None:
    docs = render()
    assert find(docs, "ServiceAccount", "ballast-incident-bot")["automountServiceAccountToken"] is False
    assert pod_spec(docs, "incident-bot")["automountServiceAccountToken"] is False
    bound = [d for d in docs if "incident-bot" in str(d.get("subjects", "")) or "incident-bot" in str(d.get("roleRef"))]
    assert bound == []
    # Nor a way out to the API server beyond Slack's HTTPS: no rule on the API server's own port.
    policy = find(docs, "NetworkPolicy", "ballast-incident-bot")
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 4222, 443}


def test_slack_credentials_come_from_a_secret_and_never_from_values() -> None:
    docs = render("incidentBot.slack.existingSecret=ballast-slack")
    env = env_of(container(docs, "incident-bot"))
    assert env["BALLAST_SLACK_BOT_TOKEN"] == {"secretKeyRef": {"name": "ballast-slack", "key": "bot-token"}}
    # HTTP mode needs the signing secret, Socket Mode the app token: whichever the Secret holds.
    assert env["BALLAST_SLACK_SIGNING_SECRET"] == {
        "secretKeyRef": {"name": "ballast-slack", "key": "signing-secret", "optional": True}
    }
    assert env["BALLAST_SLACK_APP_TOKEN"] == {
        "secretKeyRef": {"name": "ballast-slack", "key": "app-token", "optional": True}
    }
    assert not {"BALLAST_SLACK_BOT_TOKEN", "BALLAST_WEBHOOK_TOKEN"} & set(env_of(container(render(), "incident-bot")))
    env = env_of(container(render("incidentBot.webhookAuth.existingSecret=hooks"), "incident-bot"))
    assert env["BALLAST_WEBHOOK_TOKEN"] == {"secretKeyRef": {"name": "hooks", "key": "token", "optional": True}}
    assert env["BALLAST_PAGERDUTY_ROUTING_KEY"]["secretKeyRef"]["name"] == "hooks"
    for key in ("slack.botToken", "slack.signingSecret", "slack.appToken", "webhookAuth.token", "webhookAuth.password"):
        command = [str(tool("helm")), "template", "ballast", str(CHART), "--kube-version", KUBE_VERSION]
        done = subprocess.run(
            [*command, "--set", f"incidentBot.{key}=xoxb-123"], capture_output=True, text=True, check=False
        )
        assert done.returncode != 0
        assert f"incidentBot.{key}: a secret does not go into values" in done.stderr
        assert "xoxb-123" not in done.stderr


def test_the_policy_gate_runs_opa_beside_it_on_the_pods_loopback() -> None:
    docs = render()
    pod = pod_spec(docs, "policy-gate")
    (opa,) = [c for c in pod["containers"] if c["name"] == "opa"]
    assert "--addr=127.0.0.1:8181" in opa["args"]
    assert "--v0-compatible" in opa["args"]
    assert [p["containerPort"] for p in opa["ports"]] == [8282]  # diagnostics (health) only, not the API
    assert opa["readinessProbe"]["httpGet"] == {"path": "/health", "port": "opa-diagnostic"}
    env = env_of(container(docs, "policy-gate"))
    assert env["BALLAST_OPA_URL"] == "http://127.0.0.1:8181"
    assert (env["BALLAST_TLS_CERT_FILE"], env["BALLAST_TLS_KEY_FILE"]) == (
        "/etc/ballast/tls/tls.crt",
        "/etc/ballast/tls/tls.key",
    )
    # A directory mount: the kubelet swaps a rotated Secret in place only there, and the gate reloads the files.
    (mount,) = [m for m in container(docs, "policy-gate")["volumeMounts"] if m["name"] == "tls"]
    assert "subPath" not in mount
    # The Service the webhook configuration calls.
    ports = find(docs, "Service", "ballast-policy-gate")["spec"]["ports"]
    assert {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"} in ports


@pytest.mark.parametrize("service", ["reconciler", *SERVICES])
def test_a_disruption_budget_keeps_one_replica_while_there_are_two(service: str) -> None:
    budget = find(render(), "PodDisruptionBudget", f"ballast-{service}")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/part-of": "ballast",
        "app.kubernetes.io/name": service,
    }
    # One replica cannot keep one through a drain: no budget that would block the drain forever.
    single = render(f"{VALUES_KEY[service]}.replicas=1")
    assert not [
        d for d in single if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == f"ballast-{service}"
    ]


# Ports each service's pods accept traffic on, and which of them from the API server (webhooks).
INGRESS = {"reconciler": {8081}, "slo-engine": {8082}, "policy-gate": {8443, 8083}, "chaos-runner": {8084},
           "incident-bot": {8444, 8085}}  # fmt: skip


@pytest.mark.parametrize("service", ["reconciler", *SERVICES])
def test_network_policies_let_in_only_callers_and_out_only_what_is_used(service: str) -> None:
    docs = render("networkPolicy.apiServer.peers[0].ipBlock.cidr=10.0.0.1/32")
    policy = find(docs, "NetworkPolicy", f"ballast-{service}")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == service
    ingress = {p["port"]: rule.get("from") for rule in policy["ingress"] for p in rule["ports"]}
    assert set(ingress) == INGRESS[service]
    prometheus = [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    from ballast.runtime import PORTS

    assert ingress[PORTS[service].health] == prometheus
    egress = {(p["protocol"], p["port"]): rule.get("to") for rule in policy["egress"] for p in rule["ports"]}
    assert egress[("UDP", 53)][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert egress[("TCP", 4222)][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "nats"}}
    api_server = [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    if service == "incident-bot":
        assert ("TCP", 6443) not in egress
    else:
        assert egress[("TCP", 443)] == egress[("TCP", 6443)] == api_server
    if service == "policy-gate":
        assert ingress[8443] == api_server  # admission reviews only from the API server


def test_network_policies_can_be_left_to_the_cluster() -> None:
    assert not [d for d in render("networkPolicy.enabled=false") if d["kind"] == "NetworkPolicy"]


def test_the_slo_engine_reaches_prometheus_only_when_told_where() -> None:
    def prometheus_egress(*values: str) -> list[int]:
        policy = find(render(*values), "NetworkPolicy", "ballast-slo-engine")["spec"]
        return [p["port"] for rule in policy["egress"] for p in rule["ports"] if p["port"] not in (53, 4222, 443, 6443)]

    assert prometheus_egress() == []
    assert prometheus_egress("sloEngine.prometheus.url=http://prometheus.monitoring.svc:9090") == [9090]
    docs = render("sloEngine.prometheus.url=http://prometheus.monitoring.svc:9090")
    assert env_of(container(docs, "slo-engine"))["BALLAST_PROMETHEUS_URL"] == "http://prometheus.monitoring.svc:9090"


def test_a_services_values_reach_its_pods() -> None:
    docs = render(
        "chaosRunner.image=mirror.example/chaos:dev",
        "chaosRunner.extraEnv[0].name=HTTPS_PROXY",
        "chaosRunner.extraEnv[0].value=http://proxy.example:3128",
        "chaosRunner.resources.limits.memory=1Gi",
        "chaosRunner.replicas=3",
    )
    main = container(docs, "chaos-runner")
    assert main["image"] == "mirror.example/chaos:dev"
    assert env_of(main)["HTTPS_PROXY"] == "http://proxy.example:3128"
    assert main["resources"]["limits"]["memory"] == "1Gi"
    assert find(docs, "Deployment", "ballast-chaos-runner")["spec"]["replicas"] == 3


def test_the_reconcilers_values_reach_its_pods() -> None:
    docs = render(
        "reconciler.image=mirror.example/reconciler:dev",
        "reconciler.extraEnv[0].name=TZ",
        "reconciler.extraEnv[0].value=UTC",
        "reconciler.policyCheck.enabled=true",
        "reconciler.policyCheck.failure=closed",
        "reconciler.workers=16",
    )
    main = container(docs, "reconciler")
    env = env_of(main)
    assert main["image"] == "mirror.example/reconciler:dev"
    assert env["TZ"] == "UTC"
    assert env["BALLAST_POLICY_CHECK"] == "true"
    assert env["BALLAST_POLICY_FAILURE"] == "closed"
    assert env["BALLAST_WORKERS"] == "16"
    assert env["BALLAST_LEASE_NAMESPACE"] == "ballast-system"


def test_service_monitors_are_rendered_only_when_asked_one_per_enabled_service() -> None:
    assert not [d for d in render() if d["kind"] == "ServiceMonitor"]
    docs = render("serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom", "incidentBot.enabled=false")
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceMonitor"}
    assert set(monitors) == {f"ballast-{s}" for s in ("reconciler", *SERVICES) if s != "incident-bot"}
    for name, monitor in monitors.items():
        assert monitor["metadata"]["labels"]["release"] == "prom"  # what a Prometheus's serviceMonitorSelector picks
        assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ballast-system"]}
        # It selects the service's own Service, which has the port it names.
        service = find(docs, "Service", name)
        assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
        assert "http" in {p["name"] for p in service["spec"]["ports"]}


async def test_the_service_monitors_are_valid_for_the_prometheus_operators_crd(kube_api: Any, namespace: str) -> None:
    assert SERVICE_MONITOR_CRD.is_file(), f"{SERVICE_MONITOR_CRD} missing: the shared folder lies beside the checkout"
    await install(kube_api, load_manifests(SERVICE_MONITOR_CRD))
    docs = render("serviceMonitor.enabled=true", "serviceMonitor.interval=30s", namespace=namespace)
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 5
    custom = client.CustomObjectsApi(kube_api)
    for monitor in monitors:
        # Stored nothing, but validated against the CRD's schema by the API server.
        created = await custom.create_namespaced_custom_object(
            "monitoring.coreos.com", "v1", namespace, "servicemonitors", monitor, dry_run="All"
        )
        assert created["spec"]["endpoints"][0]["interval"] == "30s"
    broken = {**monitors[0], "spec": {**monitors[0]["spec"], "endpoints": [{"port": "http", "interval": "soon"}]}}
    with pytest.raises(client.ApiException) as refused:
        await custom.create_namespaced_custom_object(
            "monitoring.coreos.com", "v1", namespace, "servicemonitors", broken, dry_run="All"
        )
    assert refused.value.status == 422
    assert "interval" in str(refused.value.body)


def test_replicas_spread_over_nodes_and_zones() -> None:
    for service in ("reconciler", *SERVICES):
        spread = pod_spec(render(), service)["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in spread] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        assert all(c["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == service for c in spread)


@pytest.mark.parametrize("service", ["slo-engine", "policy-gate", "chaos-runner"])
def test_the_deploy_directory_links_each_services_rbac_file(service: str) -> None:
    link = DEPLOY / "rbac" / f"{service}.yaml"
    assert link.is_symlink()
    assert Path(link.readlink()).parts[0] == ".."
    assert link.resolve() == (CHART / "files" / f"{service}-rbac.yaml").resolve()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("sloEngine.replicas=two", "at '/sloEngine/replicas': got string, want integer"),
        ("incidentBot.enabled=maybe", "at '/incidentBot/enabled': got string, want boolean"),
        ("chaosRunner.extraEnv[0].name=BALLAST_SHUTDOWN_GRACE", "at '/chaosRunner/extraEnv/0/value'"),
        ("policyGate.audit.violationsLimit=1000", "at '/policyGate/audit/violationsLimit'"),
        ("reconciler.policyCheck.failure=sometimes", "at '/reconciler/policyCheck/failure'"),
        ("reconciler.workers=0", "at '/reconciler/workers'"),
        ("serviceMonitor.interval=soon", "at '/serviceMonitor/interval'"),
    ],
)
def test_values_of_the_wrong_shape_are_refused_naming_the_key(value: str, says: str) -> None:
    command = [str(tool("helm")), "template", "ballast", str(CHART), "--kube-version", KUBE_VERSION, "--set", value]
    if "extraEnv" in value:
        command += ["--set", "chaosRunner.extraEnv[0].value=5"]  # a number: env values are strings
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode != 0
    assert says in done.stderr, done.stderr
