"""The catalogue is the single source of subjects, streams and types; the AsyncAPI document is generated from it.

Every area's contract is checked here against real encoded messages: each payload model survives the CloudEvents
codec, each declared subject lands in a stream, and a producer's mistake is refused naming the field.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from pydantic import BaseModel

from ballast.events import DecodeFailure, EventDecodeError, asyncapi, decode, encode, new_event
from ballast.events.catalogue import CATALOGUE, REGISTRY
from ballast.events.contracts import chaos, incident, k8s, policy, reconcile, replay, slo
from ballast.events.contracts.common import ManifestRef, ObjectRef, platform_subject
from ballast.events.registry import EventSpec

ASYNCAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
TOKEN = re.compile(r"^[A-Za-z0-9_-]+$|^\{\w+\}$")
AT = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
AREAS: dict[str, tuple[EventSpec, ...]] = {
    "k8s": k8s.K8S_EVENT_TYPES,
    "reconcile": reconcile.RECONCILE_EVENT_TYPES,
    "slo": slo.SLO_EVENT_TYPES,
    "policy": policy.POLICY_EVENT_TYPES,
    "chaos": chaos.CHAOS_EVENT_TYPES,
    "incident": incident.INCIDENT_EVENT_TYPES,
    "replay": replay.REPLAY_EVENT_TYPES,
}

# --- one valid payload of every model, as its producer would publish it ---------------------------------------------

POD = ObjectRef(api_version="v1", kind="Pod", namespace="shop", name="web-7d9f-x2k", uid="uid-pod")
DEPLOYMENT = ObjectRef(api_version="apps/v1", kind="Deployment", namespace="shop", name="web", uid="uid-dep")
WEBAPP = ObjectRef(api_version="platform.example.com/v1", kind="WebApp", namespace="shop", name="web", uid="uid-wa")
SLO = slo.SloRef(namespace="shop", name="web-availability", service="web")
PAGE_WINDOWS = (
    slo.WindowBurn(
        short_window=timedelta(minutes=5),
        long_window=timedelta(hours=1),
        factor=14.4,
        short_burn_rate=100.0,
        long_burn_rate=31.5,
    ),
    slo.WindowBurn(
        short_window=timedelta(minutes=30),
        long_window=timedelta(hours=6),
        factor=6,
        short_burn_rate=40.0,
        long_burn_rate=5.2,
    ),
)
REPOS = policy.ConstraintResult(
    kind="K8sAllowedRepos",
    name="prod-repos",
    enforcement_action=policy.EnforcementAction.DENY,
    message="container <web> has an invalid image repo <docker.io/web:1>",
)
EXPERIMENT = chaos.ExperimentRef(namespace="shop", name="web-pod-delete")
RUN: dict[str, Any] = {
    "cluster": "prod",
    "experiment": EXPERIMENT,
    "run_id": "uid-exp-20261130T0915Z",
    "target": chaos.ChaosTarget(namespace="shop", webapp="web"),
    "fault": chaos.FaultKind.POD_DELETE,
    "at": AT,
}
INCIDENT: dict[str, Any] = {
    "cluster": "prod",
    "incident_id": "INC-42",
    "service": "web",
    "namespace": "shop",
    "severity": incident.Severity.CRITICAL,
}
BUDGET: dict[str, Any] = {
    "cluster": "prod",
    "slo": SLO,
    "objective": 99.9,
    "period": timedelta(days=30),
    "freeze_deploys": True,
    "at": AT,
}
EXAMPLES: dict[type[BaseModel], BaseModel] = {
    k8s.ObservedObject: k8s.ObservedObject(
        cluster="prod", object=DEPLOYMENT, resource_version="41", owner=WEBAPP, replicas=3, ready_replicas=2
    ),
    k8s.PodIssue: k8s.PodIssue(
        cluster="prod",
        pod=POD,
        owner=DEPLOYMENT,
        problem=k8s.PodProblem.CRASH_LOOP,
        reason="CrashLoopBackOff",
        restart_count=4,
        resource_version="77",
    ),
    reconcile.ReconcileOutcome: reconcile.ReconcileOutcome(
        cluster="prod", webapp=WEBAPP, generation=3, observed_generation=3, repaired=["Service/web"]
    ),
    slo.BurnAlert: slo.BurnAlert(
        cluster="prod",
        slo=SLO,
        tier=slo.BurnTier.PAGE,
        state=slo.AlertState.FIRING,
        since=AT,
        objective=99.9,
        period=timedelta(days=30),
        windows=PAGE_WINDOWS,
        budget_remaining=0.62,
        time_to_exhaustion=timedelta(hours=14, minutes=10),
    ),
    slo.BudgetExhausted: slo.BudgetExhausted(**BUDGET, budget_remaining=-0.01),
    slo.BudgetRecovered: slo.BudgetRecovered(**BUDGET, budget_remaining=0.05),
    slo.SloStatusRequest: slo.SloStatusRequest(namespace="shop", burning_only=True),
    slo.SloStatusResponse: slo.SloStatusResponse(
        slos=(
            slo.SloState(
                slo=SLO,
                objective=99.9,
                period=timedelta(days=30),
                budget_remaining=0.62,
                burn_rates=(slo.WindowRate(window=timedelta(hours=1), burn_rate=31.5),),
                firing=(slo.BurnTier.PAGE,),
                budget_exhausted=False,
                time_to_exhaustion=timedelta(hours=14),
                evaluated_at=AT,
            ),
        )
    ),
    policy.PolicyDecision: policy.PolicyDecision(
        cluster="prod",
        source=policy.DecisionSource.ADMISSION,
        request_uid="705ab4f5-6393-11e8-b7cc-42010a800002",
        operation=policy.Operation.CREATE,
        object=ManifestRef(api_version="apps/v1", kind="Deployment", namespace="shop", name="web"),
        requested_by="alice@example.com",
        decision=policy.Decision.DENIED,
        constraints=(REPOS,),
        latency_ms=1.7,
        at=AT,
    ),
    policy.AuditViolation: policy.AuditViolation(
        cluster="prod",
        trigger=policy.AuditTrigger.OUTAGE_GAP,
        audit_started_at=AT,
        constraint=REPOS,
        object=DEPLOYMENT,
        resource_version="41",
    ),
    policy.PolicyCheckRequest: policy.PolicyCheckRequest(
        cluster="prod", namespace="shop", manifests=[{"kind": "Deployment"}], requested_by="reconciler"
    ),
    policy.PolicyCheckResponse: policy.PolicyCheckResponse(
        allowed=False, violations=[policy.PolicyViolation(policy="prod-repos", object="Deployment/web", message="no")]
    ),
    chaos.ExperimentScheduled: chaos.ExperimentScheduled(**RUN, due_at=AT, trigger=chaos.RunTrigger.SCHEDULE),
    chaos.ExperimentStarted: chaos.ExperimentStarted(**RUN, budget_allowance=0.1),
    chaos.FaultInjected: chaos.FaultInjected(**RUN, sequence=1, affected=(POD,), expires_at=AT + timedelta(minutes=10)),
    chaos.SteadyStateChecked: chaos.SteadyStateChecked(
        **RUN,
        check="ready",
        check_kind=chaos.CheckKind.READY_REPLICAS,
        stage=chaos.CheckStage.DURING,
        passed=True,
        observed="2 ready >= 2",
    ),
    chaos.ExperimentAborted: chaos.ExperimentAborted(
        **RUN,
        reason=chaos.AbortReason.BURN_ALERT,
        detail="page tier of shop/web-availability fired",
        faults_reverted=True,
        budget_consumed=0.004,
    ),
    chaos.ExperimentCompleted: chaos.ExperimentCompleted(
        **RUN, verdict=chaos.Verdict.PASS, injections=3, recovery_seconds=4.2, budget_consumed=0.001
    ),
    chaos.RunExperiment: chaos.RunExperiment(request_id="cli-1", requested_by="alice", experiment=EXPERIMENT),
    chaos.StopExperiments: chaos.StopExperiments(request_id="cli-2", requested_by="alice", reason="game day over"),
    chaos.PauseChaos: chaos.PauseChaos(
        request_id="INC-42:pause",
        requested_by="incident-bot",
        namespace="shop",
        service="web",
        paused=True,
        reason="INC-42",
    ),
    incident.IncidentTransition: incident.IncidentTransition(
        **INCIDENT,
        title="web availability burning 31x",
        status=incident.IncidentStatus.ACKNOWLEDGED,
        source=incident.IncidentSource.SLO,
        fingerprint="shop/web-availability:page",
        commander="bob",
        changed_by="bob",
        opened_at=AT,
        acknowledged_at=AT + timedelta(minutes=3),
    ),
    incident.IncidentUpdated: incident.IncidentUpdated(
        **INCIDENT, commander="carol", roles={incident.IncidentRole.SCRIBE: "dave"}, changed_by="bob", at=AT
    ),
    incident.IncidentQuery: incident.IncidentQuery(service="web", include_resolved=True),
    incident.IncidentRef: incident.IncidentRef(incident_id="INC-42"),
    incident.IncidentAction: incident.IncidentAction(incident_id="INC-42", by="bob"),
    incident.RoleAssignment: incident.RoleAssignment(
        incident_id="INC-42", by="bob", role=incident.IncidentRole.COMMUNICATIONS, to="erin"
    ),
    incident.PostmortemRequest: incident.PostmortemRequest(incident_id="INC-42", format=incident.PostmortemFormat.JSON),
    incident.PostmortemDocument: incident.PostmortemDocument(
        incident_id="INC-42",
        postmortem_id="INC-42-postmortem",
        format=incident.PostmortemFormat.MARKDOWN,
        content="# Postmortem: INC-42\n",
        digest="sha256:" + "0" * 64,
        location="postmortems/INC-42.md",
        events_read=12,
        posted_to="C0INC42",
    ),
    incident.IncidentEscalated: incident.IncidentEscalated(
        **INCIDENT, level=1, notified=("team-web-lead",), unacknowledged_for=timedelta(minutes=5), at=AT
    ),
    incident.PostmortemPublished: incident.PostmortemPublished(
        cluster="prod",
        incident_id="INC-42",
        postmortem_id="PM-INC-42",
        format=incident.PostmortemFormat.MARKDOWN,
        location="s3://postmortems/INC-42.md",
        digest="sha256:" + "ab" * 32,
        generated_at=AT,
    ),
}
EXAMPLES[replay.ReplayRun] = replay.ReplayRun(
    run="r1a2b3c4",
    operation=replay.ReplayOperation.REPLAY,
    source="stream K8S_EVENTS (subjects evt.k8s.prod.>)",
    target="the LIVE subjects: the services consume them again",
    live=True,
    actor="alice@laptop",
    planned=1200,
    stored=800,
    duplicates=3,
    resume="--from-seq 804 --run r1a2b3c4",
    started_at=AT,
    ended_at=AT + timedelta(minutes=2),
)
EXAMPLES[incident.IncidentList] = incident.IncidentList(
    incidents=(cast(incident.IncidentTransition, EXAMPLES[incident.IncidentTransition]),)
)


def _event(spec: EventSpec) -> tuple[dict[str, str], bytes]:
    return encode(new_event(spec.ce_type, "/clusters/prod/test", EXAMPLES[spec.model], event_id=f"{spec.ce_type}:1"))


# --- the document ----------------------------------------------------------------------------------------------------


def test_committed_asyncapi_document_is_current() -> None:
    assert ASYNCAPI_PATH.read_text() == asyncapi.render(), (
        "docs/asyncapi.yaml is stale: run `python -m ballast.events.asyncapi > docs/asyncapi.yaml`"
    )


def test_asyncapi_document_is_3_0_and_references_resolve() -> None:
    document = yaml.safe_load(asyncapi.render())
    assert document["asyncapi"] == "3.0.0"
    text = asyncapi.render()
    for ref in set(re.findall(r"\$ref: '#/([^']+)'", text)):
        node = document
        for part in ref.split("/"):
            assert part in node, f"dangling $ref #/{ref}"
            node = node[part]
    assert len(document["components"]["messages"]) >= len(REGISTRY)
    assert document["channels"]["cmd_chaos_stop"]["address"] == "cmd.chaos.stop"
    assert "publish_io_ballast_cmd_chaos_stop_v1" in document["operations"]


def test_every_schema_and_field_is_described() -> None:
    schemas = yaml.safe_load(asyncapi.render())["components"]["schemas"]
    for name, schema in schemas.items():
        if schema.get("type") == "object":
            assert schema.get("description"), f"{name} has no docstring"
        for field, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field} has no description"


# --- declarations ----------------------------------------------------------------------------------------------------


def test_every_areas_types_are_registered_once() -> None:
    declared = [spec for specs in AREAS.values() for spec in specs]
    assert len({spec.ce_type for spec in declared}) == len(declared)
    assert len(REGISTRY) == len(declared) + len(chaos.CHAOS_COMMANDS)
    for spec in (*declared, *chaos.CHAOS_COMMANDS):
        assert REGISTRY[spec.ce_type] is spec
    for area, specs in AREAS.items():
        assert specs, area
        assert all(spec.subject.startswith(f"evt.{area}.{{cluster}}.{{namespace}}.") for spec in specs), area


def test_every_event_type_is_versioned_and_lands_in_a_stream() -> None:
    for event_type in CATALOGUE.event_types:
        assert re.fullmatch(r"io\.[a-z0-9_.]+\.v\d+", event_type.ce_type), event_type.ce_type
        tokens = event_type.subject.split(".")
        assert all(TOKEN.match(t) for t in tokens), event_type.subject
        address = event_type.subject.format(cluster="prod", namespace="shop")
        assert CATALOGUE.stream_for(address).name in {"K8S_EVENTS", "PLATFORM_EVENTS"}


def test_commands_are_cloudevents_on_the_commands_stream() -> None:
    assert {spec.subject for spec in CATALOGUE.commands} == {"cmd.chaos.run", "cmd.chaos.stop", "cmd.chaos.pause"}
    for spec in CATALOGUE.commands:
        assert re.fullmatch(r"io\.ballast\.cmd\.[a-z_.]+\.v\d+", spec.ce_type), spec.ce_type
        assert CATALOGUE.stream_for(spec.subject).name == "COMMANDS"
    assert {endpoint.subject for endpoint in CATALOGUE.endpoints} == {
        "svc.policy.check",
        "svc.slo.status",
        *(f"svc.incident.{name}" for name in ("list", "show", "ack", "mitigate", "resolve", "role", "postmortem")),
    }


def test_subject_builders_follow_the_design() -> None:
    assert k8s.k8s_subject("prod", "shop", "Deployment", "updated") == "evt.k8s.prod.shop.Deployment.updated"
    assert k8s.k8s_subject("prod", None, "Tenant", "created") == "evt.k8s.prod._.Tenant.created"
    assert platform_subject("reconcile", "prod", "shop", "degraded") == "evt.reconcile.prod.shop.degraded"
    assert CATALOGUE.stream_for("dlq.reconciler-workloads").name == "DEAD_LETTERS"
    with pytest.raises(LookupError):
        CATALOGUE.stream_for("elsewhere.prod.shop")


def _published(ce_type: str, subject: str, model: type[BaseModel]) -> None:
    """A producer using an area's helpers publishes a registered type, with its model, where the catalogue says."""
    spec = REGISTRY[ce_type]
    assert spec.model is model
    assert subject == spec.subject.format(cluster="prod", namespace="shop")


