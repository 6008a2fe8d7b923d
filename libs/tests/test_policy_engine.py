"""The policy engine on the real OPA: templates compiled (v0 and v1) or refused with OPA's message, constraints
matched, evaluation errors failing closed, referential data, expansion, and OPA restarted when it dies."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from ballast.events.contracts.policy import EnforcementAction
from ballast.policy import (
    Constraint,
    ConstraintTemplate,
    ExpansionTemplate,
    ManagedOpa,
    PolicyEngine,
    TemplateError,
)
from ballast.policy.review import review_object
from ballast.testing import eventually

REQUIRED_LABELS_V0 = """package k8srequiredlabels

violation[{"msg": msg, "details": {"missing": missing}}] {
  provided := {label | input.review.object.metadata.labels[label]}
  required := {label | label := input.parameters.labels[_]}
  missing := required - provided
  count(missing) > 0
  msg := sprintf("you must provide labels: %v", [missing])
}
"""

REQUIRED_LABELS_V1 = """package k8srequiredlabels

violation contains {"msg": msg} if {
  some label in input.parameters.labels
  not input.review.object.metadata.labels[label]
  msg := sprintf("label %v is missing", [label])
}
"""


def template(kind: str, rego: str, *, libs: tuple[str, ...] = (), version: str | None = None) -> ConstraintTemplate:
    source: dict[str, Any] = {"rego": rego, "libs": list(libs)}
    if version is not None:
        source["version"] = version
    return ConstraintTemplate.from_manifest(
        {
            "apiVersion": "templates.gatekeeper.sh/v1",
            "kind": "ConstraintTemplate",
            "metadata": {"name": kind.lower()},
            "spec": {
                "crd": {"spec": {"names": {"kind": kind}}},
                "targets": [{"target": "admission.k8s.gatekeeper.sh", "code": [{"engine": "Rego", "source": source}]}],
            },
        }
    )


def constraint(kind: str, name: str, *, action: str = "deny", **spec: Any) -> Constraint:
    return Constraint.from_manifest(
        {
            "apiVersion": "constraints.gatekeeper.sh/v1beta1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": {"enforcementAction": action, **spec},
        }
    )


def pod(name: str, labels: dict[str, str] | None = None, namespace: str = "apps", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec},
    }


async def messages(engine: PolicyEngine, *objects: dict[str, Any]) -> list[list[str]]:
    return [[v.message for v in found] for found in await engine.evaluate(list(objects))]


async def test_v0_template_judges_matching_objects_with_the_constraints_parameters(policy_engine: PolicyEngine) -> None:
    await policy_engine.add_template(template("K8sRequiredLabels", REQUIRED_LABELS_V0))
    policy_engine.add_constraint(
        constraint(
            "K8sRequiredLabels",
            "owner",
            parameters={"labels": ["owner"]},
            match={"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}], "excludedNamespaces": ["kube-*"]},
        )
    )
    verdicts = await policy_engine.evaluate(
        [pod("bare"), pod("owned", {"owner": "me"}), pod("system", namespace="kube-system")]
    )
    assert [[v.message for v in found] for found in verdicts] == [
        ['you must provide labels: {"owner"}'],
        [],
        [],
    ]
    violation = verdicts[0][0]
    assert violation.details == {"missing": ["owner"]}
    assert violation.enforcement_action is EnforcementAction.DENY
    assert violation.constraint.key == "K8sRequiredLabels/owner"


async def test_v1_template_is_evaluated_as_rego_v1(policy_engine: PolicyEngine) -> None:
    await policy_engine.add_template(template("K8sRequiredLabels", REQUIRED_LABELS_V1, version="v1"))
    policy_engine.add_constraint(constraint("K8sRequiredLabels", "team", action="warn", parameters={"labels": ["a"]}))
    found = (await policy_engine.evaluate([pod("bare")]))[0]
    assert [(v.message, v.enforcement_action) for v in found] == [("label a is missing", EnforcementAction.WARN)]
    # The same text declared v0 does not parse: v0 has no `contains` or `if` without importing them.
    with pytest.raises(TemplateError, match="rego_parse_error"):
        await policy_engine.add_template(template("K8sOther", REQUIRED_LABELS_V1))
    # And v0 syntax declared v1 is refused as v1 refuses it.
    with pytest.raises(TemplateError, match=r"templates/K8sThird/rego:3: rego_parse_error: .*`if` keyword"):
        await policy_engine.add_template(template("K8sThird", REQUIRED_LABELS_V0, version="v1"))
    # Without a blank line after the package the import is a line of its own; messages keep the author's rows.
    with pytest.raises(TemplateError, match=r"templates/K8sFourth/rego:2: rego_parse_error: .*`if` keyword"):
        await policy_engine.add_template(
            template("K8sFourth", 'package p\nviolation[{"msg": "m"}] { true }\n', version="v1")
        )


async def test_a_template_opa_refuses_is_reported_with_the_compilers_message_and_breaks_no_other(
    policy_engine: PolicyEngine,
) -> None:
    await policy_engine.add_template(template("K8sRequiredLabels", REQUIRED_LABELS_V0))
    policy_engine.add_constraint(constraint("K8sRequiredLabels", "owner", parameters={"labels": ["owner"]}))
    broken = 'package broken\n\nviolation[{"msg": msg}] {\n  msg := undefined_function(input.review)\n}\n'
    with pytest.raises(TemplateError) as refused:
        await policy_engine.add_template(template("K8sBroken", broken))
    assert "'k8sbroken': templates/K8sBroken/rego:4: rego_type_error: undefined function undefined_function" in str(
        refused.value
    )
    assert "K8sBroken" not in policy_engine.templates
    # A broken replacement of a working template leaves the working one in place.
    with pytest.raises(TemplateError, match="rego_parse_error"):
        await policy_engine.add_template(template("K8sRequiredLabels", "package k8srequiredlabels\nviolation[ {"))
    assert await messages(policy_engine, pod("bare")) == [['you must provide labels: {"owner"}']]


async def test_a_template_without_violation_is_refused(policy_engine: PolicyEngine) -> None:
    with pytest.raises(TemplateError, match="does not define violation"):
        await policy_engine.add_template(template("K8sNothing", "package nothing\n\ndeny[msg] { msg := 1 }\n"))


async def test_a_template_reading_data_other_than_inventory_and_its_libs_is_refused(
    policy_engine: PolicyEngine,
) -> None:
    reads = 'package reads\nviolation[{"msg": "m"}] { data.secrets.token; data.inventory.cluster }\n'
    with pytest.raises(TemplateError, match=r"invalid data references .*: data\.secrets\.token$"):
        await policy_engine.add_template(template("K8sReads", reads))
    assert "K8sReads" not in policy_engine.templates


async def test_each_template_has_its_own_libs(policy_engine: PolicyEngine) -> None:
    def uses_lib(kind: str, says: str) -> ConstraintTemplate:
        rego = f'package {kind.lower()}\nimport data.lib.helpers.word\nviolation[{{"msg": word}}] {{ true }}\n'
        return template(kind, rego, libs=(f'package lib.helpers\nword := "{says}"\n',))

    await policy_engine.add_template(uses_lib("K8sOne", "one"))
    await policy_engine.add_template(uses_lib("K8sTwo", "two"))
    policy_engine.add_constraint(constraint("K8sOne", "a"))
    policy_engine.add_constraint(constraint("K8sTwo", "b"))
    assert sorted((await messages(policy_engine, pod("p")))[0]) == ["one", "two"]


async def test_an_evaluation_error_is_a_violation_of_that_constraint_only(policy_engine: PolicyEngine) -> None:
    conflicting = 'package conflict\nf(x) = 1 { true }\nf(x) = 2 { true }\nviolation[{"msg": "never"}] { f(1) == 3 }\n'
    await policy_engine.add_template(template("K8sConflict", conflicting))
    await policy_engine.add_template(template("K8sRequiredLabels", REQUIRED_LABELS_V0))
    policy_engine.add_constraint(constraint("K8sConflict", "c"))
    policy_engine.add_constraint(constraint("K8sRequiredLabels", "owner", parameters={"labels": ["owner"]}))
    found = (await policy_engine.evaluate([pod("bare")]))[0]
    by_constraint = {v.constraint.key: v.message for v in found}
    assert by_constraint["K8sRequiredLabels/owner"] == 'you must provide labels: {"owner"}'
    assert "eval_conflict_error" in by_constraint["K8sConflict/c"]


async def test_a_decision_split_over_two_opa_requests_has_the_verdicts_of_one(policy_engine: PolicyEngine) -> None:
    conflicting = 'package conflict\nf(x) = 1 { true }\nf(x) = 2 { true }\nviolation[{"msg": "never"}] { f(1) == 3 }\n'
    await policy_engine.add_template(template("K8sConflict", conflicting))
    await policy_engine.add_template(template("K8sRequiredLabels", REQUIRED_LABELS_V0))
    for label in ("a", "b", "c", "d", "e", "f", "g"):
        policy_engine.add_constraint(constraint("K8sRequiredLabels", label, parameters={"labels": [label]}))
    policy_engine.add_constraint(constraint("K8sConflict", "c"))
    objects = [pod("bare"), pod("some", {"b": "1", "e": "1"})]
    policy_engine.split_at = 6
    assert len(policy_engine.prepared_query([review_object(objects[0])])) == 2  # 8 checks: two requests
    split = [[(v.constraint.key, v.message) for v in found] for found in await policy_engine.evaluate(objects)]
    policy_engine.split_at = None
    whole = [[(v.constraint.key, v.message) for v in found] for found in await policy_engine.evaluate(objects)]
    assert split == whole
    assert [key for key, _ in split[1]] == ["K8sConflict/c"] + [f"K8sRequiredLabels/{label}" for label in "acdfg"]
    assert "eval_conflict_error" in split[1][0][1]


async def test_referential_templates_read_the_inventory(policy_engine: PolicyEngine) -> None:
    unique_name = (
        "package uniquename\n"
        'violation[{"msg": "name taken"}] {\n'
        "  other := data.inventory.namespace[ns][_].Pod[input.review.object.metadata.name]\n"
        "  ns != input.review.object.metadata.namespace\n"
        "}\n"
    )
    await policy_engine.add_template(template("K8sUniqueName", unique_name))
    policy_engine.add_constraint(constraint("K8sUniqueName", "u"))
    assert await messages(policy_engine, pod("web")) == [[]]
    await policy_engine.set_inventory([pod("web", namespace="other")])
    assert await messages(policy_engine, pod("web"), pod("api")) == [["name taken"], []]


async def test_namespace_selector_uses_the_namespace_when_known_and_fails_closed_when_not(
    policy_engine: PolicyEngine,
) -> None:
    await policy_engine.add_template(template("K8sRequiredLabels", REQUIRED_LABELS_V0))
    selector = {"namespaceSelector": {"matchLabels": {"env": "prod"}}}
    policy_engine.add_constraint(constraint("K8sRequiredLabels", "prod", parameters={"labels": ["x"]}, match=selector))
    prod = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps", "labels": {"env": "prod"}}}
    dev = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps", "labels": {"env": "dev"}}}
    [[in_prod]] = await policy_engine.evaluate([pod("p")], namespaces={"apps": prod})
    assert in_prod.message == 'you must provide labels: {"x"}'
    assert await policy_engine.evaluate([pod("p")], namespaces={"apps": dev}) == [[]]
    [[unknown]] = await policy_engine.evaluate([pod("p")])
    assert unknown.message == "namespaceSelector needs Namespace 'apps', which is not known"


async def test_a_workload_is_also_judged_as_the_pod_it_creates(policy_engine: PolicyEngine) -> None:
    await policy_engine.add_template(template("K8sRequiredLabels", REQUIRED_LABELS_V0))
    pods = {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}
    policy_engine.add_constraint(constraint("K8sRequiredLabels", "pods", parameters={"labels": ["app"]}, match=pods))
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps", "labels": {}},
        "spec": {"template": {"metadata": {"labels": {}}, "spec": {"containers": [{"name": "c"}]}}},
    }
    [found] = await policy_engine.evaluate([deployment])
    assert [(v.message, v.expansion) for v in found] == [
        ('[Implied by expand-workloads] you must provide labels: {"app"}', "expand-workloads")
    ]
    # A constraint limited to original objects leaves generated pods alone; a template's action overrides.
    policy_engine.clear_constraints()
    originals = pods | {"source": "Original"}
    policy_engine.add_constraint(
        constraint("K8sRequiredLabels", "orig", parameters={"labels": ["app"]}, match=originals)
    )
    assert await policy_engine.evaluate([deployment]) == [[]]
    policy_engine.clear_constraints()
    policy_engine.add_constraint(constraint("K8sRequiredLabels", "pods", parameters={"labels": ["app"]}, match=pods))
    policy_engine.add_expansion(
        ExpansionTemplate.from_manifest(
            {
                "apiVersion": "expansion.gatekeeper.sh/v1alpha1",
                "kind": "ExpansionTemplate",
                "metadata": {"name": "expand-workloads"},
                "spec": {
                    "applyTo": [{"groups": ["apps"], "kinds": ["Deployment"], "versions": ["v1"]}],
                    "templateSource": "spec.template",
                    "generatedGVK": {"kind": "Pod", "group": "", "version": "v1"},
                    "enforcementAction": "warn",
                },
            }
        )
    )
    [[warned]] = await policy_engine.evaluate([deployment])
    assert warned.enforcement_action is EnforcementAction.WARN


async def test_opa_killed_is_restarted_with_policies_and_data_before_it_is_ready(
    managed_opa: tuple[ManagedOpa, PolicyEngine],
) -> None:
    opa, engine = managed_opa
    await engine.add_template(template("K8sRequiredLabels", REQUIRED_LABELS_V0))
    engine.add_constraint(constraint("K8sRequiredLabels", "owner", parameters={"labels": ["owner"]}))
    await engine.set_inventory([pod("kept")])
    stop = asyncio.Event()
    supervisor = asyncio.create_task(opa.supervise(stop))
    first = opa.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await eventually(lambda: opa.ready and opa.pid != first, timeout=15, what="OPA restarted and ready")
    assert opa.restarts == 1
    assert await messages(engine, pod("bare")) == [['you must provide labels: {"owner"}']]
    assert await engine.client.query("x := data.inventory.namespace.apps.v1.Pod.kept.metadata.name", {}) == [
        {"x": "kept"}
    ]
    stop.set()
    await supervisor


async def test_a_hung_opa_is_killed_and_started_again(managed_opa: tuple[ManagedOpa, PolicyEngine]) -> None:
    opa, engine = managed_opa
    await engine.add_template(template("K8sRequiredLabels", REQUIRED_LABELS_V0))
    engine.add_constraint(constraint("K8sRequiredLabels", "owner", parameters={"labels": ["owner"]}))
    stop = asyncio.Event()
    supervisor = asyncio.create_task(opa.supervise(stop))
    first = opa.pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)  # alive, answering nothing
    await eventually(lambda: opa.ready and opa.pid != first, timeout=15, what="the hung OPA replaced")
    assert await messages(engine, pod("bare")) == [['you must provide labels: {"owner"}']]
    stop.set()
    await supervisor
