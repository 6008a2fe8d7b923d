"""The runner: starts runs, drives each through its steps, stops them the moment something says so, and cleans up
after runners that died.

A run, step by step (each step an event on `evt.chaos`):
  scheduled → refused? (kill switch, hold, namespace not opted in, concurrency) → run record created in KV →
  hypothesis checked before → started → [plan under the blast radius → fault recorded with its expiry → applied →
  injected] every interval, the hypothesis checked between → every fault reverted and verified → recovery awaited →
  hypothesis checked after → completed with a verdict (or aborted with a reason, faults reverted just the same).

Aborts come through the shared KV view: a stop request, the kill switch or a hold written by whichever replica
handled the command or event; the owner's watch sees it within milliseconds and sets the run's abort event, which
every wait in the run races against.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from ballast.bus import Bus, CaughtUp, KeyExists, KeyValue, KvConflict
from ballast.chaos_runner import litmus
from ballast.chaos_runner.api import CHAOS_EXPERIMENT, ConcurrencyPolicy, Engine, Experiment, FaultType
from ballast.chaos_runner.checks import CheckResult, SloReader, budget_spent, check_all, over_budget
from ballast.chaos_runner.experiment_events import REPORTING_CONTROLLER, ExperimentEvents
from ballast.chaos_runner.faults import (
    EXPIRES_ANNOTATION,
    NODE,
    RESTORE_ANNOTATION,
    RUN_ANNOTATION,
    FaultRefused,
    NativeFaults,
    candidates,
    namespace_labels,
    target_labels,
    target_pods,
)
from ballast.chaos_runner.schedule import CronError, due_between
from ballast.chaos_runner.schedule import parse as parse_cron
from ballast.chaos_runner.selection import Candidate, allowed_down, namespace_refusal, node_plan, plan
from ballast.chaos_runner.state import (
    ChaosState,
    FaultRecord,
    FaultState,
    RunPhase,
    RunRecord,
    StopRequest,
    Touched,
    run_id_for,
    run_key,
    stale,
    stop_key,
)
from ballast.chaos_runner.view import Blocked, ChaosView
from ballast.events import new_event
from ballast.events.contracts.chaos import (
    AbortReason,
    ChaosEvent,
    ChaosTarget,
    CheckStage,
    ExperimentAborted,
    ExperimentCompleted,
    ExperimentRef,
    ExperimentScheduled,
    ExperimentStarted,
    FaultInjected,
    RunTrigger,
    SteadyStateChecked,
    Verdict,
    chaos_event_type,
    chaos_subject,
)
from ballast.events.contracts.common import ObjectRef, Payload
from ballast.kube.apply import get
from ballast.kube.errors import ApiError, NotFound
from ballast.kube.recorder import EventRecorder
from ballast.kube.resource import DEPLOYMENT
from ballast.kube.rest import KubeApi, send_json

log = logging.getLogger(__name__)
_MERGE = {"Content-Type": "application/merge-patch+json"}


@dataclass(frozen=True)
class RunnerConfig:
    cluster: str
    identity: str
    own_namespace: str | None = None  # never a chaos target
    heartbeat_interval: float = 2.0
    orphan_after: float = 10.0  # a run whose owner has not beaten for this long is taken over and reverted
    sweep_interval: float = 1.0
    annotation_sweep_interval: float = 30.0
    fault_grace: float = 60.0  # a fault expires this long after the run's planned end
    recovery_timeout: float = 120.0
    schedule_interval: float = 2.0  # how often schedules are looked at: a scheduled run starts at most this late
    revert_timeout: float = 30.0
    poll_interval: float = 0.1


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ActiveRun:
    """A run this runner owns and drives."""

    experiment: Experiment
    run_id: str
    record: RunRecord
    revision: int
    abort: asyncio.Event = field(default_factory=asyncio.Event)
    blocked: Blocked | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def stop(self, blocked: Blocked) -> None:
        if self.blocked is None:
            self.blocked = blocked
            self.abort.set()


@dataclass
class Outcome:
    injections: int = 0
    first_fault_at: datetime | None = None
    recovery_seconds: float | None = None
    failed_checks: list[CheckResult] = field(default_factory=list)
    budget_start: float | None = None
    budget_consumed: float = 0.0
    targets: list[str] = field(default_factory=list)
    litmus_verdict: Verdict | None = None


class Runner:
    def __init__(
        self,
        api: KubeApi,
        bus: Bus,
        store: KeyValue[ChaosState],
        config: RunnerConfig,
        slo_reader: SloReader,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.bus = bus
        self.store = store
        self.config = config
        self.read_slo = slo_reader
        self.rng = rng or random.Random()
        self.faults = NativeFaults(api)
        self.view = ChaosView()
        self.events = ExperimentEvents(EventRecorder(api, controller=REPORTING_CONTROLLER, instance=config.identity))
        self.active: dict[str, ActiveRun] = {}
        self._reverting: set[str] = set()  # orphans this runner is taking over
        self._claimed: set[str] = set()  # runs this runner started: never orphans, even before `active` has them
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._source = f"ballast/chaos-runner/{config.cluster}"
        self._schedules_seen_until = utcnow()  # runs due before the runner started are not made up for

    # --- lifecycle ------------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Watches the bucket, beats for owned runs and sweeps orphans and expired faults, until `stop`; then
        aborts the runs it owns, reverting their faults, before it returns."""
        self._session = aiohttp.ClientSession(trust_env=False)
        events_done = asyncio.Event()  # set once the runs are over: their last Events are told too
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.events.recorder.run(events_done))
                helpers = [
                    group.create_task(self._watch()),
                    group.create_task(self._every(stop, self.config.heartbeat_interval, self._beat)),
                    group.create_task(self._every(stop, self.config.sweep_interval, self._sweep)),
                    group.create_task(
                        self._every(stop, self.config.annotation_sweep_interval, self._sweep_annotations)
                    ),
                    group.create_task(self._every(stop, self.config.schedule_interval, self._tick_schedules)),
                ]
                await stop.wait()
                for active in list(self.active.values()):
                    active.stop(Blocked(AbortReason.STOPPED, "the runner is shutting down"))
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
                events_done.set()
                for helper in helpers:  # the watch ends only when cancelled
                    helper.cancel()
        finally:
            await self._session.close()

    async def _every(self, stop: asyncio.Event, interval: float, job: Callable[[], Awaitable[None]]) -> None:
        await self.view.caught_up.wait()  # a sweep judges orphans by the bucket: only once it has been read
        while not stop.is_set():
            try:
                await job()
            except Exception:  # one failed pass (API hiccup) must not end the loop; the next one retries
                log.exception("%s failed", job.__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()

    async def _watch(self) -> None:
        async with self.store.watch(">") as changes:
            async for change in changes:
                if isinstance(change, CaughtUp):
                    self.view.caught_up.set()
                    continue
                self.view.apply(change.key, change.revision, change.value)
                self._react()

    def _react(self) -> None:
        for active in self.active.values():
            record = active.record
            blocked = self.view.blocked(active.run_id, record.target.namespace, record.service, record.abort_on_tiers)
            if blocked is not None:
                active.stop(blocked)

    # --- starting a run -------------------------------------------------------------------------------------------

    async def request(
        self,
        ref: ExperimentRef,
        *,
        token: str,
        trigger: RunTrigger,
        requested_by: str | None,
        dry_run: bool = False,
        due_at: datetime | None = None,
    ) -> str | None:
        """Starts a run of the experiment in the background; returns its id (None: the experiment does not
        exist). The same token gives the same run id, so a redelivered request starts nothing new."""
        await self.view.caught_up.wait()
        obj = await get(self.api, CHAOS_EXPERIMENT, ref.namespace, ref.name)
        if obj is None:
            return None
        experiment = Experiment.from_object(obj)
        run_id = run_id_for(experiment.uid, token)
        if run_id in self.active or run_id in self.view.runs:
            return run_id
        task = asyncio.create_task(
            self._run(experiment, run_id, trigger, requested_by, dry_run or experiment.spec.dry_run, due_at)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run_id

    async def _tick_schedules(self) -> None:
        """Starts the scheduled runs due since the last look. Every replica looks; a run's id comes from the
        experiment and the due time, so only the replica that creates its record runs it."""
        since, now = self._schedules_seen_until, utcnow()
        self._schedules_seen_until = now
        listed = await send_json(self.api, "GET", CHAOS_EXPERIMENT.collection())
        for obj in listed.get("items") or []:
            schedule = (obj.get("spec") or {}).get("schedule") or {}
            if not schedule or schedule.get("suspend"):
                continue
            metadata = obj["metadata"]
            try:
                due = due_between(parse_cron(schedule["cron"]), since, now)
            except CronError as exc:
                log.warning("ChaosExperiment %s/%s: schedule %s", metadata["namespace"], metadata["name"], exc)
                continue
            for moment in due:
                await self.request(
                    ExperimentRef(namespace=metadata["namespace"], name=metadata["name"]),
                    token=f"schedule:{moment.isoformat()}",
                    trigger=RunTrigger.SCHEDULE,
                    requested_by=None,
                    due_at=moment,
                )

    def _facts(self, experiment: Experiment, run_id: str, dry_run: bool) -> dict[str, Any]:
        target = experiment.spec.target
        return {
            "cluster": self.config.cluster,
            "experiment": ExperimentRef(namespace=experiment.namespace, name=experiment.name),
            "run_id": run_id,
            "target": ChaosTarget(
                namespace=experiment.target_namespace,
                webapp=target.web_app,
                selector=dict(target.selector.match_labels) if target.selector else None,
            ),
            "fault": experiment.spec.fault.kind.contract,
            "engine": experiment.spec.engine.contract,
            "dry_run": dry_run,
        }

    async def _refusal(self, experiment: Experiment) -> Blocked | None:
        spec = experiment.spec
        blocked = self.view.blocked(None, experiment.target_namespace, experiment.service, spec.abort.on_burn_tiers)
        if blocked is not None:
            return blocked
        if experiment.target_namespace != experiment.namespace and experiment.namespace != self.config.own_namespace:
            # Whoever may write experiments in one namespace must not reach into another through the runner's rights.
            return Blocked(
                AbortReason.NOT_ALLOWED,
                f"an experiment in {experiment.namespace} may target only its own namespace "
                f"(experiments in the runner's namespace may target others), not {experiment.target_namespace}",
            )
        labels = await namespace_labels(self.api, experiment.target_namespace)
        if labels is None:
            return Blocked(AbortReason.NOT_ALLOWED, f"namespace {experiment.target_namespace} does not exist")
        refusal = namespace_refusal(experiment.target_namespace, labels, self.config.own_namespace)
        if refusal is not None:
            return Blocked(AbortReason.NOT_ALLOWED, refusal)
        policy = spec.schedule.concurrency_policy if spec.schedule else ConcurrencyPolicy.FORBID
        others = [
            r
            for r in self.view.running()
            if r.experiment.namespace == experiment.namespace and r.experiment.name == experiment.name
        ]
        if others and policy is ConcurrencyPolicy.FORBID:
            return Blocked(AbortReason.NOT_ALLOWED, f"run {others[0].run_id} of this experiment is still running")
        if others and policy is ConcurrencyPolicy.REPLACE:
            for other in others:
                await self.stop_run(other.run_id, AbortReason.STOPPED, "replaced by a newer run (concurrencyPolicy)")
        return None

    async def stop_run(self, run_id: str, reason: AbortReason, detail: str) -> None:
        await self.store.put(stop_key(run_id), ChaosState(StopRequest(reason=reason, detail=detail, at=utcnow())))

    async def _run(
        self,
        experiment: Experiment,
        run_id: str,
        trigger: RunTrigger,
        requested_by: str | None,
        dry_run: bool,
        due_at: datetime | None,
    ) -> None:
        facts = self._facts(experiment, run_id, dry_run)
        now = utcnow()
        await self._publish(
            ChaosEvent.SCHEDULED,
            ExperimentScheduled(**facts, at=now, due_at=due_at or now, trigger=trigger, requested_by=requested_by),
            f"{run_id}:scheduled",
            experiment,
        )
        refused = await self._refusal(experiment)
        if refused is not None:
            await self._publish(
                ChaosEvent.ABORTED,
                ExperimentAborted(
                    **facts,
                    at=utcnow(),
                    reason=refused.reason,
                    detail=f"refused: {refused.detail}",
                    faults_reverted=True,
                    budget_consumed=0.0,
                ),
                f"{run_id}:aborted",
                experiment,
            )
            await self._status(experiment, run_id, phase="Refused", reason=refused.reason, message=refused.detail)
            self.events.refused(experiment, run_id, refused.reason, refused.detail)
            return
        spec = experiment.spec
        record = RunRecord(
            run_id=run_id,
            experiment=facts["experiment"],
            owner=self.config.identity,
            heartbeat_at=now,
            started_at=now,
            target=facts["target"],
            service=experiment.service,
            fault=facts["fault"],
            engine=facts["engine"],
            dry_run=dry_run,
            abort_on_tiers=spec.abort.on_burn_tiers,
            abort_budget_below=(
                spec.abort.budget_left_below_percent / 100 if spec.abort.budget_left_below_percent is not None else None
            ),
        )
        self._claimed.add(run_id)
        try:
            revision = await self.store.create(run_key(run_id), ChaosState(record))
        except KeyExists:
            self._claimed.discard(run_id)
            return  # another replica (or an earlier delivery) runs it
        active = ActiveRun(experiment, run_id, record, revision)
        self.active[run_id] = active
        self._react()  # a stop, hold or kill switch written meanwhile applies at once
        outcome = Outcome()
        try:
            await self._status(experiment, run_id, phase="Running", started_at=now)
            await self._drive(active, facts, outcome)
        except Exception as exc:
            log.exception("run %s failed", run_id)
            active.stop(Blocked(AbortReason.STEADY_STATE_FAILED, f"the run failed: {type(exc).__name__}: {exc}"))
        finally:
            try:
                await self._finish(active, facts, outcome)
            finally:
                self.active.pop(run_id, None)
                self._claimed.discard(run_id)

    # --- driving a run --------------------------------------------------------------------------------------------

    async def _wait_abort(self, active: ActiveRun, seconds: float) -> bool:
        """Waits `seconds` unless the run is aborted first; True when it was."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await active.abort.wait()
        return active.abort.is_set()

    async def _pods(self, experiment: Experiment) -> list[Candidate]:
        return candidates(await target_pods(self.api, experiment.target_namespace, target_labels(experiment)))

    async def _check(
        self, active: ActiveRun, facts: dict[str, Any], outcome: Outcome, stage: CheckStage
    ) -> list[CheckResult]:
        experiment = active.experiment
        hypothesis = experiment.spec.hypothesis
        pods = await self._pods(experiment)
        slo_state = await self.read_slo(experiment.target_namespace, hypothesis.slo) if hypothesis.slo else None
        assert self._session is not None
        results = await check_all(experiment, sum(1 for p in pods if p.ready), slo_state, self._session)
        if slo_state is not None:
            if outcome.budget_start is None:
                outcome.budget_start = slo_state.budget_remaining
            outcome.budget_consumed = budget_spent(outcome.budget_start, slo_state.budget_remaining)
            budget = experiment.spec.budget
            if budget is not None and over_budget(
                budget.max_spend_percent, outcome.budget_start, outcome.budget_consumed
            ):
                active.stop(
                    Blocked(
                        AbortReason.BUDGET_SPENT,
                        f"spent {outcome.budget_consumed:.4f} of the budget, more than {budget.max_spend_percent:g} % "
                        f"of the {outcome.budget_start:.4f} left at the start",
                    )
                )
            below = active.record.abort_budget_below
            if below is not None and slo_state.budget_remaining < below:
                active.stop(
                    Blocked(
                        AbortReason.BUDGET_LOW,
                        f"budget left {slo_state.budget_remaining:.4f} fell below {below:.4f}",
                    )
                )
        at = utcnow()
        for result in results:
            await self._publish(
                ChaosEvent.CHECKED,
                SteadyStateChecked(
                    **facts,
                    at=at,
                    check=result.name,
                    check_kind=result.kind,
                    stage=stage,
                    passed=result.passed,
                    observed=result.observed,
                ),
                f"{active.run_id}:checked:{result.name}:{at.isoformat()}",
                experiment,
            )
        failed = [r for r in results if not r.passed]
        outcome.failed_checks += failed
        if failed and stage is not CheckStage.AFTER:
            active.stop(
                Blocked(
                    AbortReason.STEADY_STATE_FAILED,
                    "; ".join(f"{r.name} ({stage}): {r.observed}" for r in failed),
                )
            )
        return results

    async def _drive(self, active: ActiveRun, facts: dict[str, Any], outcome: Outcome) -> None:
        experiment = active.experiment
        spec = experiment.spec
        await self._check(active, facts, outcome, CheckStage.BEFORE)
        if active.abort.is_set():
            return
        budget = spec.budget
        await self._publish(
            ChaosEvent.STARTED,
            ExperimentStarted(
                **facts, at=utcnow(), budget_allowance=budget.max_spend_percent / 100 if budget else None
            ),
            f"{active.run_id}:started",
            experiment,
        )
        self.events.started(experiment, active.run_id, active.record.dry_run)
        loop = asyncio.get_running_loop()
        end = loop.time() + spec.duration_delta.total_seconds()
        planned_end = utcnow() + spec.duration_delta
        if spec.engine is Engine.LITMUS:
            await self._drive_litmus(active, facts, outcome, end, planned_end)
            return
        interval = spec.interval_delta.total_seconds() if spec.interval_delta else None
        baseline = sum(1 for p in await self._pods(experiment) if p.ready)
        recovery: asyncio.Task[None] | None = None
        sequence = 0
        next_injection: float | None = loop.time()
        try:
            while not active.abort.is_set() and loop.time() < end:
                if next_injection is not None and loop.time() >= next_injection:
                    sequence += 1
                    injected = await self._inject(active, facts, outcome, sequence, planned_end)
                    if active.record.dry_run:
                        break  # the targets are resolved and reported; nothing is injected
                    if injected and recovery is None and outcome.first_fault_at is not None:
                        recovery = asyncio.create_task(self._await_recovery(experiment, baseline, outcome))
                    next_injection = next_injection + interval if interval else None
                wake = min(end, next_injection) if next_injection is not None else end
                pause = min(spec.hypothesis.check_interval_seconds, max(0.0, wake - loop.time()))
                if await self._wait_abort(active, pause):
                    break
                if loop.time() < end:
                    await self._check(active, facts, outcome, CheckStage.DURING)
        finally:
            await self._revert_all(active)
            if recovery is not None:
                if active.abort.is_set() and not recovery.done():
                    recovery.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await recovery

    async def _inject(
        self, active: ActiveRun, facts: dict[str, Any], outcome: Outcome, sequence: int, planned_end: datetime
    ) -> bool:
        experiment = active.experiment
        spec = experiment.spec
        pods = await self._pods(experiment)
        nodes: tuple[str, ...] = ()
        if spec.fault.kind in (FaultType.NODE_CORDON, FaultType.NODE_DRAIN):
            nodes, chosen = node_plan(pods, spec.selection, spec.blast_radius, self.rng)
        else:
            chosen = plan(pods, spec.selection, spec.blast_radius, self.rng)
        if chosen.refused is not None:
            log.info("run %s injection %d skipped: %s", active.run_id, sequence, chosen.refused)
            if sequence == 1 and not outcome.targets:
                active.stop(Blocked(AbortReason.NOT_ALLOWED, chosen.refused))
            return False
        outcome.targets = sorted({*outcome.targets, *(nodes or tuple(c.name for c in chosen.chosen))})
        if active.record.dry_run:
            return False
        try:
            objects, undo = await self.faults.plan_objects(experiment, chosen.chosen, nodes)
        except FaultRefused as exc:
            active.stop(Blocked(AbortReason.NOT_ALLOWED, str(exc)))
            return False
        if not objects:
            return False
        if spec.fault.kind is FaultType.SCALE_DOWN:
            removed = undo["replicas"] - (spec.fault.replicas or 0)
            room = allowed_down(len(pods), spec.blast_radius) - sum(1 for p in pods if not p.ready)
            if removed <= 0 or removed > room:
                detail = (
                    f"the Deployment has {undo['replicas']} replicas already"
                    if removed <= 0
                    else f"blast radius: scaling {undo['replicas']} to {spec.fault.replicas} takes {removed} pods down,"
                    f" {max(room, 0)} allowed"
                )
                if sequence == 1:  # later injections of an interval just skip while the radius is used up
                    active.stop(Blocked(AbortReason.NOT_ALLOWED, detail))
                return False
        expires_at = planned_end + timedelta(seconds=self.config.fault_grace)
        fault = FaultRecord(
            sequence=sequence, kind=spec.fault.kind.contract, objects=objects, undo=undo, expires_at=expires_at
        )
        # Recorded before it is applied: from here on a runner that dies leaves a record to revert.
        await self._save(active, active.record.with_fault(fault))
        if active.abort.is_set():
            return False
        applied_at = utcnow()
        hit = await self.faults.apply(experiment, active.run_id, fault)
        applied = fault.model_copy(update={"objects": hit, "state": FaultState.APPLIED if hit else FaultState.REVERTED})
        await self._save(active, active.record.with_fault(applied))
        if not hit:
            return False
        outcome.injections += 1
        if outcome.first_fault_at is None:
            outcome.first_fault_at = applied_at
        await self._publish(
            ChaosEvent.INJECTED,
            FaultInjected(
                **facts,
                at=applied_at,
                sequence=sequence,
                affected=tuple(
                    ObjectRef(
                        api_version="v1" if o.kind != "Deployment" else "apps/v1",
                        kind=o.kind,
                        namespace=o.namespace,
                        name=o.name,
                        uid=o.uid,
                    )
                    for o in hit
                ),
                expires_at=expires_at,
            ),
            f"{active.run_id}:injected:{sequence}",
            experiment,
        )
        self.events.injected(experiment, active.run_id, sequence, [(o.kind, o.name) for o in hit])
        return True

    async def _await_recovery(self, experiment: Experiment, baseline: int, outcome: Outcome) -> None:
        """Recovery: from the first fault until as many target pods are Ready as before it."""
        assert outcome.first_fault_at is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.recovery_timeout + experiment.spec.duration_delta.total_seconds()
        while loop.time() < deadline:
            ready = sum(1 for p in await self._pods(experiment) if p.ready)
            if ready >= baseline:
                outcome.recovery_seconds = (utcnow() - outcome.first_fault_at).total_seconds()
                return
            await asyncio.sleep(self.config.poll_interval)  # polling the API server: a pace, not a synchronisation

    # --- the Litmus engine ----------------------------------------------------------------------------------------

    async def _drive_litmus(
        self, active: ActiveRun, facts: dict[str, Any], outcome: Outcome, end: float, planned_end: datetime
    ) -> None:
        experiment = active.experiment
        if active.record.dry_run:
            return
        account = experiment.spec.litmus.service_account if experiment.spec.litmus else "litmus-admin"
        engine = litmus.build_engine(experiment, active.run_id, account)
        name = engine["metadata"]["name"]
        namespace = experiment.target_namespace
        expires_at = planned_end + timedelta(seconds=self.config.fault_grace)
        fault = FaultRecord(
            sequence=1,
            kind=experiment.spec.fault.kind.contract,
            objects=(Touched(kind="ChaosEngine", namespace=namespace, name=name),),
            expires_at=expires_at,
        )
        await self._save(active, active.record.with_fault(fault).model_copy(update={"litmus_engine": name}))
        created = await send_json(self.api, "POST", litmus.CHAOS_ENGINE.collection(namespace), body=engine)
        touched = Touched(kind="ChaosEngine", namespace=namespace, name=name, uid=created["metadata"]["uid"])
        applied = fault.model_copy(update={"objects": (touched,), "state": FaultState.APPLIED})
        await self._save(active, active.record.with_fault(applied))
        outcome.injections = 1
        outcome.first_fault_at = utcnow()
        outcome.targets = [f"ChaosEngine/{name}"]
        await self._publish(
            ChaosEvent.INJECTED,
            FaultInjected(
                **facts,
                at=outcome.first_fault_at,
                sequence=1,
                affected=(
                    ObjectRef(
                        api_version=litmus.CHAOS_ENGINE.api_version,
                        kind="ChaosEngine",
                        namespace=namespace,
                        name=name,
                        uid=touched.uid,
                    ),
                ),
                expires_at=expires_at,
            ),
            f"{active.run_id}:injected:1",
            experiment,
        )
        self.events.injected(experiment, active.run_id, 1, [("ChaosEngine", name)])
        result_name = litmus.result_name(name, experiment)
        loop = asyncio.get_running_loop()
        deadline = end + self.config.recovery_timeout
        while not active.abort.is_set() and loop.time() < deadline:
            result = litmus.read_result(await get(self.api, litmus.CHAOS_RESULT, namespace, result_name))
            if result.phase is litmus.LitmusPhase.PASSED:
                outcome.litmus_verdict = Verdict.PASS
                break
            if result.phase is litmus.LitmusPhase.FAILED:
                outcome.litmus_verdict = Verdict.FAIL
                break
            if result.phase is litmus.LitmusPhase.STOPPED:
                active.stop(Blocked(AbortReason.STOPPED, f"ChaosResult {result_name} says the experiment was stopped"))
                break
            if await self._wait_abort(active, experiment.spec.hypothesis.check_interval_seconds):
                break
            await self._check(active, facts, outcome, CheckStage.DURING)
        if outcome.litmus_verdict is None and not active.abort.is_set():
            active.stop(Blocked(AbortReason.STEADY_STATE_FAILED, f"ChaosResult {result_name} gave no verdict in time"))
        await self._revert_all(active)

    # --- reverting ------------------------------------------------------------------------------------------------

    async def _revert_fault(self, fault: FaultRecord) -> FaultRecord:
        """Reverts and verifies one fault (idempotent); returns its record as it ends."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.revert_timeout
        remaining: str | None = "not tried"
        while loop.time() < deadline:
            try:
                if fault.objects and fault.objects[0].kind == "ChaosEngine":
                    remaining = await self._stop_engine(fault.objects[0])
                else:
                    await self.faults.revert(fault)
                    remaining = await self.faults.verify_reverted(fault)
            except ApiError as exc:
                remaining = f"{exc.reason}: {exc.message}"
            if remaining is None:
                return fault.model_copy(update={"state": FaultState.REVERTED, "detail": ""})
            await asyncio.sleep(self.config.poll_interval)  # pacing retries against the API server
        return fault.model_copy(update={"state": FaultState.REVERT_FAILED, "detail": remaining or ""})

    async def _stop_engine(self, obj: Touched) -> str | None:
        """`engineState: stop`; the engine is over once Litmus says stopped/completed, or it is gone."""
        path = litmus.CHAOS_ENGINE.path(obj.namespace, obj.name)
        try:
            engine = await send_json(self.api, "PATCH", path, headers=_MERGE, body=litmus.STOP_PATCH)
        except NotFound:
            return None
        if litmus.engine_stopped(engine):
            return None
        status = (engine.get("status") or {}).get("engineStatus")
        return f"ChaosEngine {obj.namespace}/{obj.name} not stopped yet (engineStatus {status})"

    async def _revert_all(self, active: ActiveRun) -> None:
        for fault in active.record.open_faults:
            await self._save(active, active.record.with_fault(await self._revert_fault(fault)))

    # --- finishing ------------------------------------------------------------------------------------------------

    async def _finish(self, active: ActiveRun, facts: dict[str, Any], outcome: Outcome) -> None:
        await self._revert_all(active)
        experiment = active.experiment
        unreverted = [f for f in active.record.faults if f.state is FaultState.REVERT_FAILED]
        for fault in unreverted:
            self.events.revert_failed(experiment, active.run_id, fault.detail)
        reverted = not unreverted
        finished = utcnow()
        blocked = active.blocked
        if blocked is None:
            await self._check(active, facts, outcome, CheckStage.AFTER)
            # A Litmus run's recovery is Litmus' to judge (its verdict); the runner measures native faults.
            recovered = (
                outcome.first_fault_at is None
                or outcome.recovery_seconds is not None
                or experiment.spec.engine is Engine.LITMUS
            )
            passed = not outcome.failed_checks and recovered and reverted and outcome.litmus_verdict is not Verdict.FAIL
            verdict = Verdict.PASS if passed else Verdict.FAIL
            await self._publish(
                ChaosEvent.COMPLETED,
                ExperimentCompleted(
                    **facts,
                    at=finished,
                    verdict=verdict,
                    injections=outcome.injections,
                    recovery_seconds=outcome.recovery_seconds,
                    budget_consumed=outcome.budget_consumed,
                ),
                f"{active.run_id}:completed",
                experiment,
            )
            problem = (
                ""
                if passed
                else "; ".join(f"{r.name}: {r.observed}" for r in outcome.failed_checks)
                or ("not recovered in time" if not recovered else "a fault was not reverted")
            )
            await self._status(
                experiment,
                active.run_id,
                phase="Completed",
                verdict=verdict.value.capitalize(),
                finished_at=finished,
                outcome=outcome,
                message=problem,
            )
            self.events.finished(experiment, active.run_id, verdict, outcome.recovery_seconds, problem)
        else:
            await self._publish(
                ChaosEvent.ABORTED,
                ExperimentAborted(
                    **facts,
                    at=finished,
                    reason=blocked.reason,
                    detail=blocked.detail,
                    faults_reverted=reverted,
                    budget_consumed=outcome.budget_consumed,
                ),
                f"{active.run_id}:aborted",
                experiment,
            )
            await self._status(
                experiment,
                active.run_id,
                phase="Aborted",
                reason=blocked.reason,
                message=blocked.detail,
                finished_at=finished,
                outcome=outcome,
            )
            self.events.aborted(experiment, active.run_id, blocked.reason, blocked.detail, reverted)
        done = active.record.model_copy(
            update={"phase": RunPhase.FINISHED, "outcome": blocked.reason.value if blocked else "completed"}
        )
        await self._save(active, done)
        with contextlib.suppress(Exception):
            await self.store.delete(stop_key(active.run_id))

    async def _status(
        self,
        experiment: Experiment,
        run_id: str,
        *,
        phase: str,
        verdict: str | None = None,
        reason: AbortReason | None = None,
        message: str = "",
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        status: dict[str, Any] = {
            "phase": phase,
            "runId": run_id,
            "observedGeneration": experiment.generation,
            "message": message[:1024],
            "reason": reason.value if reason else None,
        }
        if started_at is not None:
            status |= {"startedAt": _rfc3339(started_at), "verdict": None, "finishedAt": None, "recoverySeconds": None}
        if verdict is not None:
            status["verdict"] = verdict
        if finished_at is not None:
            status["finishedAt"] = _rfc3339(finished_at)
        if outcome is not None:
            status |= {
                "recoverySeconds": round(outcome.recovery_seconds, 3) if outcome.recovery_seconds is not None else None,
                "budgetConsumed": round(outcome.budget_consumed, 6),
                "injections": outcome.injections,
                "targets": outcome.targets,
            }
        try:
            await send_json(
                self.api,
                "PATCH",
                CHAOS_EXPERIMENT.path(experiment.namespace, experiment.name, "status"),
                headers=_MERGE,
                body={"status": status},
            )
        except NotFound:
            log.info("ChaosExperiment %s/%s is gone; its status is not written", experiment.namespace, experiment.name)

    # --- KV bookkeeping -------------------------------------------------------------------------------------------

    async def _save(self, active: ActiveRun, record: RunRecord) -> None:
        """Writes the owned run's record by compare-and-set; losing the key to another runner aborts the run."""
        async with active.lock:
            while True:
                try:
                    active.revision = await self.store.update(
                        run_key(active.run_id), ChaosState(record), active.revision
                    )
                    active.record = record
                    return
                except KvConflict:
                    current = await self.store.get(run_key(active.run_id))
                    if current is None or not isinstance(current.value, ChaosState):
                        raise
                    stored = current.value.root
                    if not isinstance(stored, RunRecord) or stored.owner != self.config.identity:
                        active.stop(Blocked(AbortReason.RUNNER_LOST, "another runner took the run over"))
                        active.record = record
                        return
                    active.revision = current.revision

    async def _beat(self) -> None:
        for active in list(self.active.values()):
            await self._save(active, active.record.model_copy(update={"heartbeat_at": utcnow()}))

    async def _sweep(self) -> None:
        """Takes over runs no runner owns (their owner died: it is this runner restarted, or it stopped beating),
        reverting their faults; reverts faults past their expiry whoever owns them."""
        now = utcnow()
        for run_id, (revision, record) in list(self.view.runs.items()):
            if record.phase is not RunPhase.RUNNING or run_id in self._claimed or run_id in self._reverting:
                continue
            orphaned = record.owner == self.config.identity or stale(record, now, self.config.orphan_after)
            expired = [f for f in record.open_faults if f.expires_at <= now]
            if orphaned or expired:
                self._reverting.add(run_id)
                try:
                    await self._take_over(run_id, revision, record, orphaned)
                finally:
                    self._reverting.discard(run_id)

    async def _take_over(self, run_id: str, revision: int, record: RunRecord, orphaned: bool) -> None:
        now = utcnow()
        previous_owner = record.owner
        claimed = record.model_copy(update={"owner": self.config.identity, "heartbeat_at": now})
        try:
            revision = await self.store.update(run_key(run_id), ChaosState(claimed), revision)
        except KvConflict:
            return  # its owner beat, or another runner claimed it first
        record = claimed
        for fault in record.open_faults:
            if orphaned or fault.expires_at <= now:
                record = record.with_fault(await self._revert_fault(fault))
        reverted = not any(f.state is FaultState.REVERT_FAILED for f in record.faults)
        if orphaned or not record.open_faults:
            record = record.model_copy(
                update={"phase": RunPhase.FINISHED, "outcome": AbortReason.RUNNER_LOST.value if orphaned else "expired"}
            )
        try:
            await self.store.update(run_key(run_id), ChaosState(record), revision)
        except KvConflict:
            log.warning("run %s changed while its faults were reverted", run_id)
        if record.phase is not RunPhase.FINISHED:
            return
        facts = {
            "cluster": self.config.cluster,
            "experiment": record.experiment,
            "run_id": run_id,
            "target": record.target,
            "fault": record.fault,
            "engine": record.engine,
            "dry_run": record.dry_run,
        }
        reason = AbortReason.RUNNER_LOST
        detail = (
            f"runner {previous_owner} is gone; {self.config.identity} reverted its faults"
            if orphaned
            else "its faults expired"
        )
        await self.bus.publisher.publish(
            chaos_subject(self.config.cluster, record.experiment.namespace, ChaosEvent.ABORTED),
            new_event(
                chaos_event_type(ChaosEvent.ABORTED),
                self._source,
                ExperimentAborted(
                    **facts, at=utcnow(), reason=reason, detail=detail, faults_reverted=reverted, budget_consumed=0.0
                ),
                subject=f"{record.experiment.namespace}/{record.experiment.name}",
                event_id=f"{run_id}:aborted",
            ),
        )
        obj = await get(self.api, CHAOS_EXPERIMENT, record.experiment.namespace, record.experiment.name)
        if obj is not None:
            experiment = Experiment.from_object(obj)
            await self._status(experiment, run_id, phase="Aborted", reason=reason, message=detail)
            self.events.aborted(experiment, run_id, reason, detail, reverted)

    async def _sweep_annotations(self) -> None:
        """The fallback when a run's record is gone (the bucket lost, a record deleted by hand): nodes and
        Deployments still carrying a chaos expiry in the past are reverted from the annotation alone."""
        now = utcnow()
        owned = {
            fault_object.name
            for active in self.active.values()
            for f in active.record.faults
            for fault_object in f.objects
        }
        nodes = await send_json(self.api, "GET", NODE.collection())
        for node in nodes.get("items") or []:
            annotations = node["metadata"].get("annotations") or {}
            if _expired(annotations, now) and node["metadata"]["name"] not in owned:
                await send_json(
                    self.api,
                    "PATCH",
                    NODE.path(None, node["metadata"]["name"]),
                    headers=_MERGE,
                    body={
                        "metadata": {"annotations": {RUN_ANNOTATION: None, EXPIRES_ANNOTATION: None}},
                        "spec": {"unschedulable": None},
                    },
                )
        deployments = await send_json(self.api, "GET", DEPLOYMENT.collection())
        for deployment in deployments.get("items") or []:
            metadata = deployment["metadata"]
            annotations = metadata.get("annotations") or {}
            if _expired(annotations, now) and RESTORE_ANNOTATION in annotations and metadata["name"] not in owned:
                await send_json(
                    self.api,
                    "PATCH",
                    DEPLOYMENT.path(metadata["namespace"], metadata["name"]),
                    headers=_MERGE,
                    body={
                        "metadata": {
                            "annotations": {RUN_ANNOTATION: None, EXPIRES_ANNOTATION: None, RESTORE_ANNOTATION: None}
                        },
                        "spec": {"replicas": int(annotations[RESTORE_ANNOTATION])},
                    },
                )

    # --- events ---------------------------------------------------------------------------------------------------

    async def _publish(self, event: ChaosEvent, data: Payload, event_id: str, experiment: Experiment) -> None:
        await self.bus.publisher.publish(
            chaos_subject(self.config.cluster, experiment.namespace, event),
            new_event(
                chaos_event_type(event),
                self._source,
                data,
                subject=f"{experiment.namespace}/{experiment.name}",
                event_id=event_id,
            ),
        )


def _expired(annotations: dict[str, str], now: datetime) -> bool:
    value = annotations.get(EXPIRES_ANNOTATION)
    if value is None:
        return False
    try:
        return datetime.fromisoformat(value) <= now
    except ValueError:
        return False


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
