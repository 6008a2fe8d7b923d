"""What the runner does with `cmd.chaos` commands and with the SLO and incident events that pause chaos.

Handlers only write the shared bucket (a stop request, the kill switch, a hold) or start a run; the owner of each
affected run sees the write through its watch and aborts within the second. So any replica may handle any message:
the consumers are shared durables.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ballast.bus import Delivery, KeyValue, Reject, RetryLater
from ballast.chaos_runner.runner import Runner
from ballast.chaos_runner.state import CONTROL_KEY, ChaosState, Control, Hold, HoldSource, hold_key
from ballast.events.catalogue import COMMANDS, PLATFORM_EVENTS, ConsumerSpec
from ballast.events.contracts.chaos import (
    AbortReason,
    ChaosCommand,
    PauseChaos,
    RunExperiment,
    RunTrigger,
    StopExperiments,
    chaos_command_subject,
)
from ballast.events.contracts.incident import IncidentStatus, IncidentTransition
from ballast.events.contracts.slo import AlertState, BudgetExhausted, BudgetRecovered, BurnAlert

log = logging.getLogger(__name__)

COMMAND_CONSUMER = ConsumerSpec(
    durable="chaos-runner-commands",
    stream=COMMANDS.name,
    filter_subjects=tuple(chaos_command_subject(c) for c in ChaosCommand),
    description="cmd.chaos run/stop/pause, each handled once by one runner replica.",
    ack_wait=10.0,
)
SIGNAL_CONSUMER = ConsumerSpec(
    durable="chaos-runner-signals",
    stream=PLATFORM_EVENTS.name,
    filter_subjects=("evt.slo.>", "evt.incident.>"),
    description="SLO burn and budget transitions and incidents, which hold chaos against a service.",
    backoff=(0.5, 1.0, 5.0, 30.0),
    max_deliver=5,
    ack_wait=10.0,
)


def _now() -> datetime:
    return datetime.now(UTC)


class ChaosHandlers:
    def __init__(self, runner: Runner, identity: str) -> None:
        self.runner = runner
        self.identity = identity

    @property
    def store(self) -> KeyValue[ChaosState]:
        return self.runner.store

    async def on_command(self, delivery: Delivery) -> None:
        data = delivery.event.data
        if isinstance(data, RunExperiment):
            run_id = await self.runner.request(
                data.experiment,
                token=data.request_id,
                trigger=RunTrigger.COMMAND,
                requested_by=data.requested_by,
                dry_run=data.dry_run,
            )
            if run_id is None:
                raise Reject(f"no ChaosExperiment {data.experiment.namespace}/{data.experiment.name}")
        elif isinstance(data, StopExperiments):
            await self.stop(data)
        elif isinstance(data, PauseChaos):
            await self.pause(data)
        else:
            raise Reject(f"{delivery.event.type} is not a chaos command")

    async def stop(self, command: StopExperiments) -> None:
        detail = f"{command.requested_by}: {command.reason}"
        if command.experiment is None:
            # The kill switch: every owner sees it through its watch and aborts; new runs are refused until a pause
            # command with paused false and no scope lifts it.
            control = Control(kill_switch=True, reason=command.reason, by=command.requested_by, at=_now())
            await self.store.put(CONTROL_KEY, ChaosState(control))
            return
        await self._caught_up()
        for record in self.runner.view.running():
            if record.experiment == command.experiment:
                await self.runner.stop_run(record.run_id, AbortReason.STOPPED, detail)

    async def pause(self, command: PauseChaos) -> None:
        key = hold_key(HoldSource.PAUSE, command.namespace, command.service)
        if command.paused:
            hold = Hold(
                source=HoldSource.PAUSE,
                namespace=command.namespace,
                service=command.service,
                abort_reason=AbortReason.PAUSED,
                reason=f"paused by {command.requested_by}: {command.reason}",
                by=command.requested_by,
                at=_now(),
            )
            await self.store.put(key, ChaosState(hold))
            return
        await self.store.delete(key)
        if command.namespace is None and command.service is None:
            control = Control(kill_switch=False, reason=command.reason, by=command.requested_by, at=_now())
            await self.store.put(CONTROL_KEY, ChaosState(control))

    async def on_signal(self, delivery: Delivery) -> None:
        data = delivery.event.data
        if isinstance(data, BurnAlert):
            await self._burn(data)
        elif isinstance(data, BudgetExhausted | BudgetRecovered):
            key = hold_key(HoldSource.BUDGET, data.slo.namespace, data.slo.service, data.slo.name)
            if isinstance(data, BudgetRecovered):
                await self.store.delete(key)
                return
            hold = Hold(
                source=HoldSource.BUDGET,
                namespace=data.slo.namespace,
                service=data.slo.service,
                abort_reason=AbortReason.BUDGET_LOW,
                reason=f"SLO {data.slo.namespace}/{data.slo.name}: budget exhausted ({data.budget_remaining:.4f} left)",
                by="slo-engine",
                at=data.at,
            )
            await self.store.put(key, ChaosState(hold))
        elif isinstance(data, IncidentTransition):
            key = hold_key(HoldSource.INCIDENT, data.namespace, data.service, data.incident_id)
            if data.status is IncidentStatus.OPEN:
                hold = Hold(
                    source=HoldSource.INCIDENT,
                    namespace=data.namespace,
                    service=data.service,
                    abort_reason=AbortReason.INCIDENT_OPEN,
                    reason=f"incident {data.incident_id} is open: {data.title}",
                    by="incident-bot",
                    at=data.opened_at,
                )
                await self.store.put(key, ChaosState(hold))
            elif data.status in (IncidentStatus.RESOLVED, IncidentStatus.CLOSED):
                await self.store.delete(key)
        # Other SLO and incident events (acknowledged, escalated, postmortems) change nothing for chaos.

    async def _burn(self, alert: BurnAlert) -> None:
        slo = alert.slo
        key = hold_key(HoldSource.BURN, slo.namespace, slo.service, f"{slo.name}/{alert.tier}")
        if alert.state is AlertState.RESOLVED:
            await self.store.delete(key)
        else:
            hold = Hold(
                source=HoldSource.BURN,
                namespace=slo.namespace,
                service=slo.service,
                tier=alert.tier,
                abort_reason=AbortReason.BURN_ALERT,
                reason=f"SLO {slo.namespace}/{slo.name}: {alert.tier} burn firing since {alert.since.isoformat()}",
                by="slo-engine",
                at=alert.since,
            )
            await self.store.put(key, ChaosState(hold))
        # An experiment's own "budget left below" level, told by the figure the alert carries.
        await self._caught_up()
        for record in self.runner.view.running():
            below = record.abort_budget_below
            if (
                below is not None
                and record.target.namespace == slo.namespace
                and record.service == slo.service
                and alert.budget_remaining < below
            ):
                await self.runner.stop_run(
                    record.run_id,
                    AbortReason.BUDGET_LOW,
                    f"SLO {slo.namespace}/{slo.name}: budget left {alert.budget_remaining:.4f} is below {below:.4f}",
                )

    async def _caught_up(self) -> None:
        if not self.runner.view.caught_up.is_set():
            raise RetryLater("the runner's view of chaos-runs is not caught up yet", 0.5)
