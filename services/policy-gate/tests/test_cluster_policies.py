"""The gate reading its policies from the real control plane: ConstraintTemplates watched, the constraint CRD generated
with the template's parameters schema (the API server refuses bad parameters), a template with a Rego error refused on
its status without harming the others; namespaceSelector decided from watched Namespaces; a referential policy fed
from the sync config's kinds; the audit in chunks writing capped violations to the constraint's status and all of them
to the bus; the audit at once of what was written while no gate was alive; each replica's entry in `byPod`; and a
Config's namespaces left out of the audit and of the inventory; a Config in the cluster followed as it changes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from gate_cluster import (  # noqa: F401  (cluster_gate, cluster_objects, config_crd, gate_crds: fixtures)
    LIBRARY,
    ClusterGate,
    ClusterObjects,
    cluster_gate,
    cluster_objects,
    config_crd,
    gate_crds,
    library_template,
    stored_events,
    unique_kind,
)
from gate_webhook import GateWebhook, admission_review
from policies import BROKEN, gatekeeper_config, template

from ballast.bus import Bus
from ballast.events.catalogue import POLICY_GATE
from ballast.events.contracts.policy import (
    POLICY_CHECK,
    AuditTrigger,
    AuditViolation,
    PolicyCheckRequest,
    PolicyCheckResponse,
)
from ballast.kube.errors import ApiError
from ballast.kube.rest import send_json
from ballast.policy import ConstraintTemplate
from ballast.policy.crds import constraint_crd
from ballast.policy_gate.audit import Alive, alive_key, written_since
from ballast.testing import eventually

pytestmark = pytest.mark.cluster
CONSTRAINTS = "/apis/constraints.gatekeeper.sh/v1beta1"


def deployment(namespace: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    pod = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}}, "template": pod},
    }


def ingress(namespace: str, name: str, host: str) -> dict[str, Any]:
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    path = {"path": "/", "pathType": "Prefix", "backend": backend}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"rules": [{"host": host, "http": {"paths": [path]}}]},
    }


async def create_ingress(kube_api: Any, namespace: str, name: str, host: str) -> None:
    await send_json(
        kube_api,
        "POST",
        f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses",
        body=ingress(namespace, name, host),
    )


def unique_hosts(kind: str) -> dict[str, Any]:
    """A constraint of the library's uniqueingresshost template (as `kind`) on every Ingress."""
    return {
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": kind,
        "metadata": {"name": "unique-hosts"},
        "spec": {"match": {"kinds": [{"apiGroups": ["networking.k8s.io"], "kinds": ["Ingress"]}]}},
    }


async def check(bus: Bus, cluster: str, namespace: str, manifest: dict[str, Any]) -> PolicyCheckResponse:
    request = PolicyCheckRequest(cluster=cluster, namespace=namespace, manifests=[manifest], requested_by="test")
    answer = await bus.request(POLICY_CHECK, request, timeout=10)
    assert isinstance(answer, PolicyCheckResponse)
    return answer


async def denied(
    bus: Bus, cluster: str, namespace: str, manifest: dict[str, Any], *, what: str, timeout: float = 20
) -> PolicyCheckResponse:
    """The bus check's answer once it denies `manifest` (a constraint or a label coming into force)."""

    async def refused() -> PolicyCheckResponse | None:
        answer = await check(bus, cluster, namespace, manifest)
        return None if answer.allowed else answer

    answer: PolicyCheckResponse = await eventually(refused, timeout=timeout, what=what)
    return answer


def required_labels(
    kind: str, name: str, match: dict[str, Any], action: str = "deny", label: str = "owner"
) -> dict[str, Any]:
    return {
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"enforcementAction": action, "match": match, "parameters": {"labels": [{"key": label}]}},
    }


async def create_when_served(kube_api: Any, kind: str, *constraints: dict[str, Any]) -> None:
    """Creates the constraints of `kind` once its CRD (just made, by the gate or the test) is served."""

    async def made() -> bool:
        try:
            for constraint in constraints:
                await send_json(kube_api, "POST", f"{CONSTRAINTS}/{kind.lower()}", body=constraint)
        except ApiError as exc:
            if exc.status in (404, 429, 503):  # the CRD not served yet
                return False
            raise
        return True

    await eventually(made, timeout=30, interval=0.1, what=f"the {kind} constraints created")


