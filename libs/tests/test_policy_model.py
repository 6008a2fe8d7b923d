"""Gatekeeper's model without OPA: spec.match, input.review as gator builds it, templates' modules, expansion, and
gator's assertions."""

from __future__ import annotations

from typing import Any

import pytest

from ballast.events.contracts.policy import EnforcementAction
from ballast.policy import (
    WORKLOAD_EXPANSIONS,
    Constraint,
    ConstraintError,
    ConstraintTemplate,
    Match,
    MatchError,
    ReviewError,
    TemplateError,
    inventory_document,
    review_object,
)
from ballast.policy.suite import SuiteError, check_assertion


def pod(name: str = "p", namespace: str | None = "apps", labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": [{"name": "c"}]}}


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def match(**spec: Any) -> Match:
    return Match.parse("test", spec)


# -- spec.match --------------------------------------------------------------------------------------------------------


def test_kinds_match_group_and_kind_with_wildcards() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "a"}}
    assert match(kinds=[{"apiGroups": [""], "kinds": ["Pod"]}]).matches(pod(), None)
    assert not match(kinds=[{"apiGroups": [""], "kinds": ["Pod"]}]).matches(deployment, None)
    assert match(kinds=[{"apiGroups": ["*"], "kinds": ["Deployment"]}]).matches(deployment, None)
    assert not match(kinds=[{"apiGroups": ["batch"], "kinds": ["*"]}]).matches(deployment, None)
    assert match(kinds=[{"apiGroups": ["apps"], "kinds": []}]).matches(deployment, None)
    assert match().matches(deployment, None)


def test_namespaces_and_exclusions_use_prefix_suffix_and_contains_globs() -> None:
    assert match(namespaces=["app*"]).matches(pod(namespace="apps"), None)
    assert not match(namespaces=["kube-*"]).matches(pod(namespace="apps"), None)
    assert not match(excludedNamespaces=["*-system"]).matches(pod(namespace="kube-system"), None)
    assert not match(excludedNamespaces=["*ube*"]).matches(pod(namespace="kube-system"), None)
    assert match(excludedNamespaces=["kube-system"]).matches(pod(namespace="kube-systemx"), None)
    # A Namespace is judged by its own name; a cluster-scoped object is never ruled out by these lists.
    assert not match(excludedNamespaces=["kube-system"]).matches(namespace("kube-system"), None)
    assert match(namespaces=["apps"]).matches(pod(namespace=None), None)


def test_scope_tells_cluster_from_namespaced() -> None:
    assert match(scope="Namespaced").matches(pod(), None)
    assert not match(scope="Cluster").matches(pod(), None)
    assert match(scope="Cluster").matches(namespace("x"), None)
    assert not match(scope="Namespaced").matches(namespace("x"), None)
    assert match(scope="Cluster").matches(pod(namespace=None), None)


def test_label_selector_and_namespace_selector() -> None:
    selector = {
        "matchLabels": {"team": "a"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}],
    }
    assert match(labelSelector=selector).matches(pod(labels={"team": "a"}), None)
    assert not match(labelSelector=selector).matches(pod(labels={"team": "a", "tier": "x"}), None)
    assert not match(labelSelector={"matchExpressions": [{"key": "team", "operator": "Exists"}]}).matches(pod(), None)
    on_ns = match(namespaceSelector={"matchLabels": {"env": "prod"}})
    assert on_ns.matches(pod(), namespace("apps", {"env": "prod"}))
    assert not on_ns.matches(pod(), namespace("apps", {"env": "dev"}))
    assert on_ns.matches(namespace("n", {"env": "prod"}), None)  # a Namespace matches on its own labels
    assert on_ns.matches(pod(namespace=None), None)
    with pytest.raises(MatchError, match="Namespace 'apps'"):
        on_ns.matches(pod(), None)


