"""Shadow runs against a real nats-server: the window copied server-side into SHADOW_<run>, a stricter policy judged
on the real OPA over recorded decisions, and alert backtesting of candidate SLOs over recorded facts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import NotFoundError

from ballast.bus import Bus
from ballast.events import new_event
from ballast.events.catalogue import K8S_EVENTS, PLATFORM_EVENTS
from ballast.events.contracts.common import ManifestRef, ObjectRef
from ballast.events.contracts.k8s import ObservedObject, k8s_event_type, k8s_subject
from ballast.events.contracts.policy import (
    ConstraintResult,
    Decision,
    DecisionSource,
    EnforcementAction,
    Operation,
    PolicyDecision,
    decision_event,
    policy_event_type,
    policy_subject,
)
from ballast.events.contracts.slo import (
    AlertState,
    BurnAlert,
    BurnTier,
    SloRef,
    WindowBurn,
    burn_event,
    slo_event_type,
    slo_subject,
)
from ballast.policy import PolicyEngine, load_policies, read_policies
from ballast.replay import shadowing
from ballast.replay.reading import read_selection
from ballast.replay.selection import Selection
from ballast.replay.shadow import Recorded, copy_window, original_sequence, remove, shadow_stream, shadow_subject
from ballast.replay.shadow_policy import constraint_results, verdict
from ballast.replay.shadow_slo import Candidate, Firing
from ballast.slo import (
    Alerting,
    AlertTier,
    RollingWindow,
    ServiceLevelObjective,
    WebAppAvailabilitySli,
    workbook_windows,
)

REQUIRED_LABELS = Path("/work/shared/conformance/gatekeeper-library/library/general/requiredlabels/template.yaml")


@pytest.fixture
async def streams(bus: Bus) -> Bus:
    await bus.ensure_streams()
    return bus


def _required_labels(name: str, label: str) -> str:
    return f"""apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sRequiredLabels
metadata:
  name: {name}
spec:
  match:
    kinds:
      - apiGroups: [""]
        kinds: ["Pod"]
  parameters:
    labels:
      - key: {label}
