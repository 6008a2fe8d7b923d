"""The error-budget policy: the freeze state as the budget transitions tell it, the verdict on WebApp changes (a
deploy refused saying why, until when and how to override; a hotfix overriding it and logged; a rollback to an image
the WebApp's ReplicaSets ran allowed; scaling left alone), and the gate process following evt.slo against the real
control plane, at admission and on the bus, across a restart."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from gate_cluster import ClusterGate, cluster_gate, gate_crds, stored_events  # noqa: F401  (fixtures)
from gate_webhook import GateWebhook, admission_review

from ballast.bus import Bus
from ballast.events import new_event
from ballast.events.contracts.policy import (
    POLICY_CHECK,
    Decision,
    EnforcementAction,
    PolicyCheckRequest,
    PolicyCheckResponse,
    PolicyDecision,
)
from ballast.events.contracts.slo import (
    BudgetExhausted,
    BudgetRecovered,
    SloEvent,
    SloRef,
    slo_event_type,
    slo_subject,
)
from ballast.kube.rest import send_json
from ballast.policy_gate.freeze import HOTFIX_ANNOTATION, SERVICE_LABEL, FreezeBook, judge_webapp
from ballast.testing import eventually

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
IMAGE = "registry.example.com/shop/web"


def exhausted(namespace: str, *, at: datetime = NOW, service: str = "web", freeze: bool = True) -> BudgetExhausted:
    return BudgetExhausted(
        cluster="c",
        slo=SloRef(namespace=namespace, name="web-availability", service=service),
        objective=99.9,
        period=timedelta(days=30),
        budget_remaining=0.02,
        threshold=0.05,
        freeze_deploys=freeze,
        at=at,
    )


def recovered(namespace: str, *, at: datetime) -> BudgetRecovered:
    return BudgetRecovered(
        cluster="c",
        slo=SloRef(namespace=namespace, name="web-availability", service="web"),
        objective=99.9,
        period=timedelta(days=30),
        budget_remaining=0.2,
        threshold=0.05,
        freeze_deploys=True,
        at=at,
    )


def webapp(
    namespace: str, image: str, *, replicas: int = 1, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "platform.example.com/v1",
        "kind": "WebApp",
        "metadata": {"name": "web", "namespace": namespace, "annotations": annotations or {}},
        "spec": {"image": image, "replicas": replicas},
    }


def ran(*images: str) -> Callable[[str, str], Any]:
    async def previous(namespace: str, name: str) -> set[str]:
        return set(images)

    return previous


# --- the state and the verdict ---------------------------------------------------------------------------------------


def test_transitions_apply_in_the_order_of_their_time_and_only_freezing_policies_freeze() -> None:
    book = FreezeBook()
    book.apply(exhausted("shop"))
    assert [f.slo.name for f in book.for_webapp("shop", "web", {})] == ["web-availability"]
    assert book.for_webapp("shop", "api", {}) == []
    assert book.for_webapp("shop", "api", {SERVICE_LABEL: "web"}), "a WebApp labelled with the service is behind it"
    assert book.for_webapp("other", "web", {}) == [], "an SLO covers its own namespace"
    book.apply(recovered("shop", at=NOW - timedelta(minutes=5)))
    assert book.freezes, "a recovery older than the exhaustion known changes nothing (replayed, redelivered)"
    book.apply(recovered("shop", at=NOW + timedelta(minutes=5)))
    assert book.freezes == []
    book.apply(exhausted("shop", at=NOW + timedelta(hours=1), freeze=False))
    assert book.freezes == [], "an SLO whose policy does not freeze deploys freezes nothing"


async def test_a_deploy_is_refused_saying_why_until_when_and_how_to_override() -> None:
    book = FreezeBook()
    book.apply(exhausted("shop"))
    verdict = await judge_webapp(book, webapp("shop", f"{IMAGE}:2"), webapp("shop", f"{IMAGE}:1"), ran(f"{IMAGE}:1"))
    (violation,) = verdict.violations
    assert violation.enforcement_action is EnforcementAction.DENY
    assert violation.constraint.key == "ErrorBudgetFreeze/shop/web-availability"
    message = violation.message
    since = "since 2026-12-01T12:00:00+00:00"
    assert f"error budget of SLO shop/web-availability (service web) is exhausted {since}" in message
    assert "2.0% left" in message
    assert "until the budget recovers" in message
    assert f"{HOTFIX_ANNOTATION}=<reason>" in message
    assert "rollback" in message
    assert verdict.override_reason is None

    created = await judge_webapp(book, webapp("shop", f"{IMAGE}:2"), None, ran())
    assert [v.enforcement_action for v in created.violations] == [EnforcementAction.DENY], "a new WebApp is a deploy"


async def test_a_hotfix_overrides_the_freeze_with_its_reason() -> None:
    book = FreezeBook()
    book.apply(exhausted("shop"))
    hotfix = webapp("shop", f"{IMAGE}:2", annotations={HOTFIX_ANNOTATION: "INC-42: fix the crash loop"})
    verdict = await judge_webapp(book, hotfix, webapp("shop", f"{IMAGE}:1"), ran())
    assert verdict.override_reason == "INC-42: fix the crash loop"
    assert [v.constraint.kind for v in verdict.violations] == ["ErrorBudgetFreeze"], "the freeze it overrode is kept"
    blank = webapp("shop", f"{IMAGE}:2", annotations={HOTFIX_ANNOTATION: "  "})
    assert (await judge_webapp(book, blank, webapp("shop", f"{IMAGE}:1"), ran())).override_reason is None


async def test_a_rollback_to_an_image_it_ran_and_scaling_stay_allowed() -> None:
    book = FreezeBook()
    book.apply(exhausted("shop"))
    now_running = webapp("shop", f"{IMAGE}:2")
    rollback = await judge_webapp(book, webapp("shop", f"{IMAGE}:1"), now_running, ran(f"{IMAGE}:1", f"{IMAGE}:2"))
    assert [v.enforcement_action for v in rollback.violations] == [EnforcementAction.WARN]
    assert "rollback of WebApp web to registry.example.com/shop/web:1" in rollback.violations[0].message

    never_ran = await judge_webapp(book, webapp("shop", f"{IMAGE}:0"), now_running, ran(f"{IMAGE}:1", f"{IMAGE}:2"))
    assert [v.enforcement_action for v in never_ran.violations] == [EnforcementAction.DENY]
    unknown = await judge_webapp(book, webapp("shop", f"{IMAGE}:1"), now_running, ran())
    assert [v.enforcement_action for v in unknown.violations] == [EnforcementAction.DENY]
    with_env = webapp("shop", f"{IMAGE}:1")
    with_env["spec"]["env"] = [{"name": "DEBUG", "value": "1"}]
    changed_env = await judge_webapp(book, with_env, now_running, ran(f"{IMAGE}:1"))
    assert [v.enforcement_action for v in changed_env.violations] == [EnforcementAction.DENY], "not only a rollback"

    scaled = await judge_webapp(book, webapp("shop", f"{IMAGE}:2", replicas=5), now_running, ran())
    assert scaled.violations == (), "scaling mitigates; it is not a deploy"


# --- the gate process ------------------------------------------------------------------------------------------------


async def tell(bus: Bus, cluster: str, transition: BudgetExhausted | BudgetRecovered) -> None:
    event = SloEvent.BUDGET_EXHAUSTED if isinstance(transition, BudgetExhausted) else SloEvent.BUDGET_RECOVERED
    payload = transition.model_copy(update={"cluster": cluster})
    envelope = new_event(
        slo_event_type(event),
        f"/clusters/{cluster}/slo-engine",
        payload,
        event_id=f"{payload.slo.namespace}/{payload.slo.name}:{event}:{payload.at.isoformat()}",
    )
    await bus.publisher.publish(slo_subject(cluster, payload.slo.namespace, event), envelope)


def update_review(new: dict[str, Any], old: dict[str, Any]) -> bytes:
    review = admission_review(new, operation="UPDATE", user="alice")
    review["request"]["oldObject"] = old
    return json.dumps(review).encode()


async def admit(gate: GateWebhook, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    status, text = await gate.post(update_review(new, old))
    assert status == 200, text
    response: dict[str, Any] = json.loads(text)["response"]
    return response


def rendered_deployment(namespace: str, image: str) -> dict[str, Any]:
    """The reconciler's Deployment of WebApp web, as it asks the gate about it."""
    labels = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [
                {"apiVersion": "platform.example.com/v1", "kind": "WebApp", "name": "web", "uid": "u"}
                | {"controller": True}
            ],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": image}]}},
        },
    }


