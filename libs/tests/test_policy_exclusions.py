"""Gatekeeper `Config.spec.match`: namespaces left out per process, read from the policy files with errors that name
the entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ballast.policy.documents import DocumentError
from ballast.policy.exclusions import Exclusions, config_exclusions, object_namespace
from ballast.policy.policyset import read_policies


def config(*match: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "config.gatekeeper.sh/v1alpha1",
        "kind": "Config",
        "metadata": {"name": "config", "namespace": "gatekeeper-system"},
        "spec": {"match": list(match)},
    }


def pod(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace}}


def test_names_prefixes_and_suffixes_are_left_out_of_the_processes_named() -> None:
    exclusions = Exclusions.of(
        config_exclusions(
            config(
                {"excludedNamespaces": ["kube-*", "*-system", "legacy"], "processes": ["audit", "webhook"]},
                {"excludedNamespaces": ["scratch"], "processes": ["*"]},
            )
        )
    )
    for namespace in ("kube-public", "gatekeeper-system", "legacy"):
        assert exclusions.excludes("webhook", pod(namespace))
        assert exclusions.excludes("audit", pod(namespace))
        assert not exclusions.excludes("sync", pod(namespace))  # not a process that entry names
    for namespace in ("legacy-2", "kube", "shop", "system"):
        assert not exclusions.excludes("webhook", pod(namespace))
    assert all(exclusions.excludes(process, pod("scratch")) for process in ("audit", "webhook", "sync"))


def test_a_namespace_object_is_in_the_namespace_it_is_and_the_request_names_one_the_object_does_not() -> None:
    exclusions = Exclusions.of(config_exclusions(config({"excludedNamespaces": ["kube-*"], "processes": ["*"]})))
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-node-lease"}}
    assert object_namespace(namespace) == "kube-node-lease"
    assert exclusions.excludes("webhook", namespace)
    unnamed = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert exclusions.excludes("webhook", unnamed, "kube-system")
    assert not exclusions.excludes("webhook", unnamed, "shop")
    assert not exclusions.excludes("webhook", unnamed)  # cluster-scoped: in no namespace
    assert not Exclusions().excludes("webhook", pod("kube-system"))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"excludedNamespaces": ["kube-*"], "processes": ["audits"]}, r"spec.match\[0\].processes: \['audits'\]"),
        ({"excludedNamespaces": ["kube-*"], "processes": []}, r"spec.match\[0\].processes must name at least one"),
        ({"excludedNamespaces": ["ku*be"], "processes": ["*"]}, r"'ku\*be': a wildcard only at the start or the end"),
        ({"excludedNamespaces": ["*kube*"], "processes": ["*"]}, r"'\*kube\*': a wildcard only"),
        ({"excludedNamespaces": "kube-system", "processes": ["*"]}, r"excludedNamespaces must be a list"),
        ("kube-system", r"spec.match\[0\] must be a mapping"),
    ],
    ids=["unknown-process", "no-process", "wildcard-inside", "two-wildcards", "not-a-list", "not-a-mapping"],
)
def test_a_bad_match_entry_is_refused_naming_it(entry: Any, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        config_exclusions(config(entry))


def test_the_policy_files_configs_give_their_exclusions_and_a_bad_one_is_reported_with_its_file(tmp_path: Path) -> None:
    good = config({"excludedNamespaces": ["kube-*"], "processes": ["webhook"]})
    bad = config({"excludedNamespaces": ["kube-*"], "processes": ["nope"]})
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(good))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(bad))
    policies = read_policies([tmp_path])
    assert Exclusions.of(policies.exclusions).excludes("webhook", pod("kube-system"))
    (problem,) = policies.problems
    assert problem.startswith(f"{tmp_path / 'b.yaml'}: Config spec.match[0].processes: ['nope']")
