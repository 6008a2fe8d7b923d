"""Which pods a fault may hit: the selection mode asks, the blast radius caps, the namespace allow-list decides
whether anything may be hit at all. Pure functions: the runner feeds them what it listed and a random source.

The blast radius counts what is down already: pods not Ready (a fault of an earlier interval not yet healed, or a
failure of their own) use up the allowance before a new fault does, so a radius of 34 % never has 2 of 3 pods down.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ballast.chaos_runner.api import CHAOS_NAMESPACE_LABEL, BlastRadius, Selection, SelectionMode

# Never disrupted, whatever their labels say: the cluster's own machinery.
PROTECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


@dataclass(frozen=True)
class Candidate:
    """A pod the target names."""

    name: str
    ready: bool
    node: str | None = None


@dataclass(frozen=True)
class Plan:
    """The pods one injection hits, or why it hits none (`refused`)."""

    chosen: tuple[Candidate, ...]
    refused: str | None = None


def namespace_refusal(namespace: str, labels: Mapping[str, str], own_namespace: str | None) -> str | None:
    """Why chaos may not touch `namespace`, or None when it has opted in."""
    if namespace in PROTECTED_NAMESPACES or namespace == own_namespace:
        return f"namespace {namespace} is protected from chaos"
    if labels.get(CHAOS_NAMESPACE_LABEL) != "true":
        return f"namespace {namespace} has not opted in to chaos (label {CHAOS_NAMESPACE_LABEL}=true)"
    return None


def allowed_down(total: int, radius: BlastRadius) -> int:
    """Pods that may be down at once: the percent rounded down (34 % of 3 is 1), and at most max_pods."""
    allowed = total * radius.max_percent // 100
    return min(allowed, radius.max_pods) if radius.max_pods is not None else allowed


def wanted(total: int, selection: Selection, rng: random.Random) -> int:
    """How many pods the selection mode asks for, before the blast radius."""
    value = selection.value or 0
    match selection.mode:
        case SelectionMode.ONE:
            count = 1
        case SelectionMode.ALL:
            count = total
        case SelectionMode.FIXED:
            count = value
        case SelectionMode.FIXED_PERCENT:
            count = total * value // 100
        case SelectionMode.RANDOM_MAX_PERCENT:
            count = rng.randint(0, total * value // 100)
    return min(count, total)


def plan(candidates: Sequence[Candidate], selection: Selection, radius: BlastRadius, rng: random.Random) -> Plan:
    """The pods to hit now: ready ones (hitting a pod already down proves nothing), as many as the mode asks, no
    more than the blast radius leaves once the pods already down are counted."""
    if not candidates:
        return Plan((), "the target has no pods")
    total = len(candidates)
    ready = [c for c in candidates if c.ready]
    room = allowed_down(total, radius) - (total - len(ready))
    if room <= 0:
        down = total - len(ready)
        return Plan(
            (),
            f"blast radius: {radius.max_percent} % of {total} pods"
            + (f" (at most {radius.max_pods})" if radius.max_pods is not None else "")
            + f" allows {allowed_down(total, radius)} down, {down} already are",
        )
    count = min(wanted(total, selection, rng), room, len(ready))
    if count == 0:
        return Plan((), f"selection {selection.mode} picked no pod of {total}")
    return Plan(tuple(sorted(rng.sample(ready, count), key=lambda c: c.name)))


def node_plan(
    candidates: Sequence[Candidate], selection: Selection, radius: BlastRadius, rng: random.Random
) -> tuple[tuple[str, ...], Plan]:
    """The nodes a node fault hits (those the chosen pods run on) and the target pods it takes down: every target pod
    on a node counts, so nodes are taken only while the pods on them fit in the blast radius."""
    pods = plan(candidates, selection, radius, rng)
    if pods.refused:
        return (), pods
    room = allowed_down(len(candidates), radius) - sum(1 for c in candidates if not c.ready)
    nodes: list[str] = []
    hit: list[Candidate] = []
    for node in dict.fromkeys(c.node for c in pods.chosen if c.node):
        on_node = [c for c in candidates if c.node == node and c.ready]
        if len(hit) + len(on_node) > room:
            continue
        nodes.append(node)
        hit += on_node
    if not nodes:
        return (), Plan(
            (), f"blast radius: every node of the chosen pods runs more than the {room} pod(s) allowed down"
        )
    return tuple(nodes), Plan(tuple(sorted(hit, key=lambda c: c.name)))
