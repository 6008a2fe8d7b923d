"""`svc.policy.check` end to end: the gate process with the real OPA (run by the gate, or beside it), policies from
files, a real nats-server; verdicts with the constraints' messages and the decision log on evt.policy."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from policies import deployment, gatekeeper_config, write_policies

from ballast.bus import Bus, EndpointCallError
from ballast.events.contracts.policy import (
    POLICY_CHECK,
    Decision,
    EnforcementAction,
    PolicyCheckRequest,
    PolicyCheckResponse,
    PolicyDecision,
)
from ballast.policy import ManagedOpa, OpaClient
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
        BALLAST_HTTPS_PORT="0",
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
    assert by_policy["K8sRequiredLabels/cost-center-trial"].enforcement_action is EnforcementAction.DRYRUN

    labelled = {"owner": "me", "team": "shop", "cost-center": "42"}
    allowed = await check(bus, cluster, deployment("good", labelled))
    assert allowed.allowed
    assert allowed.violations == []

    warned = await check(bus, cluster, deployment("teamless", {"owner": "me", "cost-center": "42"}))
    assert warned.allowed
    assert [(v.policy, v.message, v.enforcement_action) for v in warned.violations] == [
        ("K8sRequiredLabels/should-have-team", 'you must provide labels: {"team"}', EnforcementAction.WARN)
    ]

    # dryrun is reported (and logged), never refuses.
    trial = await check(bus, cluster, deployment("trial", {"owner": "me", "team": "shop"}))
    assert trial.allowed
    assert [(v.policy, v.enforcement_action) for v in trial.violations] == [
        ("K8sRequiredLabels/cost-center-trial", EnforcementAction.DRYRUN)
    ]

    # A pod-level policy refuses the Deployment before any pod exists: it is judged as the pod it creates.
    privileged = await check(bus, cluster, deployment("root", labelled, privileged=True))
    assert not privileged.allowed
    assert [v.message for v in privileged.violations] == ["[Implied by expand-workloads] privileged container web"]

    async def decisions() -> dict[str, PolicyDecision] | None:
        found: dict[str, PolicyDecision] = {}
        async with bus.read("PLATFORM_EVENTS", subjects=[f"evt.policy.{cluster}.>"], until="last") as events:
            async for stored in events:
                assert stored.event is not None, stored.error
                assert isinstance(stored.event.data, PolicyDecision)
                found[stored.event.data.object.name] = stored.event.data
        return found if len(found) == 5 else None

    logged = await eventually(decisions, timeout=10, what="five decisions on evt.policy")
    assert {name: d.decision for name, d in logged.items()} == {
        "bare": Decision.DENIED,
        "good": Decision.ALLOWED,
        "teamless": Decision.WARNED,
        "trial": Decision.ALLOWED,
        "root": Decision.DENIED,
    }
    assert [(c.name, c.enforcement_action) for c in logged["trial"].constraints] == [
        ("cost-center-trial", EnforcementAction.DRYRUN)
    ]
    bare = logged["bare"]
    assert bare.requested_by == "test"
    assert bare.object.namespace == "shop"
    assert {(c.kind, c.name, c.message) for c in bare.constraints} == {
        ("K8sRequiredLabels", "must-have-owner", 'you must provide labels: {"owner"}'),
        ("K8sRequiredLabels", "should-have-team", 'you must provide labels: {"team"}'),
        ("K8sRequiredLabels", "cost-center-trial", 'you must provide labels: {"cost-center"}'),
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
        "ballast.policy_gate",
        nats_url=nats_server.url,
        BALLAST_HTTPS_PORT="0",
        BALLAST_CLUSTER=cluster,
        BALLAST_OPA_BINARY=str(opa_binary),
    )
    await gate.wait_status("/readyz", 200)
    with pytest.raises(EndpointCallError) as refused:
        await check(bus, cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {}})
    assert refused.value.code == 400
    assert "manifests[0] needs apiVersion, kind and metadata.name" in refused.value.description
    await gate.stop(timeout=15)


async def test_an_opa_run_beside_the_gate_that_restarts_is_given_the_policies_again(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    bus: Bus,
    opa_binary: Path,
    tmp_path: Path,
    unique: Callable[[str], str],
) -> None:
    async def nothing(_: OpaClient) -> None:
        return None

    cluster = unique("gate")
    async with ManagedOpa(opa_binary, nothing) as sidecar:  # the chart's sidecar, played by a process of the test
        gate = services(
            "ballast.policy_gate",
            nats_url=nats_server.url,
            BALLAST_HTTPS_PORT="0",
            BALLAST_CLUSTER=cluster,
            BALLAST_OPA_URL=sidecar.url,
            BALLAST_POLICY_DIR=str(write_policies(tmp_path / "policies")),
        )
        await gate.wait_status("/readyz", 200)
        assert not (await check(bus, cluster, deployment("bare", {}))).allowed

        stop = asyncio.Event()
        restarting = asyncio.create_task(sidecar.supervise(stop))
        first = sidecar.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: sidecar.ready and sidecar.pid != first, timeout=15, what="the sidecar restarted")

        async def denied_again() -> bool:
            try:
                return not (await check(bus, cluster, deployment("bare", {}))).allowed
            except EndpointCallError:
                return False  # asked in the moment the sidecar was down

        await eventually(denied_again, timeout=10, what="the policies loaded into the restarted sidecar")
        assert "lost the policies (restarted?); loading them again" in gate.log()
        stop.set()
        await restarting
        await gate.stop(timeout=15)


def opa_children(pid: int) -> list[int]:
    kids = [int(k) for task in Path(f"/proc/{pid}/task").iterdir() for k in (task / "children").read_text().split()]
    return [k for k in kids if _command(k) == "opa"]


def _command(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:  # the killed OPA, reaped between the listing and this read
        return None


async def test_the_gates_own_opa_killed_is_restarted_with_the_policies(
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
        BALLAST_HTTPS_PORT="0",
        BALLAST_CLUSTER=cluster,
        BALLAST_OPA_BINARY=str(opa_binary),
        BALLAST_POLICY_DIR=str(write_policies(tmp_path / "policies")),
    )
    await gate.wait_status("/readyz", 200)
    assert gate.proc is not None
    pid = gate.proc.pid
    [first] = opa_children(pid)
    os.kill(first, signal.SIGKILL)

    def replaced() -> bool:
        return opa_children(pid) not in ([], [first])

    await eventually(replaced, timeout=15, what="a new OPA")
    await gate.wait_status("/readyz", 200)
    denied = await check(bus, cluster, deployment("bare", {}))
    assert "K8sRequiredLabels/must-have-owner" in {v.policy for v in denied.violations}
    assert "opa exited with -9; restarting" in gate.log()
    await gate.stop(timeout=15)


async def test_a_configs_excluded_namespaces_are_not_judged_by_the_constraints(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    bus: Bus,
    opa_binary: Path,
    tmp_path: Path,
    unique: Callable[[str], str],
) -> None:
    cluster = unique("gate")
    policies = write_policies(tmp_path / "policies")
    config = gatekeeper_config({"excludedNamespaces": ["legacy-*"], "processes": ["webhook"]})
    (policies / "config.yaml").write_text(yaml.safe_dump(config))
    gate = services(
        "ballast.policy_gate",
        nats_url=nats_server.url,
        BALLAST_HTTPS_PORT="0",
        BALLAST_CLUSTER=cluster,
        BALLAST_OPA_BINARY=str(opa_binary),
        BALLAST_POLICY_DIR=str(policies),
    )
    await gate.wait_status("/readyz", 200)

    bare = deployment("bare", {})
    assert not (await check(bus, cluster, bare)).allowed  # in shop: judged
    legacy = bare | {"metadata": bare["metadata"] | {"namespace": "legacy-billing"}}
    answer = await check(bus, cluster, legacy)
    assert answer.allowed
    assert answer.violations == []
    # A manifest without a namespace is in the request's.
    unnamed = bare | {"metadata": {k: v for k, v in bare["metadata"].items() if k != "namespace"}}
    request = PolicyCheckRequest(cluster=cluster, namespace="legacy-billing", manifests=[unnamed], requested_by="test")
    in_request = await bus.request(POLICY_CHECK, request, timeout=10)
    assert isinstance(in_request, PolicyCheckResponse)
    assert in_request.allowed