def test_reconcile_and_k8s_helpers_name_the_declared_types_and_subjects() -> None:
    for outcome in reconcile.WebAppOutcome:
        _published(
            reconcile.reconcile_event_type(outcome),
            platform_subject("reconcile", "prod", "shop", outcome),
            reconcile.ReconcileOutcome,
        )
    for problem in k8s.PodProblem:
        _published(k8s.pod_issue_event_type(problem), k8s.k8s_subject("prod", "shop", "Pod", problem), k8s.PodIssue)


def test_slo_helpers_name_the_declared_types_and_subjects() -> None:
    for tier in slo.BurnTier:
        for state in slo.AlertState:
            burn = slo.burn_event(tier, state)
            _published(slo.slo_event_type(burn), slo.slo_subject("prod", "shop", burn), slo.BurnAlert)
    for budget, model in ((slo.SloEvent.BUDGET_EXHAUSTED, slo.BudgetExhausted),
                          (slo.SloEvent.BUDGET_RECOVERED, slo.BudgetRecovered)):  # fmt: skip
        _published(slo.slo_event_type(budget), slo.slo_subject("prod", "shop", budget), model)


def test_policy_and_incident_helpers_name_the_declared_types_and_subjects() -> None:
    for decision in policy.Decision:
        logged = policy.decision_event(decision)
        _published(
            policy.policy_event_type(logged), policy.policy_subject("prod", "shop", logged), policy.PolicyDecision
        )
    for status in incident.IncidentStatus:
        entered = incident.transition_event(status)
        _published(
            incident.incident_event_type(entered),
            incident.incident_subject("prod", "shop", entered),
            incident.IncidentTransition,
        )


