"""A Gatekeeper Config read from the cluster (`ClusterConfig`, its watch events handed in directly): its exclusions and
sync kinds go into force as it changes, a Config the gate cannot read is refused naming the entry and leaves what
was in force, its deletion takes everything away; and the setting's `namespace/name` form."""

from __future__ import annotations

from typing import Any, cast

import pytest
from policies import gatekeeper_config

from ballast.policy.exclusions import Exclusions
from ballast.policy_gate.gatekeeper_config import ClusterConfig, config_location

INGRESS = {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"}


def test_a_config_goes_into_force_a_bad_one_leaves_the_last_and_a_deletion_clears_it() -> None:
    told: list[tuple[Exclusions, list[tuple[str, str]]]] = []
    config = ClusterConfig(cast(Any, None), "gatekeeper-system", "config", lambda e, k: told.append((e, k)))
    good = gatekeeper_config({"excludedNamespaces": ["kube-*"], "processes": ["webhook"]}, sync=[INGRESS])
    config._on_event("ADDED", good, None)
    ((exclusions, kinds),) = told
    assert exclusions.excludes("webhook", {"metadata": {"namespace": "kube-system"}})
    assert not exclusions.excludes("audit", {"metadata": {"namespace": "kube-system"}})
    assert kinds == [("networking.k8s.io/v1", "Ingress")]
    assert config.problem is None

    config._on_event("MODIFIED", good, good)  # the same again (a resync): nothing to tell
    assert len(told) == 1

    bad = gatekeeper_config({"excludedNamespaces": ["shop"], "processes": ["audits"]})
    config._on_event("MODIFIED", bad, good)
    assert len(told) == 1  # what was in force stays
    assert config.in_force == told[0]
    assert config.problem is not None
    assert "gatekeeper-system/config" in config.problem
    assert "spec.match[0].processes: ['audits']" in config.problem

    config._on_event("DELETED", bad, None)
    assert told[-1] == (Exclusions(), [])
    assert config.problem is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("gatekeeper-system/config", ("gatekeeper-system", "config")), ("", None)],
)
def test_the_config_is_named_by_namespace_and_name(value: str, expected: tuple[str, str] | None) -> None:
    assert config_location(value) == expected


@pytest.mark.parametrize("value", ["config", "/config", "gatekeeper-system/", "a/b/c"])
def test_a_config_named_otherwise_is_refused_saying_the_form(value: str) -> None:
    with pytest.raises(ValueError, match="namespace/name"):
        config_location(value)
