"""Wiring of the reconciler service: settings, the Kubernetes client, leader election, the operator and its events.

Every replica watches nothing until it leads: standbys hold only a lease campaign, so a failover costs one lease
duration and nothing runs twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

import nats.errors
from pydantic import Field

from ballast.bus import Bus, EndpointCallError
from ballast.events.catalogue import POLICY_CHECK
from ballast.events.payloads import PolicyCheckRequest, PolicyCheckResponse
from ballast.kube.client import api_client
from ballast.kube.leader import LeaderElector, LeaseTimings, default_identity
from ballast.reconciler.api import WebApp
from ballast.reconciler.events import ReconcilerEvents
from ballast.reconciler.operator import OperatorMetrics, WebAppOperator
from ballast.reconciler.status import Problem
from ballast.runtime import ServiceApp, ServiceSettings

NAME = "reconciler"
log = logging.getLogger(__name__)


class ReconcilerSettings(ServiceSettings):
    http_port: int = Field(default=8081, ge=0, le=65535)
    kubeconfig: str | None = Field(default=None, description="path; unset: KUBECONFIG, then in-cluster config")
    lease_namespace: str = "kube-system"
    lease_name: str = "ballast-reconciler"
    identity: str = Field(default_factory=default_identity)
    lease_duration: float = Field(default=15.0, gt=0)
    renew_deadline: float = Field(default=10.0, gt=0)
    retry_period: float = Field(default=2.0, gt=0)
    workers: int = Field(default=8, ge=1, le=256)
    policy_check: bool = Field(default=False, description="ask svc.policy.check before applying")
    policy_timeout: float = Field(default=2.0, gt=0)
    policy_failure: Literal["open", "closed"] = Field(default="open", description="when the gate does not answer")


def policy_checker(bus: Bus, settings: ReconcilerSettings) -> Any:
    async def check(webapp: WebApp, manifests: list[dict[str, Any]]) -> Problem | None:
        request = PolicyCheckRequest(
            cluster=settings.cluster, namespace=webapp.metadata.namespace or "", manifests=manifests, requested_by=NAME
        )
        try:
            answer = await bus.request(POLICY_CHECK, request, timeout=settings.policy_timeout)
        except (TimeoutError, EndpointCallError, nats.errors.Error) as exc:  # no responders, timeout, gate error
            if settings.policy_failure == "open":
                log.warning("policy gate unavailable (%s); applying (fail-open)", type(exc).__name__)
                return None
            return Problem("PolicyUnavailable", f"the policy gate did not answer: {type(exc).__name__}")
        assert isinstance(answer, PolicyCheckResponse)
        if answer.allowed:
            return None
        return Problem("PolicyDenied", "; ".join(f"{v.policy}: {v.object}: {v.message}" for v in answer.violations))

    return check


def build(settings: ReconcilerSettings) -> ServiceApp:
    app = ServiceApp(NAME, settings)
    metrics = OperatorMetrics(app.registry)
    state: dict[str, Any] = {}

    def kube_ready() -> str | None:
        return None if state.get("api") is not None else "no Kubernetes client yet"

    app.readiness("kubernetes", kube_ready)

    async def operate(bus: Bus, stop: asyncio.Event) -> None:
        api = await api_client(settings.kubeconfig)
        state["api"] = api
        events = ReconcilerEvents(bus.publisher, settings.cluster)
        elector = LeaderElector(
            api,
            namespace=settings.lease_namespace,
            name=settings.lease_name,
            identity=settings.identity,
            timings=LeaseTimings(settings.lease_duration, settings.renew_deadline, settings.retry_period),
        )

        async def lead(lost: asyncio.Event) -> None:
            operator = WebAppOperator(
                api,
                metrics,
                on_outcome=events.outcome,
                on_observed=events.observed,
                policy_check=policy_checker(bus, settings) if settings.policy_check else None,
                workers=settings.workers,
                identity=settings.identity,
            )
            await operator.run(lost)

        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(events.run(stop))
                await elector.run(lead, stop)
        finally:
            await api.close()

    app.background(operate)
    return app