def test_name_and_source() -> None:
    assert match(name="web-*").matches(pod("web-1"), None)
    assert not match(name="web-*").matches(pod("api"), None)
    assert not match(source="Generated").matches(pod(), None, "Original")
    assert match(source="Generated").matches(pod(), None, "Generated")
    assert not match(source="Original").matches(pod(), None, "Generated")


def test_bad_match_and_constraints_are_refused_with_their_name() -> None:
    with pytest.raises(ConstraintError, match=r"matchExpressions\[0\]: 'Near'"):
        match(labelSelector={"matchExpressions": [{"key": "a", "operator": "Near"}]})
    with pytest.raises(ConstraintError, match="K8sX/c: enforcementAction 'block'"):
        Constraint.from_manifest(
            {
                "apiVersion": "constraints.gatekeeper.sh/v1beta1",
                "kind": "K8sX",
                "metadata": {"name": "c"},
                "spec": {"enforcementAction": "block"},
            }
        )


def test_constraint_defaults() -> None:
    constraint = Constraint.from_manifest(
        {"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sX", "metadata": {"name": "c"}}
    )
    assert constraint.parameters == {}
    assert constraint.enforcement_action is EnforcementAction.DENY
    assert constraint.match == Match()


# -- input.review ------------------------------------------------------------------------------------------------------


def test_review_of_a_plain_object_is_what_gator_builds() -> None:
    review = review_object({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}})
    assert review.input({"a": 1}) == {
        "review": {
            "uid": "",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "", "version": "", "resource": ""},
            "name": "d",
            "operation": "",
            "userInfo": {},
            "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
            "oldObject": None,
            "options": None,
            "namespaceObject": None,
        },
        "parameters": {"a": 1},
    }
    assert review_object(pod()).request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}


def admission_review(request: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": request}


def test_review_of_an_admission_review_takes_its_request_and_deletes_look_at_the_old_object() -> None:
    old = pod("old")
    review = review_object(admission_review({"operation": "DELETE", "oldObject": old, "name": "old"}))
    assert review.request["object"] == old
    assert review.request["userInfo"] == {}
    assert review.subject == old
    update = review_object(admission_review({"operation": "UPDATE", "object": pod("new"), "oldObject": old}))
    assert update.object == pod("new")
    assert update.old_object == old


def test_admission_review_without_objects_or_with_unknown_fields_is_refused() -> None:
    with pytest.raises(ReviewError, match='no "object" or "oldObject"'):
        review_object(admission_review({"operation": "CREATE"}))
    with pytest.raises(ReviewError, match="unknown fields: colour"):
        review_object(admission_review({"object": pod(), "colour": "red"}))
    with pytest.raises(ReviewError, match="no request"):
        review_object({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})


def test_inventory_layout() -> None:
    cluster = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"}}
    assert inventory_document([cluster, pod()]) == {
        "cluster": {"storage.k8s.io/v1": {"StorageClass": {"fast": cluster}}},
        "namespace": {"apps": {"v1": {"Pod": {"p": pod()}}}},
    }


# -- templates ---------------------------------------------------------------------------------------------------------


def template(rego: str, libs: list[str] | None = None, version: str | None = None, kind: str = "K8sDemo") -> Any:
    source: dict[str, Any] = {"rego": rego, "libs": libs or []}
    if version:
        source["version"] = version
    return {
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {"name": kind.lower()},
        "spec": {
            "crd": {"spec": {"names": {"kind": kind}}},
            "targets": [{"target": "admission.k8s.gatekeeper.sh", "code": [{"engine": "Rego", "source": source}]}],
        },
    }


def test_template_modules_move_under_the_kind_and_keep_their_rows() -> None:
    rego = 'package demo\n\nimport data.lib.helpers.f\n\nviolation[{"msg": m}] { m := data.lib.helpers.g }\n'
    lib = "\npackage lib.helpers\nf := 1\n"
    parsed = ConstraintTemplate.from_manifest(template(rego, [lib], version="v1"))
    assert parsed.version == "v1"
    lib_module, entry = parsed.modules()
    assert lib_module.module_id == "templates/K8sDemo/libs/0"
    # v1: `import rego.v1` takes the blank line after the package, or a line of its own (remembered).
    assert lib_module.source == "\npackage ballast.templates.K8sDemo.lib.helpers\nimport rego.v1\nf := 1\n"
    assert lib_module.inserted_row == 3
    assert entry.inserted_row is None
    assert entry.source.splitlines() == [
        "package ballast.templates.K8sDemo.main",
        "import rego.v1",
        "import data.ballast.templates.K8sDemo.lib.helpers.f",
        "",
        'violation[{"msg": m}] { m := data.ballast.templates.K8sDemo.lib.helpers.g }',
    ]
    already = ConstraintTemplate.from_manifest(template("package demo\nimport rego.v1\n", version="v1"))
    assert already.modules()[0].source == "package ballast.templates.K8sDemo.main\nimport rego.v1\n"


def test_templates_default_to_rego_v0_and_read_the_legacy_fields() -> None:
    manifest = template('package x\nviolation[{"msg": "m"}] { true }')
    manifest["spec"]["targets"][0] = {"target": "admission.k8s.gatekeeper.sh", "rego": "package x\nviolation[{}] {}"}
    parsed = ConstraintTemplate.from_manifest(manifest)
    assert parsed.version == "v0"
    assert parsed.rego.startswith("package x")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda t: t["metadata"].update(name="other"), "must be the lowercase of its kind"),
        (lambda t: t["spec"]["targets"].append({"target": "x"}), "exactly one target"),
        (lambda t: t["spec"]["targets"][0]["code"][0]["source"].update(version="v2"), "'v2' is not v0 or v1"),
        (lambda t: t["spec"]["targets"][0]["code"][0]["source"].update(rego=""), "has no rego"),
    ],
)
def test_malformed_templates_are_refused(change: Any, error: str) -> None:
    manifest = template("package x\n")
    change(manifest)
    with pytest.raises(TemplateError, match=error):
        ConstraintTemplate.from_manifest(manifest)


