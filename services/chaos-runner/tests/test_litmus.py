"""The Litmus engine: the runner writes a ChaosEngine with probes from the hypothesis, follows its ChaosResult and
stops it with `engineState: stop` on abort.

Litmus' operator cannot run its experiment pods on kwok's fake nodes, so these tests install Litmus' real CRDs (the
API server validates every object the runner writes against them) and play the operator's part themselves: they write
the ChaosResult an experiment would produce and the engine status the operator would set.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chaos_fixtures import (
    chaos_api,  # noqa: F401  (fixture)
    command,
    create,
    experiment,
    litmus_api,  # noqa: F401  (fixture)
    ready_target,
    run_request,
    runner_ready,
    start_runner,
    wait_event,
)

from ballast.bus import Bus
from ballast.chaos_runner.api import CHAOS_EXPERIMENT, Experiment
from ballast.chaos_runner.litmus import CHAOS_ENGINE, CHAOS_RESULT, LitmusPhase, build_engine, read_result
from ballast.events.contracts.chaos import AbortReason, ChaosCommand, ExperimentRef, StopExperiments, Verdict
from ballast.kube.apply import get
from ballast.kube.rest import send_json
from ballast.testing import ServiceProcess, eventually

SPEC: dict[str, Any] = {
    "target": {"selector": {"matchLabels": {"app": "web"}}},
    "service": "web",
    "fault": {"kind": "PodDelete", "force": True},
    "engine": "Litmus",
    "litmus": {"serviceAccount": "pod-delete-sa"},
    "duration": "1m",
    "interval": "10s",
    "blastRadius": {"maxPercent": 50},
    "hypothesis": {"minReadyReplicas": 1, "http": {"url": "http://web.shop.svc/healthz"}, "checkIntervalSeconds": 5},
}


def read(spec: dict[str, Any]) -> Experiment:
    obj = experiment("web-chaos", spec) | {"metadata": {"name": "web-chaos", "namespace": "shop", "uid": "u-1"}}
    return Experiment.from_object(obj)


def test_the_engine_carries_the_fault_the_radius_and_probes_from_the_hypothesis() -> None:
    engine = build_engine(read(SPEC), "u-1-0123456789ab", "pod-delete-sa")
    spec = engine["spec"]
    assert (spec["engineState"], spec["chaosServiceAccount"]) == ("active", "pod-delete-sa")
    assert spec["appinfo"] == {"appns": "shop", "applabel": "app=web", "appkind": "deployment"}
    (exp,) = spec["experiments"]
    assert exp["name"] == "pod-delete"
    env = {e["name"]: e["value"] for e in exp["spec"]["components"]["env"]}
    assert env == {"TOTAL_CHAOS_DURATION": "60", "CHAOS_INTERVAL": "10", "FORCE": "true", "PODS_AFFECTED_PERC": "50"}
    http, pods = exp["spec"]["probe"]
    assert http["httpProbe/inputs"]["method"] == {"get": {"criteria": "==", "responseCode": "200"}}
    assert http["runProperties"]["probeTimeout"] == "2s", "Litmus' CRD wants strings"
    assert pods["k8sProbe/inputs"]["labelSelector"] == "app=web"
    assert pods["k8sProbe/inputs"]["fieldSelector"] == "status.phase=Running"


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        (None, LitmusPhase.RUNNING),
        ({"experimentStatus": {"phase": "Running", "verdict": "Awaited"}}, LitmusPhase.RUNNING),
        ({"experimentStatus": {"phase": "Completed", "verdict": "Pass"}}, LitmusPhase.PASSED),
        ({"experimentStatus": {"phase": "Completed", "verdict": "Fail"}}, LitmusPhase.FAILED),
        ({"experimentStatus": {"phase": "Stopped", "verdict": "Stopped"}}, LitmusPhase.STOPPED),
    ],
)
def test_a_chaos_result_reads_as_a_phase(status: dict[str, Any] | None, phase: LitmusPhase) -> None:
    assert read_result({"status": status} if status else None).phase is phase


async def play_operator(api: Any, namespace: str, engine: str, engine_status: str, verdict: str | None) -> None:
    """What Litmus' operator would write: the engine's status and, for a finished experiment, its ChaosResult. The
    CRDs have no status subresource, so status goes in with the object."""
    current = await get(api, CHAOS_ENGINE, namespace, engine)
    assert current is not None
    await send_json(
        api,
        "PATCH",
        CHAOS_ENGINE.path(namespace, engine),
        headers={"Content-Type": "application/merge-patch+json"},
        body={"status": {"engineStatus": engine_status}},
    )
    if verdict is not None:
        result = {
            "apiVersion": CHAOS_RESULT.api_version,
            "kind": "ChaosResult",
            "metadata": {"name": f"{engine}-pod-delete"},
            "spec": {"engine": engine, "experiment": "pod-delete"},
            "status": {
                "experimentStatus": {"phase": "Completed", "verdict": verdict, "probeSuccessPercentage": "100"},
            },
        }
        await create(api, namespace, result, CHAOS_RESULT)


@pytest.mark.cluster
async def test_litmus_objects_are_accepted_followed_and_stopped(
    bus: Bus,
    services: Callable[..., ServiceProcess],
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    chaos_api: None,
    litmus_api: None,
) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    await ready_target(bus, kube_api, namespace, "web", 2)
    runner = start_runner(services, bus, kubeconfig_path, cluster)
    spec = SPEC | {"hypothesis": {"minReadyReplicas": 1, "checkIntervalSeconds": 0.5}}
    await create(kube_api, namespace, experiment("web-chaos", spec), CHAOS_EXPERIMENT)
    await runner_ready(runner)

    # A run the operator completes with a passing verdict.
    await command(bus, ChaosCommand.RUN, run_request(namespace, "web-chaos"))
    (injected,) = await wait_event(bus, cluster, namespace, "injected")
    (engine_ref,) = injected.data.affected
    assert engine_ref.kind == "ChaosEngine"
    engine = await get(kube_api, CHAOS_ENGINE, namespace, engine_ref.name)
    assert engine is not None, "the real CRD accepted the runner's ChaosEngine"
    assert engine["spec"]["experiments"][0]["spec"]["probe"][0]["type"] == "k8sProbe"
    await play_operator(kube_api, namespace, engine_ref.name, "completed", "Pass")
    (completed,) = await wait_event(bus, cluster, namespace, "completed", timeout=30)
    assert completed.data.verdict is Verdict.PASS
    stopped = await get(kube_api, CHAOS_ENGINE, namespace, engine_ref.name)
    assert stopped is not None
    assert stopped["spec"]["engineState"] == "stop", "an ended run leaves its engine stopped"

    # A run stopped mid-way: engineState stop, the operator stops it, the abort is reported reverted.
    await command(bus, ChaosCommand.RUN, run_request(namespace, "web-chaos"))
    second = (await wait_event(bus, cluster, namespace, "injected", count=2))[1]
    (second_engine,) = second.data.affected
    stop = StopExperiments(
        request_id=uuid.uuid4().hex,
        requested_by="test",
        experiment=ExperimentRef(namespace=namespace, name="web-chaos"),
        reason="enough",
    )
    await command(bus, ChaosCommand.STOP, stop)

    async def asked_to_stop() -> bool:
        found = await get(kube_api, CHAOS_ENGINE, namespace, second_engine.name)
        return found is not None and found["spec"]["engineState"] == "stop"

    await eventually(asked_to_stop, timeout=10, interval=0.1, what="engineState: stop")
    await play_operator(kube_api, namespace, second_engine.name, "stopped", None)
    (aborted,) = await wait_event(bus, cluster, namespace, "aborted", timeout=30)
    assert aborted.data.reason is AbortReason.STOPPED
    assert aborted.data.faults_reverted
    await runner.stop()