async def created(objects: ClusterObjects, name: str) -> dict[str, Any] | None:
    status = (await objects.template(name)).get("status") or {}
    return status if "created" in status else None


async def test_templates_and_constraints_from_the_cluster_as_gatekeeper_reads_them(
    bus: Bus,
    kube_api: Any,
    namespace: str,
    gate_crds: None,
    cluster_objects: ClusterObjects,
    cluster_gate: ClusterGate,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    kind = await cluster_objects.create_library_template("requiredlabels", "K8sRequiredLabels")
    gate = cluster_gate(
        cluster,
        BALLAST_AUDIT_INTERVAL="0",
    )
    await gate.process.wait_status("/readyz", 200, timeout=60)
    status = await eventually(lambda: created(cluster_objects, kind.lower()), timeout=20, what="template status")
    assert status["created"] is True
    assert status["byPod"][0]["errors"] == []
    crd = await send_json(
        kube_api,
        "GET",
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{kind.lower()}.constraints.gatekeeper.sh",
    )
    assert crd["spec"]["names"]["categories"] == ["constraint", "constraints"]

    # The parameters schema is the template's: the API server refuses what it does not allow.
    plural = f"{CONSTRAINTS}/{kind.lower()}"
    match = {"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}], "namespaces": [namespace]}
    bad = required_labels(kind, "bad", match)
    bad["spec"]["parameters"] = {"labels": "owner"}
    with pytest.raises(ApiError) as refused:
        await send_json(kube_api, "POST", plural, body=bad)
    assert refused.value.status == 422
    assert "spec.parameters.labels" in refused.value.message
    await send_json(kube_api, "POST", plural, body=required_labels(kind, "must-have-owner", match))
    bare = deployment(namespace, "bare")
    answer = await denied(bus, cluster, namespace, bare, what="the constraint from the cluster in force")
    assert [(v.policy, v.message) for v in answer.violations] == [
        (f"{kind}/must-have-owner", 'you must provide labels: {"owner"}')
    ]

    # A template OPA refuses: the compiler's message on its status; the other template still judges.
    broken_kind = unique_kind("K8sBroken")
    await cluster_objects.create_template(template(broken_kind, BROKEN))
    broken = await eventually(lambda: created(cluster_objects, broken_kind.lower()), timeout=20, what="refusal")
    assert broken["created"] is False
    (error,) = broken["byPod"][0]["errors"]
    assert f"templates/{broken_kind}/rego:4: rego_type_error: undefined function no_such_function" in error["message"]
    assert not (await check(bus, cluster, namespace, deployment(namespace, "bare"))).allowed

    # namespaceSelector, from the watched Namespaces: no longer a failure for lack of the Namespace.
    await send_json(kube_api, "DELETE", f"{plural}/must-have-owner")
    gold = required_labels(kind, "gold-needs-owner", match | {"namespaceSelector": {"matchLabels": {"tier": "gold"}}})
    await send_json(kube_api, "POST", plural, body=gold)

    async def old_one_gone() -> bool:
        answer = await check(bus, cluster, namespace, deployment(namespace, "bare"))
        return all(v.policy != f"{kind}/must-have-owner" for v in answer.violations)

    await eventually(old_one_gone, timeout=20, what="the deleted constraint gone")
    unlabelled = await check(bus, cluster, namespace, deployment(namespace, "bare"))
    assert unlabelled.violations == [], "the namespace is not gold: not matched (and no failure for lack of it)"
    await send_json(
        kube_api,
        "PATCH",
        f"/api/v1/namespaces/{namespace}",
        headers={"Content-Type": "application/merge-patch+json"},
        body={"metadata": {"labels": {"tier": "gold"}}},
    )

    answer = await denied(bus, cluster, namespace, bare, what="the namespace's new label seen")
    assert [v.policy for v in answer.violations] == [f"{kind}/gold-needs-owner"]

    # The template deleted: its constraint kind goes with it.
    await send_json(kube_api, "DELETE", f"/apis/templates.gatekeeper.sh/v1/constrainttemplates/{kind.lower()}")

    async def gone() -> bool:
        return (await check(bus, cluster, namespace, deployment(namespace, "bare"))).allowed

    await eventually(gone, timeout=20, what="the template's constraints gone with it")


async def test_a_referential_policy_reads_the_synced_inventory(
    bus: Bus,
    kube_api: Any,
    tmp_path: Path,
    namespace: str,
    gate_crds: None,
    cluster_objects: ClusterObjects,
    cluster_gate: ClusterGate,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    kind = unique_kind("K8sUniqueIngressHost")
    policies = tmp_path / "policies"
    policies.mkdir()
    # From files this time, with the library's own sync config (which also names kinds no longer served).
    library = library_template("uniqueingresshost", kind)
    constraint = unique_hosts(kind)
    sync = (LIBRARY / "general" / "uniqueingresshost" / "sync.yaml").read_text()
    (policies / "policies.yaml").write_text(yaml.safe_dump_all([library, constraint]))
    (policies / "sync.yaml").write_text(sync)
    host = f"{uuid.uuid4().hex[:8]}.shop.example.com"
    await create_ingress(kube_api, namespace, "a", host)
    gate = cluster_gate(
        cluster,
        BALLAST_POLICY_DIR=str(policies),
        BALLAST_AUDIT_INTERVAL="0",
    )
    await gate.process.wait_status("/readyz", 200, timeout=60)
    assert "not synced: extensions/v1beta1 is not served" in gate.process.log()
    answer = await check(bus, cluster, "other", ingress("other", "b", host))
    assert not answer.allowed
    assert [v.message for v in answer.violations] == [f"ingress host conflicts with an existing ingress <{host}>"]
    assert (await check(bus, cluster, namespace, ingress(namespace, "a", host))).allowed, "itself is no conflict"

    second = f"{uuid.uuid4().hex[:8]}.shop.example.com"
    assert (await check(bus, cluster, "other", ingress("other", "b", second))).allowed
    await create_ingress(kube_api, namespace, "c", second)

    async def conflicts() -> bool:
        return not (await check(bus, cluster, "other", ingress("other", "b", second))).allowed

    await eventually(conflicts, timeout=10, what="a new Ingress in the inventory")


async def test_the_audit_caps_the_status_puts_every_violation_on_the_bus_and_covers_an_outage(
    bus: Bus,
    kube_api: Any,
    namespace: str,
    gate_crds: None,
    cluster_objects: ClusterObjects,
    cluster_gate: ClusterGate,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    kind = await cluster_objects.create_library_template("requiredlabels", "K8sRequiredLabels")
    deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    for name in ("one", "two", "three"):
        await send_json(kube_api, "POST", deployments, body=deployment(namespace, name))
    await send_json(kube_api, "POST", deployments, body=deployment(namespace, "labelled", {"owner": "me"}))
    # The last gate of this cluster was seen alive a minute ago: everything written since was admitted unjudged.
    await bus.ensure_streams()
    await bus.ensure_buckets()
    heartbeats = await bus.kv(POLICY_GATE, Alive)
    await heartbeats.put(alive_key(cluster), Alive(at=datetime.now(UTC) - timedelta(minutes=1), gate="gone"))
    # The constraint exists before the gate starts (the outage audit runs once the constraints are loaded): its CRD
    # made here as the gate makes it.
    library = library_template("requiredlabels", kind)
    await send_json(
        kube_api,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        body=constraint_crd(ConstraintTemplate.from_manifest(library)),
    )
    match = {"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}], "namespaces": [namespace]}
    await create_when_served(kube_api, kind, required_labels(kind, "owner", match))

    gate = cluster_gate(
        cluster,
        BALLAST_AUDIT_INTERVAL="1",
        BALLAST_AUDIT_CHUNK_SIZE="2",
        BALLAST_CONSTRAINT_VIOLATIONS_LIMIT="2",
    )
    await gate.process.wait_status("/readyz", 200, timeout=60)

    async def audited() -> dict[str, Any] | None:
        constraint = await send_json(kube_api, "GET", f"{CONSTRAINTS}/{kind.lower()}/owner")
        status = constraint.get("status") or {}
        return status if status.get("totalViolations") == 3 else None

    status = await eventually(audited, timeout=30, what="the audit's totals on the constraint")
    assert len(status["violations"]) == 2, "capped at BALLAST_CONSTRAINT_VIOLATIONS_LIMIT"
    first = status["violations"][0]
    assert first["kind"] == "Deployment"
    assert first["group"] == "apps"
    assert first["namespace"] == namespace
    assert first["enforcementAction"] == "deny"
    assert first["message"] == 'you must provide labels: {"owner"}'

    async def on_the_bus() -> dict[AuditTrigger, set[str]] | None:
        found: dict[AuditTrigger, set[str]] = {}
        for event in await stored_events(bus, f"evt.policy.{cluster}.{namespace}.audit_violation"):
            assert isinstance(event.data, AuditViolation)
            found.setdefault(event.data.trigger, set()).add(event.data.object.name)
        return found if len(found) == 2 else None

    by_trigger = await eventually(on_the_bus, timeout=30, what="outage and periodic audit violations on the bus")
    assert by_trigger[AuditTrigger.OUTAGE_GAP] == {"one", "two", "three"}, "all three, not only the two in status"
    assert by_trigger[AuditTrigger.PERIODIC] == {"one", "two", "three"}


def test_written_since_reads_creation_and_every_managers_last_write() -> None:
    since = datetime(2026, 12, 1, 12, 0, 30, 500000, tzinfo=UTC)
    old = {"metadata": {"creationTimestamp": "2026-12-01T11:00:00Z"}}
    assert not written_since(old, since)
    updated = {
        "metadata": {
            "creationTimestamp": "2026-12-01T11:00:00Z",
            "managedFields": [{"manager": "kubectl", "time": "2026-12-01T12:00:30Z"}],
        }
    }
    assert written_since(updated, since), "the API server keeps seconds: the second of `since` counts"


async def test_each_replica_keeps_its_own_entry_in_by_pod_and_a_gone_replicas_is_dropped(
    kube_api: Any,
    namespace: str,
    gate_crds: None,
    cluster_objects: ClusterObjects,
    cluster_gate: ClusterGate,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    kind = await cluster_objects.create_library_template("requiredlabels", "K8sRequiredLabels")
    quick = {
        "BALLAST_AUDIT_INTERVAL": "0",
        "BALLAST_STATUS_REPAIR_INTERVAL": "0.5",
        "BALLAST_LEASE_DURATION": "3",
        "BALLAST_RENEW_DEADLINE": "2",
        "BALLAST_RETRY_PERIOD": "0.5",
    }
    gates = {
        identity: cluster_gate(
            cluster,
            BALLAST_IDENTITY=identity,
            **quick,
        )
        for identity in ("gate-a", "gate-b")
    }
    for gate in gates.values():
        await gate.process.wait_status("/readyz", 200, timeout=60)

    async def by_pod(path: str, ids: list[str]) -> list[dict[str, Any]] | None:
        entries = ((await send_json(kube_api, "GET", path)).get("status") or {}).get("byPod") or []
        return entries if [e.get("id") for e in entries] == ids else None

    template_path = f"/apis/templates.gatekeeper.sh/v1/constrainttemplates/{kind.lower()}"
    entries = await eventually(lambda: by_pod(template_path, ["gate-a", "gate-b"]), timeout=30, what="both entries")
    uid = (await cluster_objects.template(kind.lower()))["metadata"]["uid"]
    assert all(e["errors"] == [] and e["templateUID"] == uid and e["observedGeneration"] == 1 for e in entries)

    plural = f"{CONSTRAINTS}/{kind.lower()}"
    match = {"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}], "namespaces": [namespace]}
    constraint = await send_json(kube_api, "POST", plural, body=required_labels(kind, "must-have-owner", match))
    constraint_path = f"{plural}/must-have-owner"
    entries = await eventually(lambda: by_pod(constraint_path, ["gate-a", "gate-b"]), timeout=30, what="enforced")
    assert [(e["enforced"], e["constraintUID"], e["observedGeneration"]) for e in entries] == [
        (True, constraint["metadata"]["uid"], 1)
    ] * 2

    # gate-b goes: its entries go with it (the leader drops them), gate-a's stay.
    await gates["gate-b"].process.stop()
    await eventually(lambda: by_pod(template_path, ["gate-a"]), timeout=60, what="gate-b's template entry gone")
    await eventually(lambda: by_pod(constraint_path, ["gate-a"]), timeout=60, what="gate-b's constraint entry gone")

    # An entry lost (here, removed by hand) is written again by its replica.
    for path in (template_path, constraint_path):
        await send_json(
            kube_api,
            "PATCH",
            f"{path}/status",
            headers={"Content-Type": "application/merge-patch+json"},
            body={"status": {"byPod": []}},
        )
    await eventually(lambda: by_pod(template_path, ["gate-a"]), timeout=30, what="gate-a's template entry again")
    await eventually(lambda: by_pod(constraint_path, ["gate-a"]), timeout=30, what="gate-a's constraint entry again")


async def test_a_namespace_a_config_leaves_out_of_the_audit_is_not_audited_but_still_judged(
    bus: Bus,
    kube_api: Any,
    tmp_path: Path,
    namespace: str,
    gate_crds: None,
    cluster_objects: ClusterObjects,
    cluster_gate: ClusterGate,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    kind = await cluster_objects.create_library_template("requiredlabels", "K8sRequiredLabels")
    await send_json(
        kube_api, "POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=deployment(namespace, "bare")
    )
    policies = tmp_path / "policies"
    policies.mkdir()
    config = gatekeeper_config({"excludedNamespaces": [namespace], "processes": ["audit"]})
    (policies / "config.yaml").write_text(yaml.safe_dump(config))
    gate = cluster_gate(
        cluster,
        BALLAST_AUDIT_INTERVAL="1",
        BALLAST_POLICY_DIR=str(policies),
    )
    await gate.process.wait_status("/readyz", 200, timeout=60)
    match = {"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}], "namespaces": [namespace]}
    plural = f"{CONSTRAINTS}/{kind.lower()}"
    await send_json(kube_api, "POST", plural, body=required_labels(kind, "owner", match))

    # The webhook's process is not excluded: judged.
    await denied(bus, cluster, namespace, deployment(namespace, "bare"), what="the constraint in force", timeout=30)

    async def audited() -> dict[str, Any] | None:
        status = (await send_json(kube_api, "GET", f"{plural}/owner")).get("status") or {}
        return status if "auditTimestamp" in status else None

    first = await eventually(audited, timeout=30, what="an audit of the constraint")
    later = await eventually(  # an audit that started after the constraint was loaded, not one racing its loading
        lambda: audited_after(kube_api, f"{plural}/owner", first["auditTimestamp"]), timeout=30, what="a later audit"
    )
    assert later["totalViolations"] == 0
    assert later.get("violations") == []
    assert await stored_events(bus, f"evt.policy.{cluster}.{namespace}.audit_violation") == []


async def audited_after(kube_api: Any, path: str, stamp: str) -> dict[str, Any] | None:
    status = (await send_json(kube_api, "GET", path)).get("status") or {}
    return status if status.get("auditTimestamp", "") > stamp else None


async def test_a_namespace_a_config_leaves_out_of_sync_is_not_in_the_inventory(
    bus: Bus,
    kube_api: Any,
    tmp_path: Path,
    namespace: str,
    gate_crds: None,
    cluster_objects: ClusterObjects,
    cluster_gate: ClusterGate,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    kind = unique_kind("K8sUniqueIngressHost")
    kept = f"{namespace}-kept"  # a second namespace, synced
    await send_json(kube_api, "POST", "/api/v1/namespaces", body={"metadata": {"name": kept}})
    try:
        policies = tmp_path / "policies"
        policies.mkdir()
        constraint = unique_hosts(kind)
        config = gatekeeper_config(
            {"excludedNamespaces": [namespace], "processes": ["sync"]},
            sync=[{"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"}],
        )
        library = library_template("uniqueingresshost", kind)
        (policies / "policies.yaml").write_text(yaml.safe_dump_all([library, constraint, config]))
        left_out, synced = (f"{uuid.uuid4().hex[:8]}.shop.example.com" for _ in range(2))
        for where, host in ((namespace, left_out), (kept, synced)):
            await create_ingress(kube_api, where, "a", host)
        gate = cluster_gate(
            cluster,
            BALLAST_POLICY_DIR=str(policies),
            BALLAST_AUDIT_INTERVAL="0",
        )
        await gate.process.wait_status("/readyz", 200, timeout=60)  # ready: the inventory pushed once
        assert not (await check(bus, cluster, "other", ingress("other", "b", synced))).allowed
        assert (await check(bus, cluster, "other", ingress("other", "b", left_out))).allowed
    finally:
        await send_json(kube_api, "DELETE", f"/api/v1/namespaces/{kept}")


async def started_reading_config(cluster_gate: ClusterGate, cluster: str, namespace: str) -> GateWebhook:
    """A gate, ready, reading the Gatekeeper Config `config` of the test's own namespace (others read the default)."""
    gate = cluster_gate(cluster, BALLAST_AUDIT_INTERVAL="0", BALLAST_GATEKEEPER_CONFIG=f"{namespace}/config")
    await gate.process.wait_status("/readyz", 200, timeout=60)
    return gate


async def test_a_config_in_the_cluster_leaves_namespaces_out_as_it_changes_and_its_deletion_brings_them_back(
    bus: Bus,
    kube_api: Any,
    namespace: str,
    gate_crds: None,
    config_crd: None,
    cluster_objects: ClusterObjects,
    cluster_gate: ClusterGate,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    kind = await cluster_objects.create_library_template("requiredlabels", "K8sRequiredLabels")
    await started_reading_config(cluster_gate, cluster, namespace)
    match = {"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]}
    await send_json(kube_api, "POST", f"{CONSTRAINTS}/{kind.lower()}", body=required_labels(kind, "owner", match))
    bare = deployment(namespace, "bare")

    async def judged(allowed: bool) -> bool:
        return (await check(bus, cluster, namespace, bare)).allowed is allowed

    await eventually(lambda: judged(False), timeout=30, what="the constraint in force")
    configs = f"/apis/config.gatekeeper.sh/v1alpha1/namespaces/{namespace}/configs"
    config = gatekeeper_config({"excludedNamespaces": ["kube-system"], "processes": ["*"]})
    config["metadata"]["namespace"] = namespace
    await send_json(kube_api, "POST", configs, body=config)
    stored = await send_json(kube_api, "GET", f"{configs}/config")
    stored["spec"]["match"].append({"excludedNamespaces": [f"{namespace[:6]}*"], "processes": ["webhook"]})
    await send_json(kube_api, "PUT", f"{configs}/config", body=stored)
    await eventually(lambda: judged(True), timeout=30, what="the namespace left out of the webhook")
    elsewhere = deployment("other", "bare")
    assert not (await check(bus, cluster, "other", elsewhere)).allowed  # the pattern takes this namespace only
    await send_json(kube_api, "DELETE", f"{configs}/config")
    await eventually(lambda: judged(False), timeout=30, what="the namespace judged again once the Config is gone")


async def test_a_config_in_the_cluster_syncs_its_kinds_into_the_inventory(
    bus: Bus,
    kube_api: Any,
    namespace: str,
    gate_crds: None,
    config_crd: None,
    cluster_objects: ClusterObjects,
    cluster_gate: ClusterGate,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    kind = await cluster_objects.create_library_template("uniqueingresshost", "K8sUniqueIngressHost")
    host = f"{uuid.uuid4().hex[:8]}.shop.example.com"
    await create_ingress(kube_api, namespace, "a", host)
    gate = await started_reading_config(cluster_gate, cluster, namespace)
    constraint = unique_hosts(kind)
    await send_json(kube_api, "POST", f"{CONSTRAINTS}/{kind.lower()}", body=constraint)
    duplicate = ingress("other", "b", host)

    async def enforced() -> bool:  # the gate's own status entry: it judges by the constraint
        status = (await send_json(kube_api, "GET", f"{CONSTRAINTS}/{kind.lower()}/unique-hosts")).get("status") or {}
        return any(entry.get("enforced") for entry in status.get("byPod") or [])

    await eventually(enforced, timeout=30, what="the constraint enforced")
    assert (await check(bus, cluster, "other", duplicate)).allowed  # nothing synced: the host is not known
    config = gatekeeper_config(sync=[{"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"}])
    config["metadata"]["namespace"] = namespace
    await send_json(
        kube_api, "POST", f"/apis/config.gatekeeper.sh/v1alpha1/namespaces/{namespace}/configs", body=config
    )

    readiness: list[int] = []

    async def refused() -> bool:
        readiness.append((await gate.process.get("/readyz"))[0])
        return not (await check(bus, cluster, "other", duplicate)).allowed

    await eventually(refused, timeout=30, what="the Config's sync kind in the inventory: the host taken")
    assert set(readiness) == {200}  # kinds added later are synced without making the gate unready


async def test_with_events_asked_for_violations_are_kubernetes_events_as_gatekeeper_writes_them(
    bus: Bus,
    kube_api: Any,
    namespace: str,
    gate_crds: None,
    cluster_objects: ClusterObjects,
    cluster_gate: ClusterGate,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    kind = await cluster_objects.create_library_template("requiredlabels", "K8sRequiredLabels")
    # The Events go to the gate's own namespace (the lease's: the test's namespace here).
    gate = cluster_gate(
        cluster, BALLAST_AUDIT_INTERVAL="1", BALLAST_EMIT_ADMISSION_EVENTS="true", BALLAST_EMIT_AUDIT_EVENTS="true"
    )
    await gate.process.wait_status("/readyz", 200, timeout=60)
    match = {"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}], "namespaces": [namespace]}
    await eventually(lambda: created(cluster_objects, kind.lower()), timeout=20, what="the constraint kind made")
    await create_when_served(
        kube_api,
        kind,
        required_labels(kind, "must-have-owner", match),
        required_labels(kind, "should-have-team", match, "warn", label="team"),
    )
    await denied(bus, cluster, namespace, deployment(namespace, "bare"), what="the constraints in force")

    # Admission: a Deployment without either label, reviewed by the gate's webhook.
    status, body = await gate.post(json.dumps(admission_review(deployment(namespace, "bare"), user="alice")).encode())
    assert status == 200
    assert json.loads(body)["response"]["allowed"] is False
    # Audit: one that is in the cluster already (no webhook registered here), with the team label only.
    stored = await send_json(
        kube_api,
        "POST",
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        body=deployment(namespace, "teamed", {"team": "shop"}),
    )

    async def told() -> dict[str, dict[str, Any]] | None:
        events = (await send_json(kube_api, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"))["items"]
        mine = {e["reason"]: e for e in events if e.get("reportingController") == "platform.example.com/policy-gate"}
        wanted = {"FailedAdmission", "WarningAdmission", "AuditViolation"}
        return mine if wanted <= set(mine) else None

    events = await eventually(told, timeout=30, what="admission and audit Events")
    failed = events["FailedAdmission"]
    assert failed["type"] == "Warning"
    assert failed["regarding"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": namespace,
        "name": "bare",
    }
    assert failed["note"] == (
        f'create of Deployment {namespace}/bare by alice: {kind}/must-have-owner: you must provide labels: {{"owner"}}'
    )
    assert events["WarningAdmission"]["note"].endswith(f'{kind}/should-have-team: you must provide labels: {{"team"}}')
    audited = events["AuditViolation"]
    assert audited["regarding"]["name"] == "teamed"
    assert audited["regarding"]["uid"] == stored["metadata"]["uid"]
    assert audited["note"] == (
        f'Deployment {namespace}/teamed: {kind}/must-have-owner: you must provide labels: {{"owner"}}'
    )
