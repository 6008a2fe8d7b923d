"""The chaos-runner's contract: each experiment run's lifecycle on `evt.chaos`, and the `cmd.chaos` commands.

Lifecycle events go out on `evt.chaos.<cluster>.<ns>.<event>`, the namespace being the experiment's. Commands are
CloudEvents on the COMMANDS work queue (`cmd.chaos.<run|stop|pause>`), handled once by one runner replica.
"""

from __future__ import annotations

import enum
from typing import Self

from pydantic import AwareDatetime, Field, model_validator

from ballast.events.contracts.common import (
    ObjectRef,
    Payload,
    platform_event,
    platform_event_type,
    platform_subject,
)
from ballast.events.registry import EventSpec

AREA = "chaos"


class ChaosEvent(enum.StrEnum):
    SCHEDULED = "scheduled"
    STARTED = "started"
    INJECTED = "injected"
    CHECKED = "checked"
    ABORTED = "aborted"
    COMPLETED = "completed"


class ChaosCommand(enum.StrEnum):
    RUN = "run"
    STOP = "stop"
    PAUSE = "pause"


def chaos_event_type(event: ChaosEvent) -> str:
    return platform_event_type(AREA, event)


def chaos_subject(cluster: str, namespace: str, event: ChaosEvent) -> str:
    return platform_subject(AREA, cluster, namespace, event)


def chaos_command_type(command: ChaosCommand) -> str:
    return f"io.ballast.cmd.chaos.{command}.v1"


def chaos_command_subject(command: ChaosCommand) -> str:
    return f"cmd.chaos.{command}"


class FaultKind(enum.StrEnum):
    POD_DELETE = "pod_delete"
    POD_EVICT = "pod_evict"  # respects PodDisruptionBudgets
    NODE_CORDON = "node_cordon"
    NODE_DRAIN = "node_drain"
    SCALE_DOWN = "scale_down"


class FaultEngine(enum.StrEnum):
    NATIVE = "native"  # the runner applies the fault through the Kubernetes API
    LITMUS = "litmus"  # a Litmus ChaosEngine runs it


class RunTrigger(enum.StrEnum):
    SCHEDULE = "schedule"
    COMMAND = "command"


class CheckKind(enum.StrEnum):
    SLO_BURN = "slo_burn"
    READY_REPLICAS = "ready_replicas"
    HTTP = "http"


class CheckStage(enum.StrEnum):
    BEFORE = "before"
    DURING = "during"
    AFTER = "after"


class AbortReason(enum.StrEnum):
    BURN_ALERT = "burn_alert"  # a burn tier the experiment aborts on fired
    BUDGET_LOW = "budget_low"  # the SLO's budget left fell below the experiment's abort level
    BUDGET_SPENT = "budget_spent"  # the run spent the share of the budget it was allowed
    STEADY_STATE_FAILED = "steady_state_failed"
    INCIDENT_OPEN = "incident_open"  # an incident opened for the target's service
    STOPPED = "stopped"  # a cmd.chaos.stop named it
    KILL_SWITCH = "kill_switch"  # a cmd.chaos.stop naming no experiment
    RUNNER_LOST = "runner_lost"  # the runner died mid-run; its faults were reverted when a runner started again
    PAUSED = "paused"  # a cmd.chaos.pause holds chaos against the target's namespace or service
    NOT_ALLOWED = "not_allowed"  # refused before any fault: namespace not opted in, blast radius, concurrency policy


class Verdict(enum.StrEnum):
    PASS = "pass"  # the steady-state hypothesis held throughout
    FAIL = "fail"


class ExperimentRef(Payload):
    """A ChaosExperiment by its namespace and name."""

    namespace: str = Field(min_length=1, description="the ChaosExperiment's namespace")
    name: str = Field(min_length=1, description="the ChaosExperiment's name")


class ChaosTarget(Payload):
    """What an experiment disrupts: a WebApp, or the pods a label selector picks, in one namespace."""

    namespace: str = Field(min_length=1, description="the target's namespace")
    webapp: str | None = Field(default=None, description="the WebApp targeted")
    selector: dict[str, str] | None = Field(default=None, description="the label selector of the pods targeted")

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.webapp is None) == (self.selector is None):
            raise ValueError("name exactly one of webapp and selector")
        return self


class ChaosRunFact(Payload):
    """What every lifecycle event tells of the run it belongs to."""

    cluster: str = Field(description="the cluster's name")
    experiment: ExperimentRef = Field(description="the experiment")
    run_id: str = Field(min_length=1, description="one run of the experiment: its uid and the time the run was due")
    target: ChaosTarget = Field(description="what the run disrupts")
    fault: FaultKind = Field(description="the fault injected")
    engine: FaultEngine = Field(default=FaultEngine.NATIVE, description="what injects the fault")
    dry_run: bool = Field(default=False, description="targets are selected and checked, nothing is injected")
    at: AwareDatetime = Field(description="when this step happened")


class ExperimentScheduled(ChaosRunFact):
    """A run is due, by the experiment's schedule or on request.

    Event id: `<run_id>:scheduled`.
    """

    due_at: AwareDatetime = Field(description="when the run is to start")
    trigger: RunTrigger = Field(description="what asked for the run")
    requested_by: str | None = Field(default=None, description="who asked, for a run on request")


