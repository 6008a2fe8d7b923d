"""Wiring of the chaos-runner service: its settings, the Kubernetes client, the shared run state, the runner and the
consumers of `cmd.chaos` and of the SLO and incident events.

Every replica runs experiments (a run belongs to the replica that took its command off the shared durable) and
watches the `chaos-runs` bucket, so any replica can stop, hold or clean up after any other; nothing needs a leader.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field

from ballast.bus import Bus, KeyValue
from ballast.chaos_runner.handlers import COMMAND_CONSUMER, SIGNAL_CONSUMER, ChaosHandlers
from ballast.chaos_runner.runner import Runner, RunnerConfig
from ballast.chaos_runner.state import ChaosState
from ballast.events.catalogue import CHAOS_RUNS
from ballast.events.contracts.slo import SLO_STATUS, SloState, SloStatusRequest, SloStatusResponse
from ballast.kube.client import api_client
from ballast.kube.leader import default_identity
from ballast.runtime import PORTS, ServiceApp, ServiceSettings

NAME = "chaos-runner"
log = logging.getLogger(__name__)


class ChaosRunnerSettings(ServiceSettings):
    http_port: int = Field(default=PORTS[NAME].health, ge=0, le=65535)
    kubeconfig: str | None = Field(default=None, description="path; unset: KUBECONFIG, then in-cluster config")
    identity: str = Field(default_factory=default_identity, description="this replica, as run records name owners")
    namespace: str | None = Field(default=None, description="the runner's own namespace, never a chaos target")
    heartbeat_interval: float = Field(default=2.0, gt=0)
    orphan_after: float = Field(default=10.0, gt=0, description="seconds without a heartbeat before takeover")
    fault_grace: float = Field(default=60.0, ge=0, description="a fault expires this long after its run's end")
    recovery_timeout: float = Field(default=120.0, gt=0)
    slo_timeout: float = Field(default=1.0, gt=0, description="seconds svc.slo.status may take")


def slo_reader(bus: Bus, timeout: float) -> Any:
    async def read(namespace: str, name: str) -> SloState | None:
        try:
            response = await bus.request(SLO_STATUS, SloStatusRequest(namespace=namespace, name=name), timeout)
        except Exception as exc:  # no slo-engine answering: the burn check fails, it does not crash the run
            log.info("svc.slo.status for %s/%s: %s", namespace, name, type(exc).__name__)
            return None
        assert isinstance(response, SloStatusResponse)
        return next(iter(response.slos), None)

    return read


def build(settings: ChaosRunnerSettings) -> ServiceApp:
    app = ServiceApp(NAME, settings)

    async def open_api(_: Bus) -> Any:
        return await api_client(settings.kubeconfig)

    async def close_api(api: Any) -> None:
        await api.close()

    api = app.lifespan("kubernetes", open_api, close_api)

    async def open_runner(bus: Bus) -> Runner:
        store: KeyValue[ChaosState] = await bus.kv(CHAOS_RUNS, ChaosState)
        config = RunnerConfig(
            cluster=settings.cluster,
            identity=settings.identity,
            own_namespace=settings.namespace,
            heartbeat_interval=settings.heartbeat_interval,
            orphan_after=settings.orphan_after,
            fault_grace=settings.fault_grace,
            recovery_timeout=settings.recovery_timeout,
        )
        return Runner(api.value, bus, store, config, slo_reader(bus, settings.slo_timeout))

    runner = app.lifespan("runner", open_runner)
    app.background(lambda _, stop: runner.value.run(stop))
    app.readiness(
        "chaos-runs",
        lambda: None if runner.is_open and runner.value.view.caught_up.is_set() else "chaos-runs not read yet",
    )

    async def on_command(delivery: Any) -> None:
        await ChaosHandlers(runner.value, settings.identity).on_command(delivery)

    async def on_signal(delivery: Any) -> None:
        await ChaosHandlers(runner.value, settings.identity).on_signal(delivery)

    app.consume(COMMAND_CONSUMER, on_command, concurrency=16, batch=16)
    app.consume(SIGNAL_CONSUMER, on_signal, concurrency=16, batch=16)
    return app