def test_chaos_helpers_name_the_declared_types_and_subjects() -> None:
    for step in chaos.ChaosEvent:
        spec = REGISTRY[chaos.chaos_event_type(step)]
        assert chaos.chaos_subject("prod", "shop", step) == spec.subject.format(cluster="prod", namespace="shop")
    for command in chaos.ChaosCommand:
        assert REGISTRY[chaos.chaos_command_type(command)].subject == chaos.chaos_command_subject(command)


def test_streams_do_not_overlap() -> None:
    probes = ["evt.k8s.a.b.Pod.created", "evt.reconcile.a.b.reconciled", "evt.slo.a.b.page_burn_firing", "cmd.x.y"]
    for subject in [*probes, "dlq.x"]:
        owners = [s.name for s in CATALOGUE.streams if any(_covers(p, subject) for p in s.subjects)]
        assert len(owners) == 1, (subject, owners)


def _covers(pattern: str, subject: str) -> bool:
    return pattern.endswith(".>") and subject.startswith(pattern[:-1])


# --- payloads on the wire --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [*REGISTRY], ids=lambda spec: spec.ce_type)
def test_every_payload_round_trips_through_the_codec(spec: EventSpec) -> None:
    headers, body = _event(spec)
    decoded = decode(headers, body, REGISTRY)
    assert decoded.type == spec.ce_type
    assert decoded.data == EXAMPLES[spec.model]
    assert type(decoded.data) is spec.model