"""


def _policies(directory: Path, **constraints: str) -> Path:
    directory.mkdir()
    (directory / "template.yaml").write_text(REQUIRED_LABELS.read_text())
    for name, label in constraints.items():
        (directory / f"{name}.yaml").write_text(_required_labels(name.replace("_", "-"), label))
    return directory


def _pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"containers": [{"name": "web", "image": "registry.example.com/shop/web:1.2.3"}]},
    }


async def _load(engine: PolicyEngine, directory: Path) -> None:
    engine.clear_constraints()
    assert await load_policies(engine, read_policies([directory])) == []


@pytest.mark.parametrize("recorded_streams", [1, 2], ids=["one-stream-mirrored", "two-streams-sourced"])
async def test_a_window_copy_holds_what_the_filter_matched_from_the_start_with_original_sequences(
    streams: Bus, unique: Callable[[str], str], recorded_streams: int
) -> None:
    """One recorded stream is mirrored, several are sourced: either way the copy holds the messages the filter
    matched from the window's start (not before it, not another cluster's), under shadow.<run>., each telling its
    original sequence, and becomes a plain stream once the window is in (nothing newer flows in)."""
    js, cluster, run = streams.js, unique("cp"), unique("cw")
    facts, decisions = f"evt.k8s.{cluster}.>", f"evt.policy.{cluster}.>"
    originals: dict[str, list[tuple[int, bytes]]] = {facts: [], decisions: []}
    for i in range(8):
        for subject, wanted in (
            (f"evt.k8s.{cluster}.shop.Deployment.updated", facts),
            (f"evt.k8s.other{cluster}.shop.Deployment.updated", None),
            (f"evt.policy.{cluster}.shop.allowed", decisions),
        ):
            body = f"{subject}#{i}".encode()
            ack = await js.publish(subject, body, headers={"Nats-Msg-Id": unique(f"m{i}{subject}")})
            if wanted is not None:
                originals[wanted].append((ack.seq, body))
    start = originals[facts][3][0]  # the window starts at the fourth fact
    recorded = [Recorded(K8S_EVENTS.name, facts), Recorded(PLATFORM_EVENTS.name, decisions)][:recorded_streams]

    copy = await copy_window(js, run, recorded, from_seq=start)
    try:
        config = (await js.stream_info(shadow_stream(run))).config
        # The window is in: a plain stream from now on, nothing newer flows in.
        assert config.mirror is None
        assert not config.sources
        assert config.subjects == [f"shadow.{run}.>"]
        expected_total = 0
        for source in recorded:
            expected = [(seq, body) for seq, body in originals[source.subjects] if seq >= start]
            expected_total += len(expected)
            copied = [
                (original_sequence(stored.headers, stored.sequence), stored.data, stored.subject)
                async for stored in read_selection(
                    streams, shadow_stream(run), Selection(subjects=(shadow_subject(run, source.subjects),))
                )
            ]
            assert [(seq, body) for seq, body, _ in copied] == expected
            assert all(subject.startswith(f"shadow.{run}.{source.subjects[:-1]}") for _, _, subject in copied)
        assert copy.copied == expected_total
    finally:
        await remove(js, run)


async def test_a_stricter_policy_reports_exactly_the_decisions_it_changes(
    streams: Bus, policy_engine: PolicyEngine, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    """Recorded under must-have-team + must-have-env; the candidate keeps team, drops env and adds owner."""
    cluster = unique("pol")
    await _load(policy_engine, _policies(tmp_path / "recorded", must_have_team="team", must_have_env="env"))
    pods = {
        "all-labels": {"team": "a", "env": "prod", "owner": "ann"},  # allowed, allowed
        "no-owner": {"team": "a", "env": "prod"},  # allowed -> denied (+owner)
        "no-env": {"team": "a", "owner": "ann"},  # denied -> allowed (-env)
        "no-labels": {},  # denied -> denied (+owner, -env)
        "unrecorded": {"team": "a", "env": "prod"},  # recorded without the object: not judged again
    }
    verdicts = await policy_engine.evaluate([_pod(n, labels) for n, labels in pods.items()], operation="CREATE")
    events = []
    for (name, labels), violations in zip(pods.items(), verdicts, strict=True):
        results = constraint_results(violations)
        decision = PolicyDecision(
            cluster=cluster,
            source=DecisionSource.ADMISSION,
            request_uid=str(uuid.uuid4()),
            operation=Operation.CREATE,
            object=ManifestRef(api_version="v1", kind="Pod", namespace="shop", name=name),
            manifest=None if name == "unrecorded" else _pod(name, labels),
            requested_by="ann",
            decision=verdict(results, None),
            constraints=results,
            latency_ms=1.0,
            at=datetime.now(UTC),
        )
        event = new_event(
            policy_event_type(decision_event(decision.decision)),
            f"/clusters/{cluster}/policy-gate",
            decision,
            subject=f"Pod/shop/{name}",
            event_id=f"admission:{decision.request_uid}:Pod/shop/{name}",
        )
        events.append((policy_subject(cluster, "shop", decision_event(decision.decision)), event))
    await streams.publisher.publish_all(events)
    assert [e.data.decision for _, e in events] == [
        Decision.ALLOWED,
        Decision.ALLOWED,
        Decision.DENIED,
        Decision.DENIED,
        Decision.ALLOWED,
    ]

    await _load(policy_engine, _policies(tmp_path / "candidate", must_have_team="team", must_have_owner="owner"))
    run = unique("sp")
    copy, diff = await shadowing.policy(streams, policy_engine, run, Selection(), cluster=cluster)
    assert copy.copied == 5
    with pytest.raises(NotFoundError):
        await streams.js.stream_info(shadow_stream(run))  # removed after the run

    assert (diff.decisions, len(diff.not_recorded), diff.unchanged) == (5, 1, 1)
    changes = {
        c.object: (c.recorded, c.candidate, sorted(r.name for r in c.added), sorted(r.name for r in c.removed))
        for c in diff.changed
    }
    assert changes == {
        "Pod shop/no-owner": (Decision.ALLOWED, Decision.DENIED, ["must-have-owner"], []),
        "Pod shop/no-env": (Decision.DENIED, Decision.ALLOWED, [], ["must-have-env"]),
        "Pod shop/no-labels": (Decision.DENIED, Decision.DENIED, ["must-have-owner"], ["must-have-env"]),
    }
    report = diff.as_json()
    assert report["by_change"] == {"allowed->denied": 1, "denied->allowed": 1, "denied->denied": 1}
    assert any("Pod shop/no-owner (create by ann): allowed -> denied" in line for line in diff.text())


def _availability(cluster: str, at: datetime, ready: int, version: int) -> tuple[str, Any]:
    data = ObservedObject(
        cluster=cluster,
        object=ObjectRef(api_version="ballast.dev/v1", kind="WebApp", namespace="shop", name="web", uid="uid-web"),
        resource_version=str(version),
        replicas=3,
        ready_replicas=ready,
    )
    event = new_event(
        k8s_event_type("WebApp", "updated"),
        f"/clusters/{cluster}/reconciler",
        data,
        subject="shop/web",
        event_id=f"uid-web:{version}:updated",
        time=at,
    )
    return k8s_subject(cluster, "shop", "WebApp", "updated"), event


def _alert(cluster: str, tier: BurnTier, state: AlertState, at: datetime) -> tuple[str, Any]:
    window = WindowBurn(
        short_window=timedelta(minutes=5),
        long_window=timedelta(hours=1),
        factor=14.4,
        short_burn_rate=20.0,
        long_burn_rate=15.0,
    )
    data = BurnAlert(
        cluster=cluster,
        slo=SloRef(namespace="shop", name="availability", service="web"),
        tier=tier,
        state=state,
        since=at,
        objective=99.9,
        period=timedelta(days=30),
        windows=(window,),
        budget_remaining=0.9,
        time_to_exhaustion=None,
    )
    event_type = burn_event(tier, state)
    event = new_event(
        slo_event_type(event_type),
        f"/clusters/{cluster}/slo-engine",
        data,
        subject="shop/availability",
        event_id=f"shop/availability:{tier}:{state}:{at.isoformat()}",
        time=at,
    )
    return slo_subject(cluster, "shop", event_type), event


def _candidate(*, ticket: bool) -> Candidate:
    slo = ServiceLevelObjective(
        service="web",
        name="availability",
        objective=99.9,
        window=RollingWindow(length=timedelta(days=30)),
        sli=WebAppAvailabilitySli(namespace="shop", webapp="web"),
        alerting=Alerting(name="WebAvailability", page=AlertTier(enabled=True), ticket=AlertTier(enabled=ticket)),
    )
    return Candidate(slo, "shop", "shadow", workbook_windows(timedelta(days=30)))


async def test_alert_backtesting_reports_what_a_candidate_slo_would_fire_or_miss(
    streams: Bus, unique: Callable[[str], str]
) -> None:
    """The WebApp is down from +10m to +40m of a 3-hour window. With 99.9% and the Workbook's 30-day windows the page
    tier fires at +11m (the first step with both 5m and 1h burning over 14.4x) and resolves at +70m (when the 30m
    window is clean too); the ticket tier fires at +11m and still fires at +3h. Recorded: page +11m..+70m, ticket
    +20m..+90m."""
    cluster = unique("slo")
    t0 = (datetime.now(UTC) - timedelta(hours=4)).replace(second=0, microsecond=0)

    def at(minutes: int) -> datetime:
        return t0 + timedelta(minutes=minutes)

    await streams.publisher.publish_all(
        [
            _availability(cluster, at(0), 3, 1),
            _availability(cluster, at(10), 1, 2),
            _availability(cluster, at(40), 3, 3),
            _alert(cluster, BurnTier.PAGE, AlertState.FIRING, at(11)),
            _alert(cluster, BurnTier.TICKET, AlertState.FIRING, at(20)),
            _alert(cluster, BurnTier.PAGE, AlertState.RESOLVED, at(70)),
            _alert(cluster, BurnTier.TICKET, AlertState.RESOLVED, at(90)),
        ]
    )
    window = Selection(until=at(180))

    run = unique("ss")
    copy, diff = await shadowing.slo(streams, _candidate(ticket=False), run, window, cluster=cluster, keep=True)
    assert copy.copied == 7
    await streams.js.stream_info(shadow_stream(run))  # kept
    await streams.js.delete_stream(shadow_stream(run))
    assert diff.facts == 3
    assert diff.candidate == [Firing(BurnTier.PAGE, at(11), at(70))]
    assert [(m.recorded.tier, m.start_shift) for m in diff.same] == [(BurnTier.PAGE, timedelta(0))]
    assert diff.would_miss == [Firing(BurnTier.TICKET, at(20), at(90))]
    assert (diff.would_fire, diff.shifted) == ([], [])

    copy, diff = await shadowing.slo(streams, _candidate(ticket=True), unique("st"), window, cluster=cluster)
    assert diff.candidate == [Firing(BurnTier.PAGE, at(11), at(70)), Firing(BurnTier.TICKET, at(11), None)]
    assert [(m.recorded.tier, m.start_shift) for m in diff.shifted] == [(BurnTier.TICKET, -timedelta(minutes=9))]
    assert (diff.would_fire, diff.would_miss) == ([], [])
    report = diff.as_json()
    assert report["shifted"][0]["start_shift_seconds"] == -540.0
    assert any("ticket: fired 9m earlier" in line for line in diff.text())


def test_a_hotfix_reason_overrides_the_budget_freeze_only() -> None:
    def denial(kind: str) -> ConstraintResult:
        return ConstraintResult(kind=kind, name="n", enforcement_action=EnforcementAction.DENY, message="no")

    freeze, other = denial("ErrorBudgetFreeze"), denial("WebAppOwner")
    assert verdict((freeze,), "INC-1: roll forward") is Decision.ALLOWED
    assert verdict((freeze,), None) is Decision.DENIED
    assert verdict((freeze, other), "INC-1: roll forward") is Decision.DENIED
