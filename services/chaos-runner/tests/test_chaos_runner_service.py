"""The chaos-runner as it runs: its own process, real NATS, the real control plane with kwok nodes; experiments run,
recover, stay inside their blast radius, stop on burn, incidents and the kill switch, and leave no fault behind even
when the runner is SIGKILLed mid-experiment.

Targets are plain Deployments (kube-controller-manager replaces deleted pods) except in the first test, which runs
the reconciler too: a WebApp is what users point experiments at, and its recovery goes through the operator.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chaos_fixtures import (
    IMAGE,
    chaos_api,  # noqa: F401  (fixture)
    chaos_events,
    command,
    create,
    deployment,
    experiment,
    opt_in,
    ready_pods,
    ready_target,
    run_request,
    runner_ready,
    start_runner,
    wait_event,
    wait_ready,
)

from ballast.bus import Bus
from ballast.chaos_runner.api import CHAOS_EXPERIMENT
from ballast.chaos_runner.faults import EXPIRES_ANNOTATION, NODE, RUN_ANNOTATION
from ballast.cli.main import main as cli
from ballast.events import new_event
from ballast.events.contracts.chaos import AbortReason, ChaosCommand, Verdict
from ballast.events.contracts.incident import (
    IncidentEvent,
    IncidentSource,
    IncidentStatus,
    IncidentTransition,
    Severity,
    incident_event_type,
    incident_subject,
)
from ballast.events.contracts.slo import (
    AlertState,
)
from ballast.kube.apply import get
from ballast.kube.resource import DEPLOYMENT, EVENT, WEBAPP
from ballast.kube.rest import send_json
from ballast.testing import ServiceProcess, eventually
from ballast.testing.slo import burn_alert, publish_burn

pytestmark = pytest.mark.cluster

Services = Callable[..., ServiceProcess]


@pytest.fixture
def cluster() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


async def new_experiment(kube_api: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    await create(kube_api, namespace, experiment(name, spec), CHAOS_EXPERIMENT)


async def status(kube_api: Any, namespace: str, name: str) -> dict[str, Any]:
    obj = await get(kube_api, CHAOS_EXPERIMENT, namespace, name)
    assert obj is not None
    return dict(obj.get("status") or {})


async def told(kube_api: Any, namespace: str, name: str, reasons: set[str]) -> dict[str, dict[str, Any]]:
    """The Kubernetes Events on the experiment, by reason, once those `reasons` are all there (written in the
    background, so a moment after the bus events)."""

    async def found() -> dict[str, dict[str, Any]] | None:
        events = (await send_json(kube_api, "GET", EVENT.collection(namespace)))["items"]
        mine = {e["reason"]: e for e in events if e["regarding"]["kind"] == "ChaosExperiment"}
        mine = {reason: e for reason, e in mine.items() if e["regarding"]["name"] == name}
        return mine if reasons <= set(mine) else None

    by_reason: dict[str, dict[str, Any]] = await eventually(found, timeout=30, what=f"Events {sorted(reasons)}")
    return by_reason


async def test_pod_delete_on_a_three_replica_webapp_recovers_and_reports_recovery_time(
    bus: Bus,
    services: Services,
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    chaos_api: None,
    cluster: str,
) -> None:
    await bus.ensure_streams()
    await opt_in(kube_api, namespace)
    reconciler = services(
        "ballast.reconciler",
        nats_url=bus.url,
        KUBECONFIG=str(kubeconfig_path),
        BALLAST_CLUSTER=cluster,
        BALLAST_LEASE_NAMESPACE=namespace,
    )
    runner = start_runner(services, bus, kubeconfig_path, cluster)
    webapp = {"apiVersion": WEBAPP.api_version, "kind": "WebApp", "metadata": {"name": "shop"}}
    await create(kube_api, namespace, webapp | {"spec": {"image": IMAGE, "replicas": 3}}, WEBAPP)
    labels = {"app.kubernetes.io/instance": "shop"}
    await wait_ready(kube_api, namespace, labels, 3)
    before = {p["metadata"]["uid"] for p in await ready_pods(kube_api, namespace, labels)}
    await new_experiment(
        kube_api,
        namespace,
        "shop-pod-delete",
        {
            "target": {"webApp": "shop"},
            "fault": {"kind": "PodDelete", "force": True},
            "duration": "2s",
            "hypothesis": {"minReadyReplicas": 1, "checkIntervalSeconds": 0.5},
        },
    )
    await reconciler.wait_status("/readyz", 200)
    await runner_ready(runner)
    await command(bus, ChaosCommand.RUN, run_request(namespace, "shop-pod-delete"))

    (completed,) = await wait_event(bus, cluster, namespace, "completed")
    assert completed.data.verdict is Verdict.PASS
    assert completed.data.injections == 1
    assert completed.data.recovery_seconds is not None
    assert completed.data.recovery_seconds > 0
    (injected,) = await wait_event(bus, cluster, namespace, "injected")
    (hit,) = injected.data.affected
    assert hit.uid in before, "one of the WebApp's pods was deleted"
    after = {p["metadata"]["uid"] for p in await ready_pods(kube_api, namespace, labels)}
    assert hit.uid not in after
    assert len(after) == 3, "the reconciler's Deployment replaced it"
    assert len(await wait_event(bus, cluster, namespace, "scheduled")) == 1
    checked = await wait_event(bus, cluster, namespace, "checked")
    assert {c.data.stage for c in checked} >= {"before", "after"}
    assert all(c.data.passed for c in checked)
    shown = await status(kube_api, namespace, "shop-pod-delete")
    assert (shown["phase"], shown["verdict"], shown["runId"]) == ("Completed", "Pass", completed.data.run_id)
    assert shown["recoverySeconds"] == pytest.approx(completed.data.recovery_seconds, abs=0.001)
    # ...and `kubectl describe` tells the run's course.
    run_id = completed.data.run_id
    events = await told(kube_api, namespace, "shop-pod-delete", {"Started", "Injected", "Passed"})
    assert events["Started"]["note"] == f"run {run_id}: PodDelete on WebApp {namespace}/shop"
    (pod,) = [o.name for o in injected.data.affected]
    assert events["Injected"]["note"] == f"run {run_id}, injection 1: PodDelete on Pod/{pod}"
    assert events["Passed"]["type"] == "Normal"
    assert events["Passed"]["note"].startswith(f"run {run_id}: pass, recovered in ")
    assert events["Passed"]["reportingController"] == "platform.example.com/chaos-runner"
    described = await get(kube_api, CHAOS_EXPERIMENT, namespace, "shop-pod-delete")
    assert described is not None
    assert events["Passed"]["regarding"]["uid"] == described["metadata"]["uid"]


async def test_a_blast_radius_of_34_percent_never_takes_2_of_3_pods(
    bus: Bus, services: Services, kube_api: Any, kubeconfig_path: Path, namespace: str, chaos_api: None, cluster: str
) -> None:
    await ready_target(bus, kube_api, namespace, "web", 3)
    runner = start_runner(services, bus, kubeconfig_path, cluster)
    await new_experiment(
        kube_api,
        namespace,
        "greedy",
        {
            "target": {"selector": {"matchLabels": {"app": "web"}}},
            "service": "web",
            "fault": {"kind": "PodDelete", "force": True},
            "duration": "4s",
            "interval": "1s",
            "selection": {"mode": "All"},  # asks for every pod; the radius allows one at a time
            "blastRadius": {"maxPercent": 34},
        },
    )
    await runner_ready(runner)
    await command(bus, ChaosCommand.RUN, run_request(namespace, "greedy"))
    fewest = 3

    async def finished() -> bool:
        nonlocal fewest
        fewest = min(fewest, len(await ready_pods(kube_api, namespace, {"app": "web"})))
        status_now = await status(kube_api, namespace, "greedy")
        return status_now.get("phase") == "Completed"

    await eventually(finished, timeout=60, interval=0.05, what="the greedy experiment completed")
    injected = await wait_event(bus, cluster, namespace, "injected")
    assert injected, "the radius allows one pod"
    assert all(len(e.data.affected) == 1 for e in injected)
    assert fewest >= 2, f"{3 - fewest} of 3 pods were down at once"


async def test_a_target_outside_the_allowed_namespaces_is_refused(
    bus: Bus, services: Services, kube_api: Any, kubeconfig_path: Path, namespace: str, chaos_api: None, cluster: str
) -> None:
    await bus.ensure_streams()
    # No opt-in label on this namespace.
    await create(kube_api, namespace, deployment("web", 2), DEPLOYMENT)
    await wait_ready(kube_api, namespace, {"app": "web"}, 2)
    before = {p["metadata"]["uid"] for p in await ready_pods(kube_api, namespace, {"app": "web"})}
    runner = start_runner(services, bus, kubeconfig_path, cluster)
    await new_experiment(
        kube_api,
        namespace,
        "outside",
        {
            "target": {"selector": {"matchLabels": {"app": "web"}}},
            "service": "web",
            "fault": {"kind": "PodDelete"},
            "duration": "5s",
        },
    )
    await runner_ready(runner)
    await command(bus, ChaosCommand.RUN, run_request(namespace, "outside"))
    (aborted,) = await wait_event(bus, cluster, namespace, "aborted")
    assert aborted.data.reason is AbortReason.NOT_ALLOWED
    assert "chaos.platform.example.com/enabled=true" in aborted.data.detail
    assert not [e for e in await chaos_events(bus, cluster, namespace) if e.type == "io.ballast.chaos.started.v1"]
    assert {p["metadata"]["uid"] for p in await ready_pods(kube_api, namespace, {"app": "web"})} == before
    shown = await status(kube_api, namespace, "outside")
    assert (shown["phase"], shown["reason"]) == ("Refused", "not_allowed")
    refused = (await told(kube_api, namespace, "outside", {"Refused"}))["Refused"]
    assert refused["type"] == "Warning"
    assert refused["note"].startswith(f"run {aborted.data.run_id} refused (not_allowed): ")


async def replicas(kube_api: Any, namespace: str, name: str) -> tuple[int, dict[str, str]]:
    found = await get(kube_api, DEPLOYMENT, namespace, name)
    assert found is not None
    return found["spec"]["replicas"], found["metadata"].get("annotations") or {}


async def test_an_slo_burn_event_aborts_a_running_experiment_and_its_faults_are_gone(
    bus: Bus, services: Services, kube_api: Any, kubeconfig_path: Path, namespace: str, chaos_api: None, cluster: str
) -> None:
    await ready_target(bus, kube_api, namespace, "cart", 3)
    runner = start_runner(services, bus, kubeconfig_path, cluster)
    await new_experiment(
        kube_api,
        namespace,
        "cart-scale",
        {
            "target": {"selector": {"matchLabels": {"app": "cart"}}},
            "service": "cart",
            "fault": {"kind": "ScaleDown", "replicas": 2},
            "duration": "10m",
        },
    )
    await runner_ready(runner)
    await command(bus, ChaosCommand.RUN, run_request(namespace, "cart-scale"))
    await wait_event(bus, cluster, namespace, "injected")
    scaled, marks = await replicas(kube_api, namespace, "cart")
    assert scaled == 2
    assert EXPIRES_ANNOTATION in marks, "the fault carries its expiry on the object"

    await publish_burn(bus, burn_alert(cluster, namespace, "cart-availability", "cart", state=AlertState.FIRING))
    try:
        (aborted,) = await wait_event(bus, cluster, namespace, "aborted", timeout=10)
        assert aborted.data.reason is AbortReason.BURN_ALERT
        assert "page burn firing" in aborted.data.detail
        assert aborted.data.faults_reverted
        note = (await told(kube_api, namespace, "cart-scale", {"Aborted"}))["Aborted"]["note"]
        assert note == f"run {aborted.data.run_id} aborted (burn_alert): {aborted.data.detail}"
        restored, marks = await replicas(kube_api, namespace, "cart")
        assert restored == 3
        assert RUN_ANNOTATION not in marks
        assert EXPIRES_ANNOTATION not in marks
        # While the tier fires, a new run against the service is refused.
        await command(bus, ChaosCommand.RUN, run_request(namespace, "cart-scale"))
        refused = await wait_event(bus, cluster, namespace, "aborted", count=2)
        assert refused[1].data.reason is AbortReason.BURN_ALERT
        assert refused[1].data.detail.startswith("refused: ")
    finally:
        await publish_burn(bus, burn_alert(cluster, namespace, "cart-availability", "cart", state=AlertState.RESOLVED))


async def cordoned(kube_api: Any) -> list[str]:
    from ballast.kube.rest import send_json

    nodes = await send_json(kube_api, "GET", NODE.collection())
    return [
        n["metadata"]["name"]
        for n in nodes["items"]
        if n["spec"].get("unschedulable") and RUN_ANNOTATION in (n["metadata"].get("annotations") or {})
    ]


async def test_a_runner_killed_mid_experiment_has_its_faults_reverted_after_restart(
    bus: Bus, services: Services, kube_api: Any, kubeconfig_path: Path, namespace: str, chaos_api: None, cluster: str
) -> None:
    await ready_target(bus, kube_api, namespace, "api", 3)
    runner = start_runner(services, bus, kubeconfig_path, cluster, BALLAST_IDENTITY=f"chaos-{cluster}")
    await new_experiment(
        kube_api,
        namespace,
        "api-cordon",
        {
            "target": {"selector": {"matchLabels": {"app": "api"}}},
            "service": "api",
            "fault": {"kind": "NodeCordon"},
            "duration": "10m",
            "blastRadius": {"maxPercent": 100},
        },
    )
    await runner_ready(runner)
    await command(bus, ChaosCommand.RUN, run_request(namespace, "api-cordon"))
    (injected,) = await wait_event(bus, cluster, namespace, "injected")
    (node,) = [o.name for o in injected.data.affected]
    assert node in await cordoned(kube_api)

    runner.kill()  # SIGKILL: no drain, no revert
    assert node in await cordoned(kube_api), "nothing reverted the fault while no runner ran"
    restarted = start_runner(services, bus, kubeconfig_path, cluster, BALLAST_IDENTITY=f"chaos-{cluster}")
    (aborted,) = await wait_event(bus, cluster, namespace, "aborted", timeout=30)
    assert aborted.data.reason is AbortReason.RUNNER_LOST
    assert aborted.data.faults_reverted
    assert node not in await cordoned(kube_api)
    shown = await status(kube_api, namespace, "api-cordon")
    assert (shown["phase"], shown["reason"]) == ("Aborted", "runner_lost")
    await restarted.stop()


async def test_the_kill_switch_stops_everything_running_and_refuses_new_runs(
    bus: Bus,
    services: Services,
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    chaos_api: None,
    cluster: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await bus.ensure_streams()
    await opt_in(kube_api, namespace)
    runner = start_runner(services, bus, kubeconfig_path, cluster)
    names = ("alpha", "beta")
    for name in names:
        await create(kube_api, namespace, deployment(name, 3), DEPLOYMENT)
        await new_experiment(
            kube_api,
            namespace,
            name,
            {
                "target": {"selector": {"matchLabels": {"app": name}}},
                "service": name,
                "fault": {"kind": "ScaleDown", "replicas": 2},
                "duration": "10m",
            },
        )
    for name in names:
        await wait_ready(kube_api, namespace, {"app": name}, 3)
    await runner_ready(runner)
    for name in names:
        await command(bus, ChaosCommand.RUN, run_request(namespace, name))
    await wait_event(bus, cluster, namespace, "injected", count=2)

    cli_args = ["chaos", "--nats-url", bus.url, "--by", "oncall"]
    try:
        assert await asyncio.to_thread(cli, [*cli_args, "stop", "--all", "--reason", "game day over"]) == 0
        aborted = await wait_event(bus, cluster, namespace, "aborted", count=2, timeout=10)
        assert {e.data.reason for e in aborted} == {AbortReason.KILL_SWITCH}
        assert all(e.data.faults_reverted for e in aborted)
        assert "game day over" in aborted[0].data.detail
        for name in names:
            assert (await replicas(kube_api, namespace, name))[0] == 3

        capsys.readouterr()
        assert await asyncio.to_thread(cli, [*cli_args, "list"]) == 0
        assert "KILL SWITCH ENGAGED by oncall" in capsys.readouterr().out

        await command(bus, ChaosCommand.RUN, run_request(namespace, "alpha"))
        refused = (await wait_event(bus, cluster, namespace, "aborted", count=3))[2]
        assert refused.data.reason is AbortReason.KILL_SWITCH
        assert refused.data.detail.startswith("refused: ")
        assert (await replicas(kube_api, namespace, "alpha"))[0] == 3
    finally:
        assert await asyncio.to_thread(cli, [*cli_args, "pause", "--resume"]) == 0

    # Lifted: runs start again (the lift and a new run race through the shared consumer: ask until one starts).
    async def runs_again() -> bool:
        await command(bus, ChaosCommand.RUN, run_request(namespace, "alpha"))
        events = await chaos_events(bus, cluster, namespace)
        return sum(1 for e in events if e.type == "io.ballast.chaos.injected.v1") >= 3

    await eventually(runs_again, timeout=30, interval=0.5, what="a run after the kill switch was lifted")
    await runner.stop()

    async def stopped() -> list[Any]:
        events = await chaos_events(bus, cluster, namespace)
        return [e for e in events if e.type == "io.ballast.chaos.aborted.v1" and e.data.reason is AbortReason.STOPPED]

    (last,) = await eventually(stopped, timeout=10, what="the run aborted by the runner's shutdown")
    assert "shutting down" in last.data.detail, "a runner shutting down reverts what it runs"
    assert (await replicas(kube_api, namespace, "alpha"))[0] == 3


def incident(cluster: str, namespace: str, service: str, status: IncidentStatus) -> IncidentTransition:
    opened = datetime(2026, 1, 1, tzinfo=UTC)
    return IncidentTransition(
        cluster=cluster,
        incident_id=f"INC-{cluster}",
        service=service,
        namespace=namespace,
        severity=Severity.HIGH,
        title="checkout errors",
        status=status,
        source=IncidentSource.SLO,
        fingerprint=f"fp-{cluster}",
        opened_at=opened,
        resolved_at=opened + timedelta(hours=1) if status is IncidentStatus.RESOLVED else None,
    )


async def publish_incident(bus: Bus, transition: IncidentTransition) -> None:
    event = IncidentEvent.OPENED if transition.status is IncidentStatus.OPEN else IncidentEvent.RESOLVED
    await bus.publisher.publish(
        incident_subject(transition.cluster, transition.namespace, event),
        new_event(incident_event_type(event), "test", transition, event_id=f"{transition.incident_id}:{event}"),
    )


async def test_while_an_incident_is_open_chaos_against_its_service_is_paused(
    bus: Bus, services: Services, kube_api: Any, kubeconfig_path: Path, namespace: str, chaos_api: None, cluster: str
) -> None:
    await ready_target(bus, kube_api, namespace, "pay", 3)
    runner = start_runner(services, bus, kubeconfig_path, cluster)
    spec = {
        "target": {"selector": {"matchLabels": {"app": "pay"}}},
        "service": "pay",
        "fault": {"kind": "ScaleDown", "replicas": 2},
        "duration": "10m",
    }
    await new_experiment(kube_api, namespace, "pay-scale", spec)
    await runner_ready(runner)
    await command(bus, ChaosCommand.RUN, run_request(namespace, "pay-scale"))
    await wait_event(bus, cluster, namespace, "injected")

    await publish_incident(bus, incident(cluster, namespace, "pay", IncidentStatus.OPEN))
    (aborted,) = await wait_event(bus, cluster, namespace, "aborted", timeout=10)
    assert aborted.data.reason is AbortReason.INCIDENT_OPEN
    assert f"INC-{cluster}" in aborted.data.detail
    assert (await replicas(kube_api, namespace, "pay"))[0] == 3
    await command(bus, ChaosCommand.RUN, run_request(namespace, "pay-scale"))
    refused = (await wait_event(bus, cluster, namespace, "aborted", count=2))[1]
    assert refused.data.reason is AbortReason.INCIDENT_OPEN

    await publish_incident(bus, incident(cluster, namespace, "pay", IncidentStatus.RESOLVED))

    async def runs_again() -> bool:
        await command(bus, ChaosCommand.RUN, run_request(namespace, "pay-scale"))
        events = await chaos_events(bus, cluster, namespace)
        return sum(1 for e in events if e.type == "io.ballast.chaos.started.v1") >= 2

    # The resolution and a new run race on the bus: ask until one starts.
    await eventually(runs_again, timeout=30, interval=0.5, what="a run after the incident resolved")
    await runner.stop()