def test_endpoint_messages_round_trip() -> None:
    for endpoint in CATALOGUE.endpoints:
        for model in (endpoint.request, endpoint.response):
            example = EXAMPLES[model]
            assert model.model_validate_json(example.model_dump_json()) == example


def test_payloads_are_frozen_and_refuse_unknown_fields() -> None:
    models = {spec.model for spec in REGISTRY} | {m for e in CATALOGUE.endpoints for m in (e.request, e.response)}
    for model in models:
        assert model.model_config.get("extra") == "forbid", model.__name__
        assert model.model_config.get("frozen") is True, model.__name__


def _refused(ce_type: str, change: dict[str, Any]) -> EventDecodeError:
    spec = REGISTRY[ce_type]
    headers, body = _event(spec)
    data = _merge(json.loads(body), change)
    with pytest.raises(EventDecodeError) as caught:
        decode(headers, json.dumps(data).encode(), REGISTRY)
    assert caught.value.failure is DecodeFailure.SCHEMA_VIOLATION
    return caught.value


def _merge(data: Any, change: Any) -> Any:
    """`change` laid over `data`: dicts merge, a list's items merge by position, None removes the key."""
    if isinstance(change, dict) and isinstance(data, dict):
        merged = {**data}
        for key, value in change.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = _merge(data.get(key), value)
        return merged
    if isinstance(change, list) and isinstance(data, list):
        return [_merge(item, patch) for item, patch in zip(data, change, strict=False)] + data[len(change) :]
    return change