def test_lib_outside_the_lib_package_is_refused() -> None:
    parsed = ConstraintTemplate.from_manifest(template("package x\n", ["package helpers\n"]))
    with pytest.raises(TemplateError, match="lib package 'helpers' must be under lib"):
        parsed.modules()


# -- expansion ---------------------------------------------------------------------------------------------------------


def test_a_deployment_expands_into_the_pod_it_creates() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "Web", "namespace": "apps"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}},
    }
    workloads = WORKLOAD_EXPANSIONS[0]
    assert workloads.applies_to(deployment)
    assert not workloads.applies_to(pod())
    assert workloads.expand(deployment) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": {"app": "web"}, "namespace": "apps", "name": "web-pod"},
        "spec": {"containers": [{"name": "c"}]},
    }
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c", "namespace": "apps"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}},
    }
    assert WORKLOAD_EXPANSIONS[1].expand(cronjob)["metadata"] == {"namespace": "apps", "name": "c-pod"}


# -- gator assertions --------------------------------------------------------------------------------------------------


def test_assertions_count_matching_messages() -> None:
    messages = ["container <a> is bad", "initContainer <b> is bad"]
    assert check_assertion({"violations": True}, messages) is None
    assert check_assertion({"violations": 2}, messages) is None
    assert check_assertion({"violations": 1, "message": "initContainer"}, messages) is None
    assert check_assertion({"violations": "no", "message": "ephemeral"}, messages) is None
    assert check_assertion({}, messages) is None  # violations defaults to yes
    failure = check_assertion({"violations": False}, messages)
    assert failure is not None
    assert "want violations: no, got 2" in failure
    with pytest.raises(SuiteError, match="'many' is not yes, no or a count"):
        check_assertion({"violations": "many"}, messages)
