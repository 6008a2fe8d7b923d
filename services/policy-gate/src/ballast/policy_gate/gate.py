"""The gate: the policy engine on its OPA, loaded from the policy files, and the one evaluation path (`judge`) that
the bus check and the admission webhook share.

OPA is either run here (`BALLAST_OPA_BINARY`: a managed process on 127.0.0.1, restarted with everything pushed again
before the gate counts as ready) or someone else's (`BALLAST_OPA_URL`: a sidecar in the chart).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ballast.bus import Bus, EndpointError
from ballast.events.contracts.common import ManifestRef
from ballast.events.contracts.policy import (
    DecisionSource,
    EnforcementAction,
    Operation,
    PolicyCheckRequest,
    PolicyCheckResponse,
    PolicyViolation,
)
from ballast.policy import (
    WORKLOAD_EXPANSIONS,
    ManagedOpa,
    OpaClient,
    OpaError,
    OpaUnavailable,
    PolicyEngine,
    Review,
    Violation,
    load_policies,
    read_policies,
    review_admission_request,
    review_object,
)
from ballast.policy_gate.decisions import DecisionLog

log = logging.getLogger(__name__)


class Gate:
    def __init__(self, engine: PolicyEngine, decisions: DecisionLog, opa: ManagedOpa | None) -> None:
        self.engine = engine
        self.decisions = decisions
        self.opa = opa
        self._external_problem: str | None = None

    @classmethod
    async def open(
        cls,
        bus: Bus,
        *,
        cluster: str,
        opa_binary: Path | None,
        opa_url: str | None,
        policy_dir: Path | None,
        wait: float,
    ) -> Gate:
        decisions = DecisionLog(bus.publisher, cluster)
        if opa_binary is not None:
            opa = ManagedOpa(opa_binary, lambda client: engine.restore(client))
            engine = PolicyEngine(opa.client, WORKLOAD_EXPANSIONS)
            await opa.start()
        else:
            assert opa_url is not None  # the settings require one of them
            opa = None
            engine = PolicyEngine(OpaClient(opa_url), WORKLOAD_EXPANSIONS)
            await _wait_healthy(engine.client, wait)
            await engine.restore(engine.client)
        gate = cls(engine, decisions, opa)
        if policy_dir is not None:
            policies = read_policies([policy_dir])
            for problem in await load_policies(engine, policies):
                log.error("policy refused: %s", problem)
            log.info(
                "policies loaded",
                extra={
                    "templates": sorted(engine.templates),
                    "constraints": sum(len(c) for c in engine.constraints.values()),
                    "expansions": sorted(engine.expansions),
                },
            )
        return gate

    def readiness(self) -> str | None:
        if self.opa is not None and not self.opa.ready:
            return "opa restarting"
        return self._external_problem

    async def supervise(self, _: Bus, stop: asyncio.Event) -> None:
        if self.opa is not None:
            await self.opa.supervise(stop)
            return
        # Someone else's OPA (a sidecar) may restart without telling: once a second, see that it still holds the
        # policies, and give them again if not.
        while not stop.is_set():
            try:
                if await self.engine.opa_lost_state():
                    log.warning("OPA at %s lost the policies (restarted?); loading them again", self.engine.client.url)
                    await self.engine.restore(self.engine.client)
                    log.info("policies loaded again into OPA at %s", self.engine.client.url)
                self._external_problem = None
            except OpaError as exc:
                self._external_problem = f"OPA at {self.engine.client.url}: {exc}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def close(self) -> None:
        await self.decisions.drain()
        if self.opa is not None:
            await self.opa.close()
        else:
            await self.engine.client.close()

    async def judge(
        self,
        reviews: Sequence[Review],
        refs: Sequence[ManifestRef],
        *,
        source: DecisionSource,
        request_uid: str,
        operation: Operation,
        requested_by: str,
    ) -> list[list[Violation]]:
        """The one evaluation path of the bus check and the admission webhook: each review's violations (workloads
        also judged as the pods they create), each object's verdict in the decision log. Raises `OpaError` when the
        engine cannot answer: the caller's failure policy decides then."""
        started = time.perf_counter()
        verdicts = await self.engine.review(reviews)
        latency_ms = (time.perf_counter() - started) * 1000
        self.decisions.record(
            [
                self.decisions.decision(
                    source=source,
                    request_uid=request_uid,
                    operation=operation,
                    obj=ref,
                    requested_by=requested_by,
                    violations=violations,
                    latency_ms=latency_ms,
                )
                for ref, violations in zip(refs, verdicts, strict=True)
            ]
        )
        return verdicts

    async def check(self, request: PolicyCheckRequest) -> PolicyCheckResponse:
        """`svc.policy.check`: each manifest judged; denied if any violation's action is deny."""
        refs = [_manifest_ref(index, m) for index, m in enumerate(request.manifests)]
        reviews = [_review(request.operation, m) for m in request.manifests]
        try:
            verdicts = await self.judge(
                reviews,
                refs,
                source=DecisionSource.BUS,
                request_uid=hashlib.sha256(request.model_dump_json().encode()).hexdigest(),
                operation=request.operation,
                requested_by=request.requested_by,
            )
        except OpaError as exc:  # unreachable, or refusing what it was asked: the caller's failure policy decides
            raise EndpointError(503, f"the policy engine is unavailable: {exc}") from exc
        found = [
            PolicyViolation(
                policy=v.constraint.key,
                object=f"{ref.kind}/{ref.name}",
                message=v.message,
                enforcement_action=v.enforcement_action,
            )
            for ref, violations in zip(refs, verdicts, strict=True)
            for v in violations
        ]
        allowed = all(v.enforcement_action is not EnforcementAction.DENY for v in found)
        return PolicyCheckResponse(allowed=allowed, violations=found)


def _manifest_ref(index: int, manifest: dict[str, Any]) -> ManifestRef:
    metadata = manifest.get("metadata") or {}
    api_version, kind, name = manifest.get("apiVersion"), manifest.get("kind"), metadata.get("name")
    if not (isinstance(api_version, str) and api_version and isinstance(kind, str) and kind and name):
        raise EndpointError(400, f"manifests[{index}] needs apiVersion, kind and metadata.name")
    return ManifestRef(api_version=api_version, kind=kind, namespace=metadata.get("namespace"), name=str(name))


def _review(operation: Operation, manifest: dict[str, Any]) -> Review:
    # What the API server would send for it: applying creates or updates (judged as a CREATE, so that no
    # update-only exemption applies to what may be new), deleting reviews the object as the old object.
    if operation is Operation.DELETE:
        return review_admission_request({"operation": "DELETE", "oldObject": manifest})
    return review_object(manifest, operation="CREATE")


async def _wait_healthy(client: OpaClient, wait: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not await client.healthy():
        if loop.time() >= deadline:
            raise OpaUnavailable(f"OPA at {client.url} not healthy within {wait}s")
        await asyncio.sleep(0.2)
