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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ballast.bus import Bus, EndpointError
from ballast.events.contracts.common import ManifestRef
from ballast.events.contracts.policy import (
    ERROR_BUDGET_FREEZE,
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
from ballast.policy.exclusions import Exclusions
from ballast.policy_gate.cluster import Cluster
from ballast.policy_gate.decisions import DecisionLog
from ballast.policy_gate.freeze import (
    FREEZE_KIND,
    FreezeBook,
    FreezeVerdict,
    containers_run,
    judge_change,
    judge_webapp,
    rendered_deployments,
)
from ballast.policy_gate.violation_events import ViolationEvents

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judgement:
    """One object's verdict: what it violates, and the hotfix reason that overrode an error-budget freeze, if any."""

    violations: list[Violation] = field(default_factory=list)
    override_reason: str | None = None

    @property
    def denials(self) -> list[Violation]:
        """The violations that refuse it (a freeze a hotfix overrode does not)."""
        return [
            v
            for v in self.violations
            if v.enforcement_action is EnforcementAction.DENY
            and not (self.override_reason is not None and v.constraint.kind == FREEZE_KIND)
        ]

    @property
    def overridden(self) -> list[Violation]:
        if self.override_reason is None:
            return []
        return [v for v in self.violations if v.constraint.kind == FREEZE_KIND]


class Gate:
    def __init__(
        self,
        engine: PolicyEngine,
        decisions: DecisionLog,
        opa: ManagedOpa | None,
        freezes: FreezeBook | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        self.engine = engine
        self.decisions = decisions
        self.opa = opa
        self.freezes = freezes or FreezeBook()
        self.cluster = cluster
        self.sync_kinds: list[tuple[str, str]] = []  # what the policy files' Gatekeeper Configs sync
        self.file_exclusions = Exclusions()  # the namespaces the policy files' Gatekeeper Configs leave out
        self.exclusions = Exclusions()  # those and the cluster's Config's (`set_cluster_exclusions`)
        # Kubernetes Events for admission violations (BALLAST_EMIT_ADMISSION_EVENTS), as Gatekeeper writes them.
        self.violation_events: ViolationEvents | None = None
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
        cluster_view: Cluster | None = None,
        split_at: int | None = None,
    ) -> Gate:
        decisions = DecisionLog(bus.publisher, cluster)
        if opa_binary is not None:
            opa = ManagedOpa(opa_binary, lambda client: engine.restore(client))
            engine = PolicyEngine(opa.client, WORKLOAD_EXPANSIONS, split_at=split_at)
            await opa.start()
        else:
            assert opa_url is not None  # the settings require one of them
            opa = None
            engine = PolicyEngine(OpaClient(opa_url), WORKLOAD_EXPANSIONS, split_at=split_at)
            await _wait_healthy(engine.client, wait)
            await engine.restore(engine.client)
        gate = cls(engine, decisions, opa, FreezeBook(), cluster_view)
        if policy_dir is not None:
            policies = read_policies([policy_dir])
            gate.sync_kinds = list(policies.sync)
            gate.file_exclusions = gate.exclusions = Exclusions.of(policies.exclusions)
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

    def set_cluster_exclusions(self, exclusions: Exclusions) -> None:
        """What the cluster's Gatekeeper Config leaves out, beside the policy files' Configs (`ClusterConfig`)."""
        self.exclusions = Exclusions((*self.file_exclusions.entries, *exclusions.entries))

    def readiness(self) -> str | None:
        if self.opa is not None and not self.opa.ready:
            return "opa restarting"
        if not self.freezes.caught_up.is_set():
            return "error budget state not read yet"
        return self._external_problem

    def namespace(self, name: str | None) -> dict[str, Any] | None:
        return self.cluster.namespace(name) if self.cluster is not None else None

    async def _previous_images(self, namespace: str, webapp: str) -> set[str] | None:
        return await self.cluster.previous_images(namespace, webapp) if self.cluster is not None else None

    async def freeze_at_admission(self, review: Review) -> FreezeVerdict:
        """The error-budget policy on a WebApp created or updated through the API server (a deletion is no deploy)."""
        if review.request.get("operation") == "DELETE":
            return FreezeVerdict()
        return await judge_webapp(self.freezes, review.object, review.old_object, self._previous_images)

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
        freezes: Sequence[FreezeVerdict] | None = None,
        started: float | None = None,
        namespaces: Sequence[str | None] | None = None,
    ) -> list[Judgement]:
        """The one evaluation path of the bus check and the admission webhook: each review's violations (workloads
        also judged as the pods they create) with the error-budget policy's verdict (`freezes`, one per review),
        each object's verdict in the decision log. Raises `OpaError` when the engine cannot answer: the caller's
        failure policy decides then."""
        started = time.perf_counter() if started is None else started
        # Objects in the namespaces a Config leaves out of "webhook" are not judged by the constraints (the
        # error-budget policy still applies); `namespaces` names the request's namespace where an object has none.
        exclusions = self.exclusions
        left_out = [
            exclusions.excludes("webhook", review.subject, namespaces[index] if namespaces is not None else None)
            for index, review in enumerate(reviews)
        ]
        judged = [review for review, out in zip(reviews, left_out, strict=True) if not out]
        answers = iter(await self.engine.review(judged) if judged else [])
        found = [[] if out else next(answers) for out in left_out]
        verdicts = [
            Judgement([*violations, *freeze.violations], freeze.override_reason)
            for violations, freeze in zip(found, freezes or [FreezeVerdict()] * len(found), strict=True)
        ]
        latency_ms = (time.perf_counter() - started) * 1000
        at = datetime.now(UTC)
        if self.violation_events is not None and source is DecisionSource.ADMISSION:
            for ref, judgement in zip(refs, verdicts, strict=True):
                told = [
                    v
                    for v in judgement.violations  # a freeze a hotfix overrode refused nothing
                    if not (v.constraint.kind == ERROR_BUDGET_FREEZE and judgement.override_reason is not None)
                ]
                if told:
                    self.violation_events.admission(ref, operation, requested_by, told)
        self.decisions.record(
            lambda: [
                self.decisions.decision(
                    source=source,
                    request_uid=request_uid,
                    operation=operation,
                    obj=ref,
                    requested_by=requested_by,
                    violations=judgement.violations,
                    override_reason=judgement.override_reason,
                    latency_ms=latency_ms,
                    manifest=review.subject,  # what replay's shadow runs judge again under a candidate policy
                    at=at,
                )
                for ref, judgement, review in zip(refs, verdicts, reviews, strict=True)
            ]
        )
        return verdicts

    async def check(self, request: PolicyCheckRequest) -> PolicyCheckResponse:
        """`svc.policy.check`: each manifest judged; denied if any violation's action is deny (an error-budget freeze
        overridden by a hotfix aside)."""
        started = time.perf_counter()
        refs = [_manifest_ref(index, m) for index, m in enumerate(request.manifests)]
        reviews = [
            _review(request.operation, m, self.namespace((m.get("metadata") or {}).get("namespace") or None))
            for m in request.manifests
        ]
        try:
            freezes = await self.freeze_on_bus(request)
        except Exception as exc:  # a lookup the freeze needs failed: the caller's failure policy decides
            log.warning("error-budget policy not judged: %s", exc)
            raise EndpointError(503, f"the error-budget policy could not be judged: {exc}") from exc
        try:
            verdicts = await self.judge(
                reviews,
                refs,
                source=DecisionSource.BUS,
                request_uid=hashlib.sha256(request.model_dump_json().encode()).hexdigest(),
                operation=request.operation,
                requested_by=request.requested_by,
                freezes=freezes,
                started=started,
                namespaces=[request.namespace] * len(reviews),
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
            for ref, judgement in zip(refs, verdicts, strict=True)
            for v in judgement.violations
        ]
        return PolicyCheckResponse(allowed=not any(j.denials for j in verdicts), violations=found)

    async def freeze_on_bus(self, request: PolicyCheckRequest) -> list[FreezeVerdict]:
        """The error-budget policy on rendered manifests: a WebApp's Deployment that would run another image or
        environment than the live one is a deploy (a resync, a repair or a scale is not). Needs the cluster (the
        live Deployment, the WebApp's hotfix annotation); without it the bus check leaves the freeze to admission."""
        verdicts = [FreezeVerdict() for _ in request.manifests]
        if self.cluster is None or request.operation is Operation.DELETE:
            return verdicts
        namespace = request.namespace
        if not self.freezes.in_namespace(namespace):
            return verdicts
        positions = {id(m): i for i, m in enumerate(request.manifests)}
        for owner, rendered in rendered_deployments(request.manifests):
            webapp = await self.cluster.webapp(namespace, owner)
            if webapp is None:
                continue
            metadata = webapp.get("metadata") or {}
            freezes = self.freezes.for_webapp(namespace, owner, metadata.get("labels") or {})
            if not freezes:
                continue
            new_runs = containers_run(_pod_spec(rendered))
            live = await self.cluster.deployment(namespace, owner)
            old_runs = containers_run(_pod_spec(live)) if live is not None else None
            if old_runs == new_runs:
                continue
            image_only = old_runs is not None and [(n, e) for n, _, e in old_runs] == [(n, e) for n, _, e in new_runs]
            verdicts[positions[id(rendered)]] = await judge_change(
                freezes,
                namespace=namespace,
                name=owner,
                annotations=metadata.get("annotations") or {},
                new_images={str(image) for _, image, _ in new_runs},
                image_only=image_only,
                previous_images=self._previous_images,
            )
        return verdicts


def _pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return spec


def _manifest_ref(index: int, manifest: dict[str, Any]) -> ManifestRef:
    metadata = manifest.get("metadata") or {}
    api_version, kind, name = manifest.get("apiVersion"), manifest.get("kind"), metadata.get("name")
    if not (isinstance(api_version, str) and api_version and isinstance(kind, str) and kind and name):
        raise EndpointError(400, f"manifests[{index}] needs apiVersion, kind and metadata.name")
    return ManifestRef(api_version=api_version, kind=kind, namespace=metadata.get("namespace"), name=str(name))


def _review(operation: Operation, manifest: dict[str, Any], namespace: dict[str, Any] | None) -> Review:
    # What the API server would send for it: applying creates or updates (judged as a CREATE, so that no
    # update-only exemption applies to what may be new), deleting reviews the object as the old object.
    if operation is Operation.DELETE:
        return review_admission_request({"operation": "DELETE", "oldObject": manifest}, namespace=namespace)
    return review_object(manifest, operation="CREATE", namespace=namespace)


async def _wait_healthy(client: OpaClient, wait: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not await client.healthy():
        if loop.time() >= deadline:
            raise OpaUnavailable(f"OPA at {client.url} not healthy within {wait}s")
        await asyncio.sleep(0.2)
