"""Target selection under the blast radius, and the namespace allow-list: pure functions, no I/O."""

from __future__ import annotations

import random

import pytest

from ballast.chaos_runner.api import CHAOS_NAMESPACE_LABEL, BlastRadius, Selection, SelectionMode
from ballast.chaos_runner.selection import (
    Candidate,
    allowed_down,
    namespace_refusal,
    node_plan,
    plan,
    wanted,
)


def pods(count: int, *, down: int = 0, nodes: int = 1) -> list[Candidate]:
    return [Candidate(f"web-{i}", ready=i >= down, node=f"node-{i % nodes}") for i in range(count)]


@pytest.mark.parametrize(
    ("total", "radius", "allowed"),
    [
        (3, BlastRadius(max_percent=34), 1),  # 1.02 rounds down: never 2 of 3
        (3, BlastRadius(max_percent=66), 1),
        (3, BlastRadius(max_percent=67), 2),
        (3, BlastRadius(max_percent=100), 3),
        (3, BlastRadius(max_percent=33), 0),
        (10, BlastRadius(max_percent=50, max_pods=2), 2),
        (10, BlastRadius(max_percent=10, max_pods=5), 1),
        (0, BlastRadius(max_percent=100), 0),
    ],
)
def test_the_blast_radius_rounds_down_and_caps(total: int, radius: BlastRadius, allowed: int) -> None:
    assert allowed_down(total, radius) == allowed


@pytest.mark.parametrize(
    ("selection", "total", "count"),
    [
        (Selection(), 5, 1),
        (Selection(mode=SelectionMode.ALL), 5, 5),
        (Selection(mode=SelectionMode.FIXED, value=2), 5, 2),
        (Selection(mode=SelectionMode.FIXED, value=9), 5, 5),
        (Selection(mode=SelectionMode.FIXED_PERCENT, value=40), 5, 2),
        (Selection(mode=SelectionMode.FIXED_PERCENT, value=10), 5, 0),
    ],
)
def test_each_mode_asks_for_its_count(selection: Selection, total: int, count: int) -> None:
    assert wanted(total, selection, random.Random(1)) == count


def test_random_max_percent_never_asks_for_more_than_the_percent() -> None:
    rng = random.Random(7)
    counts = {wanted(10, Selection(mode=SelectionMode.RANDOM_MAX_PERCENT, value=30), rng) for _ in range(200)}
    assert counts == {0, 1, 2, 3}


@pytest.mark.parametrize("mode", [SelectionMode.ALL, SelectionMode.FIXED, SelectionMode.FIXED_PERCENT])
def test_34_percent_of_3_never_takes_2_whatever_the_mode_asks(mode: SelectionMode) -> None:
    selection = Selection(
        mode=mode, value=None if mode is SelectionMode.ALL else (3 if mode is SelectionMode.FIXED else 100)
    )
    radius = BlastRadius(max_percent=34)
    for seed in range(50):
        chosen = plan(pods(3), selection, radius, random.Random(seed))
        assert chosen.refused is None
        assert len(chosen.chosen) == 1


def test_pods_already_down_use_up_the_radius() -> None:
    refused = plan(pods(3, down=1), Selection(), BlastRadius(max_percent=34), random.Random(0))
    assert refused.chosen == ()
    assert refused.refused is not None
    assert "1 already are" in refused.refused
    # 67 % of 3 allows 2 down: one is, so one more.
    (one,) = plan(
        pods(3, down=1), Selection(mode=SelectionMode.ALL), BlastRadius(max_percent=67), random.Random(0)
    ).chosen
    assert one.ready


def test_a_radius_too_small_for_one_pod_refuses() -> None:
    refused = plan(pods(3), Selection(), BlastRadius(max_percent=20), random.Random(0))
    assert refused.chosen == ()
    assert refused.refused == "blast radius: 20 % of 3 pods allows 0 down, 0 already are"


def test_no_pods_no_plan() -> None:
    assert plan([], Selection(), BlastRadius(), random.Random(0)).refused == "the target has no pods"


def test_only_ready_pods_are_hit() -> None:
    chosen = plan(pods(10, down=3), Selection(mode=SelectionMode.ALL), BlastRadius(max_percent=100), random.Random(0))
    assert [c.name for c in chosen.chosen] == [f"web-{i}" for i in range(3, 10)]


def test_a_node_fault_counts_every_target_pod_on_the_node() -> None:
    # 6 pods on 3 nodes (2 each): 34 % of 6 allows 2 down, so one node at most.
    nodes, hit = node_plan(
        pods(6, nodes=3), Selection(mode=SelectionMode.ALL), BlastRadius(max_percent=34), random.Random(3)
    )
    assert len(nodes) == 1
    assert len(hit.chosen) == 2
    assert {c.node for c in hit.chosen} == set(nodes)
    # 16 % of 6 allows 1 down: no node runs only one target pod, so none is taken.
    nodes, refused = node_plan(pods(6, nodes=3), Selection(), BlastRadius(max_percent=17), random.Random(3))
    assert nodes == ()
    assert refused.refused is not None


@pytest.mark.parametrize(
    ("namespace", "labels", "refused"),
    [
        ("shop", {CHAOS_NAMESPACE_LABEL: "true"}, None),
        ("shop", {}, "namespace shop has not opted in to chaos (label chaos.platform.example.com/enabled=true)"),
        ("shop", {CHAOS_NAMESPACE_LABEL: "yes"}, "namespace shop has not opted in"),
        ("kube-system", {CHAOS_NAMESPACE_LABEL: "true"}, "namespace kube-system is protected from chaos"),
        ("ballast", {CHAOS_NAMESPACE_LABEL: "true"}, "namespace ballast is protected from chaos"),
    ],
)
def test_only_namespaces_labelled_for_chaos_are_targets(
    namespace: str, labels: dict[str, str], refused: str | None
) -> None:
    found = namespace_refusal(namespace, labels, own_namespace="ballast")
    if refused is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(refused)
