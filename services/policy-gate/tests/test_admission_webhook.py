"""The admission webhook of the gate process over real HTTPS: AdmissionReview v1 in, the same verdicts as the bus
check out (deny refuses with the constraint's message, warn warns, dryrun only records), each in the decision log
with source admission; malformed reviews get a 400 saying what is wrong, oversized ones a 413."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from gate_webhook import GateWebhook, admission_review, start_gate
from policies import deployment, write_policies

from ballast.bus import Bus
from ballast.events.contracts.policy import Decision, DecisionSource, Operation, PolicyDecision
from ballast.runtime.config import DEFAULT_MAX_BODY
from ballast.testing import NatsServer, ServiceProcess, eventually


@pytest.fixture
async def gate(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    opa_binary: Path,
    tmp_path: Path,
    unique: Callable[[str], str],
) -> GateWebhook:
    webhook = start_gate(
        services,
        tmp_path / "tls",
        nats_url=nats_server.url,
        BALLAST_CLUSTER=unique("gate"),
        BALLAST_OPA_BINARY=str(opa_binary),
        BALLAST_POLICY_DIR=str(write_policies(tmp_path / "policies")),
    )
    await webhook.process.wait_status("/readyz", 200)
    return webhook


async def answer(gate: GateWebhook, review: dict[str, object]) -> dict[str, object]:
    status, body = await gate.post(json.dumps(review).encode())
    assert status == 200, body
    answered = json.loads(body)
    assert answered["apiVersion"] == "admission.k8s.io/v1"
    assert answered["kind"] == "AdmissionReview"
    response: dict[str, object] = answered["response"]
    assert response["uid"] == review["request"]["uid"]  # type: ignore[index]
    return response


async def test_reviews_are_denied_warned_or_admitted_as_the_bus_check_judges_them(gate: GateWebhook, bus: Bus) -> None:
    bare = admission_review(deployment("bare", {}))
    denied = await answer(gate, bare)
    assert denied["allowed"] is False
    assert denied["status"] == {
        "code": 403,
        "reason": "Forbidden",
        "message": '[must-have-owner] you must provide labels: {"owner"}',
    }
    assert denied["warnings"] == ['[should-have-team] you must provide labels: {"team"}']

    warned = await answer(gate, admission_review(deployment("teamless", {"owner": "me", "cost-center": "42"})))
    assert warned == {
        "uid": warned["uid"],
        "allowed": True,
        "warnings": ['[should-have-team] you must provide labels: {"team"}'],
    }

    trial = await answer(gate, admission_review(deployment("trial", {"owner": "me", "team": "shop"})))
    assert trial == {"uid": trial["uid"], "allowed": True}, "dryrun is recorded only"

    labelled = {"owner": "me", "team": "shop", "cost-center": "42"}
    root = await answer(gate, admission_review(deployment("root", labelled, privileged=True)))
    assert root["allowed"] is False, "a Deployment is judged as the pod it creates"
    assert root["status"]["message"] == "[no-privileged] [Implied by expand-workloads] privileged container web"  # type: ignore[index]

    cluster = gate.process.env["BALLAST_CLUSTER"]

    async def decisions() -> dict[str, PolicyDecision] | None:
        found: dict[str, PolicyDecision] = {}
        async with bus.read("PLATFORM_EVENTS", subjects=[f"evt.policy.{cluster}.>"], until="last") as events:
            async for stored in events:
                assert stored.event is not None, stored.error
                assert isinstance(stored.event.data, PolicyDecision)
                found[stored.event.data.object.name] = stored.event.data
        return found if len(found) == 4 else None

    logged = await eventually(decisions, timeout=10, what="four admission decisions on evt.policy")
    assert {name: d.decision for name, d in logged.items()} == {
        "bare": Decision.DENIED,
        "teamless": Decision.WARNED,
        "trial": Decision.ALLOWED,
        "root": Decision.DENIED,
    }
    first = logged["bare"]
    assert (first.source, first.request_uid, first.operation) == (
        DecisionSource.ADMISSION,
        bare["request"]["uid"],
        Operation.CREATE,
    )
    assert first.requested_by == "alice"
    assert first.object.namespace == "shop"
    assert [c.name for c in logged["trial"].constraints] == ["cost-center-trial"]


async def test_malformed_reviews_are_refused_saying_why(gate: GateWebhook) -> None:
    good = admission_review(deployment("bare", {}))
    beta = good | {"apiVersion": "admission.k8s.io/v1beta1"}
    no_uid = good | {"request": {k: v for k, v in good["request"].items() if k != "uid"}}
    stray = good | {"request": good["request"] | {"colour": "blue"}}
    nothing = good | {"request": good["request"] | {"object": None}}
    for body, says in [
        (b"{not json", "the body is not JSON"),
        (json.dumps(beta).encode(), "apiVersion: Input should be 'admission.k8s.io/v1'"),
        (json.dumps(no_uid).encode(), "request.uid: Field required"),
        (json.dumps(stray).encode(), "the AdmissionRequest has unknown fields: colour"),
        (json.dumps(nothing).encode(), 'the AdmissionRequest has no "object" or "oldObject" to review'),
    ]:
        status, text = await gate.post(body)
        assert status == 400, text
        assert text.startswith("malformed AdmissionReview: "), text
        assert says in text, text


async def test_a_review_over_the_size_limit_is_refused_unread(gate: GateWebhook) -> None:
    status, _ = await gate.post(b" " * (DEFAULT_MAX_BODY + 1))
    assert status == 413