@pytest.mark.parametrize(
    ("ce_type", "change", "named"),
    [
        ("io.ballast.webapp.reconciled.v1", {"generation": "third"}, "generation"),
        ("io.ballast.slo.page_burn_firing.v1", {"windows": [{"factor": -14.4}]}, "windows.0.factor"),
        ("io.ballast.slo.ticket_burn_resolved.v1", {"since": "2026-11-30T09:15:00"}, "since"),
        ("io.ballast.slo.budget_exhausted.v1", {"budget_remaining": 0.3}, "budget_remaining 0.3 is above"),
        ("io.ballast.policy.denied.v1", {"decision": "maybe"}, "decision"),
        ("io.ballast.policy.allowed.v1", {"decision": "allowed"}, "contradicts the constraints"),
        ("io.ballast.policy.audit_violation.v1", {"object": {"uid": None}}, "object.uid"),
        ("io.ballast.chaos.aborted.v1", {"reason": "bored"}, "reason"),
        ("io.ballast.chaos.completed.v1", {"recovery_seconds": -1}, "recovery_seconds"),
        ("io.ballast.chaos.started.v1", {"target": {"selector": {"app": "web"}}}, "exactly one of webapp and selector"),
        ("io.ballast.cmd.chaos.stop.v1", {"all": True}, "all"),
        ("io.ballast.incident.resolved.v1", {"status": "resolved"}, "needs resolved_at"),
        ("io.ballast.incident.escalated.v1", {"level": 0}, "level"),
        ("io.ballast.incident.updated.v1", {"roles": {"commander": "carol"}}, "the commander is not one of `roles`"),
        ("io.ballast.incident.updated.v1", {"roles": {"scribe": ""}}, "roles.scribe"),
        ("io.ballast.incident.postmortem_published.v1", {"digest": "md5:abc"}, "digest"),
    ],
)
def test_an_invalid_payload_is_refused_naming_the_field(ce_type: str, change: dict[str, Any], named: str) -> None:
    error = _refused(ce_type, change)
    assert named in error.detail
    assert REGISTRY[ce_type].model.__name__ in error.detail


