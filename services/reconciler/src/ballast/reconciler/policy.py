"""The policy gate asked before a WebApp's children are applied (`svc.policy.check`), and what its silence means."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import nats.errors

from ballast.bus import Bus, EndpointCallError
from ballast.events.contracts.policy import POLICY_CHECK, PolicyCheckRequest, PolicyCheckResponse
from ballast.reconciler.api import WebApp
from ballast.reconciler.status import Problem

log = logging.getLogger(__name__)

PolicyCheck = Callable[[WebApp, list[dict[str, Any]]], Awaitable[Problem | None]]


def policy_checker(
    bus: Bus, *, cluster: str, requested_by: str, timeout: float, failure: Literal["open", "closed"]
) -> PolicyCheck:
    async def check(webapp: WebApp, manifests: list[dict[str, Any]]) -> Problem | None:
        request = PolicyCheckRequest(
            cluster=cluster, namespace=webapp.metadata.namespace or "", manifests=manifests, requested_by=requested_by
        )
        try:
            answer = await bus.request(POLICY_CHECK, request, timeout=timeout)
        except (TimeoutError, EndpointCallError, nats.errors.Error) as exc:  # no responders, timeout, gate error
            if failure == "open":
                log.warning("policy gate unavailable (%s); applying (fail-open)", type(exc).__name__)
                return None
            return Problem("PolicyUnavailable", f"the policy gate did not answer: {type(exc).__name__}")
        assert isinstance(answer, PolicyCheckResponse)
        if answer.allowed:
            return None
        return Problem("PolicyDenied", "; ".join(f"{v.policy}: {v.object}: {v.message}" for v in answer.violations))

    return check
