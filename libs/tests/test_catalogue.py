"""The catalogue is the single source of subjects, streams and types; the AsyncAPI document is generated from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ballast.events import asyncapi
from ballast.events.catalogue import CATALOGUE, REGISTRY, k8s_subject, platform_subject

ASYNCAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
TOKEN = re.compile(r"^[A-Za-z0-9_-]+$|^\{\w+\}$")


def test_committed_asyncapi_document_is_current() -> None:
    assert ASYNCAPI_PATH.read_text() == asyncapi.render(), (
        "docs/asyncapi.yaml is stale: run `python -m ballast.events.asyncapi > docs/asyncapi.yaml`"
    )


def test_asyncapi_document_is_3_0_and_references_resolve() -> None:
    document = yaml.safe_load(asyncapi.render())
    assert document["asyncapi"] == "3.0.0"
    text = asyncapi.render()
    for ref in set(re.findall(r"\$ref: '#/([^']+)'", text)):
        node = document
        for part in ref.split("/"):
            assert part in node, f"dangling $ref #/{ref}"
            node = node[part]
    assert len(document["components"]["messages"]) >= len(REGISTRY)


def test_every_event_type_is_versioned_and_lands_in_a_stream() -> None:
    for event_type in CATALOGUE.event_types:
        assert re.fullmatch(r"io\.[a-z0-9_.]+\.v\d+", event_type.ce_type), event_type.ce_type
        tokens = event_type.subject.split(".")
        assert all(TOKEN.match(t) for t in tokens), event_type.subject
        address = event_type.subject.format(cluster="prod", namespace="shop")
        assert CATALOGUE.stream_for(address).name in {"K8S_EVENTS", "PLATFORM_EVENTS"}


def test_subject_builders_follow_the_design() -> None:
    assert k8s_subject("prod", "shop", "Deployment", "updated") == "evt.k8s.prod.shop.Deployment.updated"
    assert k8s_subject("prod", None, "Tenant", "created") == "evt.k8s.prod._.Tenant.created"
    assert platform_subject("reconcile", "prod", "shop", "degraded") == "evt.reconcile.prod.shop.degraded"
    assert CATALOGUE.stream_for("cmd.chaos.run").name == "COMMANDS"
    assert CATALOGUE.stream_for("dlq.reconciler-workloads").name == "DEAD_LETTERS"
    with pytest.raises(LookupError):
        CATALOGUE.stream_for("shadow.run1.evt.k8s.prod.shop.Pod.created")


def test_streams_do_not_overlap() -> None:
    probes = ["evt.k8s.a.b.Pod.created", "evt.reconcile.a.b.reconciled", "evt.slo.a.b.c.breached", "cmd.x.y", "dlq.x"]
    for subject in probes:
        owners = [s.name for s in CATALOGUE.streams if any(_covers(p, subject) for p in s.subjects)]
        assert len(owners) == 1, (subject, owners)


def _covers(pattern: str, subject: str) -> bool:
    return pattern.endswith(".>") and subject.startswith(pattern[:-1])
