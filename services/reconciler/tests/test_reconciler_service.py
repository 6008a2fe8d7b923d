"""The reconciler as it runs: its own process, real NATS, real control plane, the policy gate asked over the bus,
and every outcome published once as a decodable CloudEvent."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import BaseModel
from reconciler_fixtures import IMAGE, condition, platform_api  # noqa: F401

from ballast.bus import Bus
from ballast.events import decode
from ballast.events.catalogue import REGISTRY
from ballast.events.contracts.policy import POLICY_CHECK, PolicyCheckRequest, PolicyCheckResponse, PolicyViolation
from ballast.kube.apply import get
from ballast.kube.resource import DEPLOYMENT
from ballast.testing import ServiceProcess, eventually

pytestmark = pytest.mark.cluster


async def deny_foreign_images(request: BaseModel) -> BaseModel:
    assert isinstance(request, PolicyCheckRequest)
    violations = [
        PolicyViolation(
            policy="allowed-repos",
            object=f"Deployment/{m['metadata']['name']}",
            message=f"image {c['image']} is not from registry.example.com",
        )
        for m in request.manifests
        if m["kind"] == "Deployment"
        for c in m["spec"]["template"]["spec"]["containers"]
        if not c["image"].startswith("registry.example.com/")
    ]
    return PolicyCheckResponse(allowed=not violations, violations=violations)


async def events(bus: Bus, stream: str, subjects: str) -> list[Any]:
    sub = await bus.js.pull_subscribe(
        subjects, stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE)
    )
    found: list[Any] = []
    # "Nothing more": nats-py raises its own TimeoutError or, from some paths, the builtin one (its base class).
    with contextlib.suppress(TimeoutError):
        while True:
            found.extend(await sub.fetch(100, timeout=0.5))
    await sub.unsubscribe()
    return [decode(m.headers, m.data, REGISTRY) for m in found]


async def test_reconciles_asks_the_policy_gate_and_publishes_each_outcome_once(
    bus: Bus,
    services: Callable[..., ServiceProcess],
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    platform_api: None,
) -> None:
    from kubernetes_asyncio import client

    # The reconciler watches every namespace, also those earlier tests are tearing down: subjects are filtered by
    # this test's namespace.
    cluster = f"c{uuid.uuid4().hex[:8]}"
    await bus.ensure_streams()
    await bus.serve(POLICY_CHECK, deny_foreign_images)
    reconciler = services(
        "ballast.reconciler",
        nats_url=bus.url,
        KUBECONFIG=str(kubeconfig_path),
        BALLAST_CLUSTER=cluster,
        BALLAST_POLICY_CHECK="true",
        BALLAST_LEASE_NAMESPACE=namespace,
    )
    await reconciler.wait_status("/readyz", 200)
    custom = client.CustomObjectsApi(kube_api)
    for name, image in [("good", IMAGE), ("foreign", "docker.io/library/nginx:latest")]:
        body = {
            "apiVersion": "platform.example.com/v1",
            "kind": "WebApp",
            "metadata": {"name": name},
            "spec": {"image": image},
        }
        await custom.create_namespaced_custom_object("platform.example.com", "v1", namespace, "webapps", body)

    async def settled() -> bool:
        good = await condition(kube_api, namespace, "good", "Ready")
        foreign = await condition(kube_api, namespace, "foreign", "Degraded")
        return good == ("True", "AllReplicasReady") and foreign == ("True", "PolicyDenied")

    await eventually(settled, timeout=60, what="good Ready, foreign PolicyDenied")
    # The controller's own account, under controller-runtime's metric names.
    for line in (
        'controller_runtime_reconcile_total{controller="webapp",result="success"}',
        'workqueue_adds_total{name="webapp"}',
        'workqueue_depth{name="webapp"}',
        'controller_runtime_reconcile_time_seconds_count{controller="webapp"}',
    ):
        await reconciler.wait_metric(line)
    assert await get(kube_api, DEPLOYMENT, namespace, "foreign") is None, "a denied WebApp gets nothing"

    async def outcomes() -> dict[str, list[Any]] | None:
        found: dict[str, list[Any]] = {}
        for event in await events(bus, "PLATFORM_EVENTS", f"evt.reconcile.{cluster}.{namespace}.>"):
            found.setdefault(event.type, []).append(event)
        wanted = {"io.ballast.webapp.reconciled.v1", "io.ballast.webapp.policy_denied.v1"}
        return found if wanted <= set(found) else None

    published = await eventually(outcomes, timeout=20, what="reconcile outcomes on the bus")
    (reconciled,) = published["io.ballast.webapp.reconciled.v1"]
    assert reconciled.subject == f"{namespace}/good"
    denied = published["io.ballast.webapp.policy_denied.v1"]
    assert {e.id for e in denied} == {denied[0].id}, "the same denial must not be published twice"
    assert "allowed-repos" in denied[0].data.message

    observed = await events(bus, "K8S_EVENTS", f"evt.k8s.{cluster}.{namespace}.>")
    kinds = {(e.type, e.subject) for e in observed}
    assert ("io.k8s.webapp.created.v1", f"{namespace}/good") in kinds
    assert ("io.k8s.deployment.created.v1", f"{namespace}/good") in kinds
    assert any(t == "io.k8s.pod.created.v1" for t, _ in kinds)
    assert len({e.id for e in observed}) == len(observed), "observed facts are stored once each"
    # An update is told only when a fact it carries moved: the controllers' own status bookkeeping (a Deployment's
    # observedGeneration, its conditions) is not news.
    told: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for event in observed:
        if hasattr(event.data, "resource_version") and hasattr(event.data, "object"):
            facts = event.data.model_dump(exclude={"resource_version"})
            told.setdefault(event.data.object.uid, []).append((event.type.split(".")[-2], facts))
    repeats = [
        (uid, facts) for uid, seq in told.items() for (_, before), (verb, facts) in itertools.pairwise(seq)
        if verb == "updated" and facts == before
    ]  # fmt: skip
    assert not repeats, f"updates that told nothing new: {repeats[:3]}"
    assert any(verb == "updated" for seq in told.values() for verb, _ in seq), "real changes are still told"

    await custom.delete_namespaced_custom_object("platform.example.com", "v1", namespace, "webapps", "good")

    async def deletion_reported() -> list[Any] | None:
        found = [e for e in await events(bus, "PLATFORM_EVENTS", f"evt.reconcile.{cluster}.{namespace}.>")
                 if e.type == "io.ballast.webapp.deleted.v1"]  # fmt: skip
        return found or None

    (deleted,) = await eventually(deletion_reported, timeout=60, what="the deletion on the bus")
    assert deleted.subject == f"{namespace}/good"
    assert await get(kube_api, DEPLOYMENT, namespace, "good") is None, "reported before the GC finished"
    await reconciler.stop(timeout=30)