class ExperimentStarted(ChaosRunFact):
    """The steady state held before the run and the blast radius allows it: the run began.

    Event id: `<run_id>:started`.
    """

    budget_allowance: float | None = Field(
        default=None, gt=0, le=1, description="the share of the SLO budget left the run may spend; None: no limit"
    )


class FaultInjected(ChaosRunFact):
    """A fault was applied (recorded first, so that it is reverted even if the runner dies).

    Event id: `<run_id>:injected:<sequence>`.
    """

    sequence: int = Field(ge=1, description="the how-many-th injection of the run (an interval repeats it)")
    affected: tuple[ObjectRef, ...] = Field(min_length=1, description="the pods or nodes the fault hit")
    expires_at: AwareDatetime = Field(description="when the fault ends even if no runner is left to revert it")


class SteadyStateChecked(ChaosRunFact):
    """One check of the steady-state hypothesis.

    Event id: `<run_id>:checked:<check>:<at>`.
    """

    check: str = Field(min_length=1, description="the hypothesis' check, by name")
    check_kind: CheckKind = Field(description="what the check measures")
    stage: CheckStage = Field(description="before, during or after the faults")
    passed: bool = Field(description="whether the steady state held")
    observed: str = Field(description="what was measured against what was expected, for people")


class ExperimentAborted(ChaosRunFact):
    """The run stopped before its end; its faults were reverted.

    Event id: `<run_id>:aborted`.
    """

    reason: AbortReason = Field(description="why the run stopped")
    detail: str = Field(description="what triggered it, e.g. the burn event or the failed check")
    faults_reverted: bool = Field(description="whether every fault was verified reverted")
    budget_consumed: float = Field(ge=0, description="fraction of the target's SLO error budget the run consumed")


class ExperimentCompleted(ChaosRunFact):
    """The run ended as planned, with its verdict.

    Event id: `<run_id>:completed`.
    """

    verdict: Verdict = Field(description="whether the steady state held")
    injections: int = Field(ge=0, description="faults injected")
    recovery_seconds: float | None = Field(
        default=None, ge=0, description="from the first fault to the target Ready again; None if nothing was disrupted"
    )
    budget_consumed: float = Field(ge=0, description="fraction of the target's SLO error budget the run consumed")


CHAOS_EVENT_TYPES: tuple[EventSpec, ...] = (
    platform_event(AREA, ChaosEvent.SCHEDULED, ExperimentScheduled, "A chaos run is due."),
    platform_event(AREA, ChaosEvent.STARTED, ExperimentStarted, "A chaos run began."),
    platform_event(AREA, ChaosEvent.INJECTED, FaultInjected, "A chaos run applied a fault."),
    platform_event(AREA, ChaosEvent.CHECKED, SteadyStateChecked, "A chaos run checked its steady-state hypothesis."),
    platform_event(AREA, ChaosEvent.ABORTED, ExperimentAborted, "A chaos run was aborted; the reason says why."),
    platform_event(AREA, ChaosEvent.COMPLETED, ExperimentCompleted, "A chaos run ended, with its verdict."),
)


# --- cmd.chaos -----------------------------------------------------------------------------------------------------


class ChaosRequest(Payload):
    """Who asks a command, and the request's id, which is the command's event id: a retry is handled once."""

    request_id: str = Field(min_length=1, description="chosen by the requester; a retry sends the same one")
    requested_by: str = Field(min_length=1, description="the user or service asking")


class RunExperiment(ChaosRequest):
    """Run an experiment now, outside its schedule.

    Event id: `<request_id>`.
    """

    experiment: ExperimentRef = Field(description="the experiment to run")
    dry_run: bool = Field(default=False, description="select targets and check the steady state, inject nothing")


class StopExperiments(ChaosRequest):
    """Abort one experiment's run, or every run (the kill switch, which also holds new runs until a pause command
    with `paused: false` and no scope lifts it).

    Event id: `<request_id>`.
    """

    experiment: ExperimentRef | None = Field(default=None, description="the experiment; None: every experiment")
    reason: str = Field(min_length=1, description="why, for the abort event and the audit trail")


class PauseChaos(ChaosRequest):
    """Hold (abort running, start none) or release the experiments against a service or a namespace.

    An incident opened for a service pauses chaos against it, and its resolution resumes it.

    Event id: `<request_id>` (the incident-bot's: `<incident_id>:pause` and `<incident_id>:resume`).
    """

    namespace: str | None = Field(default=None, description="only experiments in this namespace; None: all")
    service: str | None = Field(default=None, description="only experiments against this service; None: all")
    paused: bool = Field(description="true holds, false releases")
    reason: str = Field(min_length=1, description="why, e.g. the incident's id")


CHAOS_COMMANDS: tuple[EventSpec, ...] = tuple(
    EventSpec(
        ce_type=chaos_command_type(command),
        model=model,
        subject=chaos_command_subject(command),
        description=description,
    )
    for command, model, description in (
        (ChaosCommand.RUN, RunExperiment, "Run a chaos experiment now."),
        (ChaosCommand.STOP, StopExperiments, "Abort a chaos experiment's run, or every run (the kill switch)."),
        (ChaosCommand.PAUSE, PauseChaos, "Hold or release chaos against a service or a namespace."),
    )
)
