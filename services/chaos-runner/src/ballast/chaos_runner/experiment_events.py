"""Kubernetes Events on a ChaosExperiment: the course of its runs as `kubectl describe chaosexperiment` and
`kubectl events --for chaosexperiment/<name>` show them (started, each injection, refused, passed or failed, aborted,
a fault left unreverted).

The bus (`evt.chaos`) stays the record the platform acts on; these are for the people looking at the object. They go
through the kit's recorder (`ballast.kube.recorder`): written in the background from a bounded outbox, a repeat within
ten minutes counted on the first Event rather than written again, and a refused write logged, never holding a run
back.
"""

from __future__ import annotations

from collections.abc import Iterable

from ballast.chaos_runner.api import API_VERSION, KIND, Experiment
from ballast.events.contracts.chaos import AbortReason, Verdict
from ballast.kube.recorder import EventKind, EventRecorder, Regarding

REPORTING_CONTROLLER = "platform.example.com/chaos-runner"  # who wrote an Event, as `kubectl events` shows it


def regarding(experiment: Experiment) -> Regarding:
    return Regarding(API_VERSION, KIND, experiment.namespace, experiment.name, experiment.uid)


def targets(experiment: Experiment) -> str:
    """The run's targets as an Event says them: the WebApp, or the pods the selector picks, in their namespace."""
    target = experiment.spec.target
    if target.web_app:
        return f"WebApp {experiment.target_namespace}/{target.web_app}"
    labels = dict(target.selector.match_labels) if target.selector else {}
    picked = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    return f"pods {picked or 'any'} in {experiment.target_namespace}"


def started_note(experiment: Experiment, run_id: str, dry_run: bool) -> str:
    fault = experiment.spec.fault.kind.value
    return f"run {run_id}: {fault} on {targets(experiment)}" + (" (dry run: nothing is injected)" if dry_run else "")


def injected_note(experiment: Experiment, run_id: str, sequence: int, objects: Iterable[tuple[str, str]]) -> str:
    hit = ", ".join(f"{kind}/{name}" for kind, name in objects)
    return f"run {run_id}, injection {sequence}: {experiment.spec.fault.kind.value} on {hit}"


def finished_note(run_id: str, verdict: Verdict, recovery_seconds: float | None, problem: str) -> str:
    recovered = f", recovered in {recovery_seconds:.1f}s" if recovery_seconds is not None else ""
    return f"run {run_id}: {verdict.value}{recovered}" + (f": {problem}" if problem else "")


def aborted_note(run_id: str, reason: AbortReason, detail: str, reverted: bool) -> str:
    faults = "" if reverted else "; a fault was NOT reverted: see the run's record"
    return f"run {run_id} aborted ({reason.value}): {detail}{faults}"


class ExperimentEvents:
    """What the runner tells on an experiment; every method queues and returns at once."""

    def __init__(self, recorder: EventRecorder) -> None:
        self.recorder = recorder

    def _tell(self, experiment: Experiment, kind: EventKind, reason: str, action: str, note: str) -> None:
        self.recorder.record(regarding(experiment), kind, reason, action, note)

    def started(self, experiment: Experiment, run_id: str, dry_run: bool) -> None:
        self._tell(experiment, "Normal", "Started", "Run", started_note(experiment, run_id, dry_run))

    def refused(self, experiment: Experiment, run_id: str, reason: AbortReason, detail: str) -> None:
        self._tell(experiment, "Warning", "Refused", "Run", f"run {run_id} refused ({reason.value}): {detail}")

    def injected(self, experiment: Experiment, run_id: str, sequence: int, objects: Iterable[tuple[str, str]]) -> None:
        self._tell(experiment, "Normal", "Injected", "Inject", injected_note(experiment, run_id, sequence, objects))

    def finished(
        self, experiment: Experiment, run_id: str, verdict: Verdict, recovery_seconds: float | None, problem: str
    ) -> None:
        kind: EventKind = "Normal" if verdict is Verdict.PASS else "Warning"
        reason = "Passed" if verdict is Verdict.PASS else "Failed"
        self._tell(experiment, kind, reason, "Verify", finished_note(run_id, verdict, recovery_seconds, problem))

    def aborted(self, experiment: Experiment, run_id: str, reason: AbortReason, detail: str, reverted: bool) -> None:
        self._tell(experiment, "Warning", "Aborted", "Abort", aborted_note(run_id, reason, detail, reverted))

    def revert_failed(self, experiment: Experiment, run_id: str, detail: str) -> None:
        fault = experiment.spec.fault.kind.value
        self._tell(experiment, "Warning", "RevertFailed", "Revert", f"run {run_id}: {fault} not reverted: {detail}")