def test_a_policy_decision_follows_its_constraints() -> None:
    denied = EXAMPLES[policy.PolicyDecision]
    assert isinstance(denied, policy.PolicyDecision)
    freeze = policy.ConstraintResult(
        kind="ErrorBudgetFreeze",
        name="shop/web-availability",
        enforcement_action=policy.EnforcementAction.DENY,
        message="error budget exhausted",
    )
    warn = REPOS.model_copy(update={"enforcement_action": policy.EnforcementAction.WARN})
    dryrun = REPOS.model_copy(update={"enforcement_action": policy.EnforcementAction.DRYRUN})
    fields = denied.model_dump(exclude={"decision", "constraints", "override_reason"})

    def decide(*constraints: policy.ConstraintResult, override: str | None = None) -> policy.Decision:
        for decision in policy.Decision:
            try:
                policy.PolicyDecision(**fields, decision=decision, constraints=constraints, override_reason=override)
            except ValueError:
                continue
            return decision
        raise AssertionError("no decision fits")

    assert decide() is policy.Decision.ALLOWED
    assert decide(dryrun) is policy.Decision.ALLOWED
    assert decide(warn, dryrun) is policy.Decision.WARNED
    assert decide(REPOS, warn) is policy.Decision.DENIED
    assert decide(freeze, override="hotfix for INC-42") is policy.Decision.ALLOWED
    assert decide(freeze, warn, override="hotfix for INC-42") is policy.Decision.WARNED


def test_an_slo_status_request_by_name_needs_the_namespace() -> None:
    with pytest.raises(ValueError, match="name needs a namespace"):
        slo.SloStatusRequest(name="web-availability")
