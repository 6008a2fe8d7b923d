"""The Litmus engine: a ChaosEngine (litmuschaos.io/v1alpha1) built from an experiment, its ChaosResult read, and
`engineState: stop` to abort it.

Litmus has no Python SDK; its CRDs are the API (notes: chaos-incident.md §1). The runner keeps its own guardrails for
Litmus runs too (blast radius as PODS_AFFECTED_PERC, namespace opt-in, SLO and hypothesis checks, abort), because
Litmus' `stopOnFailure` was unreliable until litmus-go PR #779.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ballast.chaos_runner.api import Experiment, FaultType, parse_duration
from ballast.chaos_runner.faults import label_selector, target_labels
from ballast.kube.resource import Resource

CHAOS_ENGINE = Resource("litmuschaos.io", "v1alpha1", "chaosengines", "ChaosEngine")
CHAOS_RESULT = Resource("litmuschaos.io", "v1alpha1", "chaosresults", "ChaosResult")

# The Litmus experiment (chaos-charts) each fault maps to; the CRD admits only these two for the Litmus engine.
LITMUS_EXPERIMENTS = {FaultType.POD_DELETE: "pod-delete", FaultType.NODE_DRAIN: "node-drain"}


class LitmusPhase(enum.StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class LitmusOutcome:
    phase: LitmusPhase
    probe_success_percentage: float | None = None


def engine_name(experiment: Experiment, run_id: str) -> str:
    """At most 63 characters (the ChaosResult and the runner pod derive theirs from it)."""
    return f"{experiment.name[:40]}-{run_id[-12:]}".lower()


def result_name(engine: str, experiment: Experiment) -> str:
    """Litmus names the ChaosResult `<engine>-<experiment>`."""
    return f"{engine}-{LITMUS_EXPERIMENTS[experiment.spec.fault.kind]}"


def _seconds(text: str) -> int:
    return int(parse_duration(text).total_seconds())


def probes(experiment: Experiment) -> list[dict[str, Any]]:
    """The hypothesis as Litmus probes: the HTTP check as an httpProbe, minimum ready replicas as a k8sProbe that the
    target's Running pods are present. Timeouts and intervals are strings ("5s"): the CRD refuses numbers."""
    hypothesis = experiment.spec.hypothesis
    interval = f"{max(1, int(hypothesis.check_interval_seconds))}s"
    found: list[dict[str, Any]] = []
    if hypothesis.http is not None:
        found.append(
            {
                "name": "http-steady-state",
                "type": "httpProbe",
                "mode": "Continuous",
                "httpProbe/inputs": {
                    "url": hypothesis.http.url,
                    "method": {"get": {"criteria": "==", "responseCode": str(hypothesis.http.expect_status)}},
                },
                "runProperties": {
                    "probeTimeout": f"{max(1, int(hypothesis.http.timeout_seconds))}s",
                    "interval": interval,
                    "retry": 1,
                    "stopOnFailure": True,
                },
            }
        )
    if hypothesis.min_ready_replicas:
        found.append(
            {
                "name": "target-pods-running",
                "type": "k8sProbe",
                "mode": "Continuous",
                "k8sProbe/inputs": {
                    "version": "v1",
                    "resource": "pods",
                    "namespace": experiment.target_namespace,
                    "labelSelector": label_selector(target_labels(experiment)),
                    "fieldSelector": "status.phase=Running",
                    "operation": "present",
                },
                "runProperties": {"probeTimeout": "5s", "interval": interval, "retry": 1, "stopOnFailure": True},
            }
        )
    return found


def build_engine(experiment: Experiment, run_id: str, service_account: str) -> dict[str, Any]:
    spec = experiment.spec
    namespace = experiment.target_namespace
    env = [
        {"name": "TOTAL_CHAOS_DURATION", "value": str(_seconds(spec.duration))},
        {"name": "CHAOS_INTERVAL", "value": str(_seconds(spec.interval or spec.duration))},
    ]
    if spec.fault.kind is FaultType.POD_DELETE:
        env += [
            {"name": "FORCE", "value": "true" if spec.fault.force else "false"},
            # Litmus floors at one pod; the blast radius is the runner's cap, passed as Litmus' own.
            {"name": "PODS_AFFECTED_PERC", "value": str(spec.blast_radius.max_percent)},
        ]
    experiment_spec: dict[str, Any] = {"components": {"env": env}}
    if found := probes(experiment):
        experiment_spec["probe"] = found
    return {
        "apiVersion": CHAOS_ENGINE.api_version,
        "kind": CHAOS_ENGINE.kind,
        "metadata": {
            "name": engine_name(experiment, run_id),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "ballast-chaos-runner"},
            "annotations": {"chaos.platform.example.com/run": run_id},
        },
        "spec": {
            "engineState": "active",
            "chaosServiceAccount": service_account,
            "jobCleanUpPolicy": "delete",
            "appinfo": {
                "appns": namespace,
                "applabel": label_selector(target_labels(experiment)),
                "appkind": "deployment",
            },
            "experiments": [{"name": LITMUS_EXPERIMENTS[spec.fault.kind], "spec": experiment_spec}],
        },
    }


def read_result(result: Mapping[str, Any] | None) -> LitmusOutcome:
    """A ChaosResult's status (`experimentStatus.phase` Running/Completed/Stopped, `verdict` Awaited/Pass/Fail/
    Stopped) as the runner's outcome."""
    status = ((result or {}).get("status") or {}).get("experimentStatus") or {}
    phase = str(status.get("phase", "")).lower()
    verdict = str(status.get("verdict", "")).lower()
    score = _percentage(status.get("probeSuccessPercentage"))
    if phase == "stopped" or verdict == "stopped":
        return LitmusOutcome(LitmusPhase.STOPPED, score)
    if phase == "completed" and verdict in ("pass", "fail"):
        return LitmusOutcome(LitmusPhase.PASSED if verdict == "pass" else LitmusPhase.FAILED, score)
    return LitmusOutcome(LitmusPhase.RUNNING, score)


def _percentage(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]  # Litmus writes a number or a numeric string
    except (TypeError, ValueError):
        return None


STOP_PATCH = {"spec": {"engineState": "stop"}}


def engine_stopped(engine: Mapping[str, Any] | None) -> bool:
    """An engine is over once gone, or stopped with Litmus' status saying so (stopped or completed)."""
    if engine is None:
        return True
    status = (engine.get("status") or {}).get("engineStatus")
    return engine.get("spec", {}).get("engineState") == "stop" and status in ("stopped", "completed")
