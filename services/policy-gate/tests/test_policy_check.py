"""`svc.policy.check` end to end: the gate process with the real OPA it runs, policies from files, a real nats-server;
verdicts with the constraints' messages and the decision log on evt.policy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from policies import deployment, write_policies

from ballast.bus import Bus, EndpointCallError
from ballast.events.contracts.policy import (
    POLICY_CHECK,
    Decision,
    EnforcementAction,
    PolicyCheckRequest,
    PolicyCheckResponse,
    PolicyDecision,
)
from ballast.testing import NatsServer, ServiceProcess, eventually


async def check(bus: Bus, cluster: str, *manifests: dict[str, object]) -> PolicyCheckResponse:
    request = PolicyCheckRequest(cluster=cluster, namespace="shop", manifests=list(manifests), requested_by="test")
    answer = await bus.request(POLICY_CHECK, request, timeout=10)
    assert isinstance(answer, PolicyCheckResponse)
    return answer


async def test_manifests_are_denied_warned_or_allowed_by_the_policies_in_the_directory(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    bus: Bus,
    opa_binary: Path,
    tmp_path: Path,
    unique: Callable[[str], str],
) -> None:
    cluster = unique("gate")
    gate = services(
        "ballast.policy_gate",
        nats_url=nats_server.url,
        BALLAST_CLUSTER=cluster,
        BALLAST_OPA_BINARY=str(opa_binary),
        BALLAST_POLICY_DIR=str(write_policies(tmp_path / "policies")),
    )
    await gate.wait_status("/readyz", 200)
    # The template OPA refuses is reported with the compiler's message; the others are served.
    assert "templates/K8sBroken/rego:4: rego_type_error: undefined function no_such_function" in gate.log()

    denied = await check(bus, cluster, deployment("bare", {}))
    assert not denied.allowed
    by_policy = {v.policy: v for v in denied.violations}
    owner = by_policy["K8sRequiredLabels/must-have-owner"]
    assert owner.message == 'you must provide labels: {"owner"}'
    assert owner.object == "Deployment/bare"
    assert owner.enforcement_action is EnforcementAction.DENY
    assert by_policy["K8sRequiredLabels/should-have-team"].enforcement_action is EnforcementAction.WARN

    allowed = await check(bus, cluster, deployment("good", {"owner": "me", "team": "shop"}))
    assert allowed.allowed
    assert allowed.violations == []

    warned = await check(bus, cluster, deployment("teamless", {"owner": "me"}))
    assert warned.allowed
    assert [(v.policy, v.message, v.enforcement_action) for v in warned.violations] == [
        ("K8sRequiredLabels/should-have-team", 'you must provide labels: {"team"}', EnforcementAction.WARN)
    ]

    # A pod-level policy refuses the Deployment before any pod exists: it is judged as the pod it creates.
    privileged = await check(bus, cluster, deployment("root", {"owner": "me", "team": "shop"}, privileged=True))
    assert not privileged.allowed
    assert [v.message for v in privileged.violations] == ["[Implied by expand-workloads] privileged container web"]

    async def decisions() -> dict[str, PolicyDecision] | None:
        found: dict[str, PolicyDecision] = {}
        async with bus.read("PLATFORM_EVENTS", subjects=[f"evt.policy.{cluster}.>"], until="last") as events:
            async for stored in events:
                assert stored.event is not None, stored.error
                assert isinstance(stored.event.data, PolicyDecision)
                found[stored.event.data.object.name] = stored.event.data
        return found if len(found) == 4 else None

    logged = await eventually(decisions, timeout=10, what="four decisions on evt.policy")
    assert {name: d.decision for name, d in logged.items()} == {
        "bare": Decision.DENIED,
        "good": Decision.ALLOWED,
        "teamless": Decision.WARNED,
        "root": Decision.DENIED,
    }
    bare = logged["bare"]
    assert bare.requested_by == "test"
    assert bare.object.namespace == "shop"
    assert {(c.kind, c.name, c.message) for c in bare.constraints} == {
        ("K8sRequiredLabels", "must-have-owner", 'you must provide labels: {"owner"}'),
        ("K8sRequiredLabels", "should-have-team", 'you must provide labels: {"team"}'),
    }
    await gate.stop(timeout=15)


async def test_a_manifest_without_a_name_is_a_bad_request(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    bus: Bus,
    opa_binary: Path,
    unique: Callable[[str], str],
) -> None:
    cluster = unique("gate")
    gate = services(
        "ballast.policy_gate", nats_url=nats_server.url, BALLAST_CLUSTER=cluster, BALLAST_OPA_BINARY=str(opa_binary)
    )
    await gate.wait_status("/readyz", 200)
    with pytest.raises(EndpointCallError) as refused:
        await check(bus, cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {}})
    assert refused.value.code == 400
    assert "manifests[0] needs apiVersion, kind and metadata.name" in refused.value.description
    await gate.stop(timeout=15)