async def bus_check(bus: Bus, cluster: str, namespace: str, image: str) -> PolicyCheckResponse:
    request = PolicyCheckRequest(
        cluster=cluster,
        namespace=namespace,
        manifests=[rendered_deployment(namespace, image)],
        requested_by="reconciler",
    )
    answer = await bus.request(POLICY_CHECK, request, timeout=10)
    assert isinstance(answer, PolicyCheckResponse)
    return answer


async def replica_set_images(kube_api: Any, namespace: str) -> set[str]:
    body = await send_json(kube_api, "GET", f"/apis/apps/v1/namespaces/{namespace}/replicasets")
    return {c["image"] for rs in body["items"] for c in rs["spec"]["template"]["spec"]["containers"]}


@pytest.mark.cluster
async def test_the_gate_freezes_deploys_at_admission_and_on_the_bus_until_the_budget_recovers(
    bus: Bus,
    kube_api: Any,
    namespace: str,
    gate_crds: None,
    cluster_gate: ClusterGate,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"

    def start() -> GateWebhook:
        return cluster_gate(cluster)

    gate = start()
    await gate.process.wait_status("/readyz", 200, timeout=60)
    # What runs: the WebApp, and its Deployment having run :1 then :2 (two ReplicaSets, as kubectl rollout keeps).
    await send_json(
        kube_api, "POST", f"/apis/platform.example.com/v1/namespaces/{namespace}/webapps", body=webapp(namespace, "x")
    )
    deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    live = rendered_deployment(namespace, f"{IMAGE}:1")
    del live["metadata"]["ownerReferences"]
    await send_json(kube_api, "POST", deployments, body=live)
    await send_json(
        kube_api,
        "PATCH",
        f"{deployments}/web",
        headers={"Content-Type": "application/merge-patch+json"},
        body={"spec": {"template": {"spec": {"containers": [{"name": "app", "image": f"{IMAGE}:2"}]}}}},
    )

    async def both_ran() -> bool:
        return await replica_set_images(kube_api, namespace) == {f"{IMAGE}:1", f"{IMAGE}:2"}

    await eventually(both_ran, timeout=30, what="a ReplicaSet per image")

    running = webapp(namespace, f"{IMAGE}:2")
    assert (await admit(gate, webapp(namespace, f"{IMAGE}:3"), running))["allowed"], "no freeze yet"
    assert (await bus_check(bus, cluster, namespace, f"{IMAGE}:3")).allowed

    await tell(bus, cluster, exhausted(namespace, at=datetime.now(UTC)))

    async def frozen() -> dict[str, Any] | None:
        response = await admit(gate, webapp(namespace, f"{IMAGE}:3"), running)
        return None if response["allowed"] else response

    refused = await eventually(frozen, timeout=10, what="a deploy refused at admission")
    assert refused["status"]["code"] == 403
    message = refused["status"]["message"]
    assert message.startswith(f"[{namespace}/web-availability] the error budget of SLO {namespace}/web-availability")
    assert "until the budget recovers" in message
    assert HOTFIX_ANNOTATION in message

    scaled = await admit(gate, webapp(namespace, f"{IMAGE}:2", replicas=3), running)
    assert scaled["allowed"]
    assert "warnings" not in scaled
    rollback = await admit(gate, webapp(namespace, f"{IMAGE}:1"), running)
    assert rollback["allowed"], rollback
    assert "rollback of WebApp web" in rollback["warnings"][0]
    hotfix = webapp(namespace, f"{IMAGE}:3", annotations={HOTFIX_ANNOTATION: "INC-7 null pointer on checkout"})
    overridden = await admit(gate, hotfix, running)
    assert overridden["allowed"]
    assert "admitted as a hotfix (INC-7 null pointer on checkout)" in overridden["warnings"][0]

    # On the bus the reconciler's render is judged against the live Deployment: the same image is a resync.
    assert (await bus_check(bus, cluster, namespace, f"{IMAGE}:2")).allowed
    denied = await bus_check(bus, cluster, namespace, f"{IMAGE}:3")
    assert not denied.allowed
    (violation,) = denied.violations
    assert violation.policy == f"ErrorBudgetFreeze/{namespace}/web-availability"
    assert violation.object == "Deployment/web"
    assert "until the budget recovers" in violation.message
    assert (await bus_check(bus, cluster, namespace, f"{IMAGE}:1")).allowed, "a rollback"

    async def decisions() -> list[PolicyDecision] | None:
        found = [e.data for e in await stored_events(bus, f"evt.policy.{cluster}.{namespace}.>")]
        overrides = [d for d in found if isinstance(d, PolicyDecision) and d.override_reason]
        bus_denials = [
            d for d in found if isinstance(d, PolicyDecision) and d.decision is Decision.DENIED and d.source == "bus"
        ]
        return found if overrides and bus_denials else None

    logged = await eventually(decisions, timeout=10, what="the hotfix and the bus denial in the decision log")
    (override,) = [d for d in logged if d.override_reason]
    assert override.decision is Decision.ALLOWED
    assert override.override_reason == "INC-7 null pointer on checkout"
    assert override.requested_by == "alice"
    assert [c.kind for c in override.constraints] == ["ErrorBudgetFreeze"]

    # A restarted gate replays evt.slo before it answers: still frozen.
    await gate.process.stop()
    gate = start()
    await gate.process.wait_status("/readyz", 200, timeout=60)
    assert not (await admit(gate, webapp(namespace, f"{IMAGE}:3"), running))["allowed"]

    await tell(bus, cluster, recovered(namespace, at=datetime.now(UTC)))

    async def thawed() -> bool:
        return bool((await admit(gate, webapp(namespace, f"{IMAGE}:3"), copy.deepcopy(running)))["allowed"])

    await eventually(thawed, timeout=10, what="deploys allowed once the budget recovered")
    assert (await bus_check(bus, cluster, namespace, f"{IMAGE}:3")).allowed
