"""Wiring of the reconciler service: settings, the Kubernetes client, leader election, the operator and its events.

Every replica watches nothing until it leads: standbys hold only a lease campaign, so a failover costs one lease
duration and nothing runs twice.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field

from ballast.bus import Bus
from ballast.kube.client import api_client
from ballast.reconciler.events import ReconcilerEvents
from ballast.reconciler.operator import OperatorMetrics, WebAppOperator
from ballast.reconciler.policy import policy_checker
from ballast.runtime import PORTS, ServiceApp
from ballast.runtime.leases import LeaseSettings

NAME = "reconciler"


class ReconcilerSettings(LeaseSettings):
    http_port: int = Field(default=PORTS[NAME].health, ge=0, le=65535)
    kubeconfig: str | None = Field(default=None, description="path; unset: KUBECONFIG, then in-cluster config")
    lease_name: str = "ballast-reconciler"
    workers: int = Field(default=8, ge=1, le=256)
    policy_check: bool = Field(default=False, description="ask svc.policy.check before applying")
    policy_timeout: float = Field(default=2.0, gt=0)
    policy_failure: Literal["open", "closed"] = Field(default="open", description="when the gate does not answer")


def operator(
    settings: ReconcilerSettings, api: Any, bus: Bus, events: ReconcilerEvents, metrics: OperatorMetrics
) -> WebAppOperator:
    """The operator of one term as leader."""
    policy_check = None
    if settings.policy_check:
        policy_check = policy_checker(
            bus,
            cluster=settings.cluster,
            requested_by=NAME,
            timeout=settings.policy_timeout,
            failure=settings.policy_failure,
        )
    return WebAppOperator(
        api,
        metrics,
        on_outcome=events.outcome,
        on_observed=events.observed,
        policy_check=policy_check,
        workers=settings.workers,
        identity=settings.identity,
    )


def build(settings: ReconcilerSettings) -> ServiceApp:
    app = ServiceApp(NAME, settings)
    metrics = OperatorMetrics(app.registry)

    async def open_api(_: Bus) -> Any:
        return await api_client(settings.kubeconfig)

    async def close_api(api: Any) -> None:
        await api.close()

    async def open_events(bus: Bus) -> ReconcilerEvents:
        return ReconcilerEvents(bus.publisher, settings.cluster)

    api = app.lifespan("kubernetes", open_api, close_api)
    events = app.lifespan("events", open_events)
    app.background(lambda _, stop: events.value.run(stop))

    async def lead(bus: Bus, lost: asyncio.Event) -> None:
        await operator(settings, api.value, bus, events.value, metrics).run(lost)

    app.lead(lambda: settings.elector(api.value), lead)
    return app
