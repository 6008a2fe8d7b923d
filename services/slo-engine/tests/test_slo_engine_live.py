"""The slo-engine as it runs, against a real nats-server and a real control plane.

- A WebApp whose pods never get Ready (the reconciler running too) gets its default SLO; its budget falls and the
  page tier fires once on the bus; a WebApp annotated off gets none, and loses it when annotated later.
- A restart mid-stream keeps the budget: the history before it is only in KV (its facts were acked), and the budget
  after it counts the whole of it, with the page tier still firing since the same moment and told once.
- Two replicas: the leader killed, the other one continues with the same budget and tells nothing again.
- A malformed fact and a fact dated in the future go to the dead-letter subject with the reason; the next is kept.
- Down time during a recorded chaos window is attributed to the run, and an SLO excluding chaos burn keeps it out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry
from slo_fixtures import slo_api, start_engine  # noqa: F401  (fixture)

from ballast.bus import LAST, Bus, CaughtUp, KeyValue
from ballast.bus.consumer import DLQ_REASON
from ballast.cli.main import main
from ballast.events.catalogue import DEAD_LETTERS, PLATFORM_EVENTS, SLO_ENGINE_FACTS, SLO_SLI
from ballast.events.contracts.chaos import (
    ChaosEvent,
    ChaosTarget,
    ExperimentCompleted,
    ExperimentRef,
    ExperimentStarted,
    FaultKind,
    Verdict,
    chaos_event_type,
    chaos_subject,
)
from ballast.events.contracts.common import ObjectRef
from ballast.events.contracts.k8s import ObservedObject, k8s_event_type, k8s_subject
from ballast.events.contracts.slo import (
    SLO_STATUS,
    BudgetCause,
    BurnTier,
    SloEvent,
    SloState,
    SloStatusRequest,
    SloStatusResponse,
    slo_event_type,
)
from ballast.events.envelope import new_event
from ballast.kube.apply import get
from ballast.kube.resource import EVENT, LEASE, WEBAPP
from ballast.kube.rest import send_json
from ballast.slo.crd import GROUP, SLOS, VERSION
from ballast.slo_engine.availability import WebAppRecord
from ballast.slo_engine.causes import CauseWindow
from ballast.slo_engine.controller import SLO
from ballast.slo_engine.defaults import DEFAULT_SLO_ANNOTATION
from ballast.slo_engine.store import webapp_key
from ballast.telemetry.metrics import BusMetrics
from ballast.testing import NatsServer, ServiceProcess, eventually

pytestmark = pytest.mark.cluster

CLUSTER = "local"
SOURCE = "/clusters/local/test-reconciler"
MINUTE = timedelta(minutes=1)
LEASE_NAME = "ballast-slo-engine"
# 99.9 %, as the model computes it: a page needs an error ratio over 14.4 (or 6) times it, which a 90 % SLO's budget
# can never see (no window is more than 100 % down).
PAGING_BUDGET = (100 - 99.9) / 100


@pytest.fixture
async def fresh_bus(fresh_nats_server: NatsServer) -> AsyncIterator[Bus]:
    bus = await Bus.connect(fresh_nats_server.url, name="test", metrics=BusMetrics(CollectorRegistry()))
    await bus.ensure_streams()
    await bus.ensure_buckets()
    yield bus
    await bus.close()


def slo_object(name: str, webapp: str, *, objective: float = 90.0, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name},
        "spec": {
            "service": webapp,
            "objective": objective,
            "window": {"duration": "30d"},
            "sli": {"webAppAvailability": {"webApp": webapp}},
            "alerting": {"name": "WebDown"},
            **spec,
        },
    }


async def create_slo(kube_api: Any, namespace: str, body: dict[str, Any]) -> None:
    await client.CustomObjectsApi(kube_api).create_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, body)


async def webapp_fact(
    bus: Bus, namespace: str, webapp: str, at: datetime, ready: int, *, desired: int = 2, verb: str = "updated"
) -> None:
    """A WebApp fact as the reconciler publishes it, observed at `at`."""
    fact = ObservedObject(
        cluster=CLUSTER,
        object=ObjectRef(api_version=WEBAPP.api_version, kind="WebApp", namespace=namespace, name=webapp, uid="uid-w"),
        resource_version=str(int(at.timestamp() * 1000)),
        replicas=desired,
        ready_replicas=ready,
    )
    event = new_event(
        k8s_event_type("WebApp", verb),
        SOURCE,
        fact,
        subject=f"{namespace}/{webapp}",
        event_id=f"uid-w:{fact.resource_version}:{verb}",
        time=at,
    )
    await bus.publisher.publish(k8s_subject(CLUSTER, namespace, "WebApp", verb), event)


async def states(bus: Bus, namespace: str) -> dict[str, SloState]:
    response = await bus.request(SLO_STATUS, SloStatusRequest(namespace=namespace))
    assert isinstance(response, SloStatusResponse)
    return {state.slo.name: state for state in response.slos}


async def state_of(bus: Bus, namespace: str, name: str, *, after: datetime | None = None) -> SloState:
    """The SLO's state once evaluated (after `after`, if given)."""

    async def probe() -> SloState | None:
        try:
            state = (await states(bus, namespace)).get(name)
        except Exception:  # no engine answering yet, or one still loading (503)
            return None
        if state is None or (after is not None and state.evaluated_at <= after):
            return None
        return state

    return await eventually(probe, timeout=60, interval=0.2, what=f"SLO {namespace}/{name} evaluated")


async def published(bus: Bus, namespace: str) -> list[tuple[str, str]]:
    """The SLO events of `namespace` in the stream: (type, id), in order."""
    found = []
    async with bus.read(PLATFORM_EVENTS.name, subjects=[f"evt.slo.{CLUSTER}.{namespace}.>"], until=LAST) as events:
        async for stored in events:
            assert stored.event is not None, stored.error
            found.append((stored.event.type, stored.event.id))
    return found


def page_firings(events: list[tuple[str, str]]) -> list[str]:
    return [event_id for ce_type, event_id in events if ce_type == slo_event_type(SloEvent.PAGE_BURN_FIRING)]


def expected_remaining(downs: list[tuple[datetime, datetime]], first: datetime, at: datetime, budget: float) -> float:
    """1 - (down time / observed time) / budget, the observation starting at the first fact."""
    down = sum((min(end, at) - start for start, end in downs if start < at), timedelta(0))
    return 1 - (down / (at - first)) / budget


async def changes(kv: KeyValue[WebAppRecord], namespace: str, count: int) -> bool:
    """Whether the record of WebApp `web` holds `count` changes."""
    entry = await kv.get(webapp_key(namespace, "web"))
    return entry is not None and entry.value is not None and len(entry.value.changes) == count


async def annotate(kube_api: Any, namespace: str, webapp: str, value: str | None) -> None:
    """Sets (None: removes) the WebApp's default-SLO annotation, by a merge patch."""
    body = {"metadata": {"annotations": {DEFAULT_SLO_ANNOTATION: value}}}
    headers = {"Content-Type": "application/merge-patch+json"}
    await send_json(kube_api, "PATCH", WEBAPP.path(namespace, webapp), headers=headers, body=body)


async def holder(kube_api: Any, namespace: str) -> str | None:
    lease = await get(kube_api, LEASE, namespace, LEASE_NAME)
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or None


async def test_a_webapp_whose_pods_are_not_ready_burns_its_default_slo_and_pages_once(
    nats_server: NatsServer,
    bus: Bus,
    services: Callable[..., ServiceProcess],
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    slo_api: None,
) -> None:
    await bus.ensure_streams()
    custom = client.CustomObjectsApi(kube_api)
    reconciler = services(
        "ballast.reconciler",
        nats_url=nats_server.url,
        KUBECONFIG=str(kubeconfig_path),
        BALLAST_LEASE_NAMESPACE=namespace,
    )
    engine = start_engine(services, nats_server.url, kubeconfig_path, namespace, "engine")
    # registry.invalid images never pull: the pods stay Pending, the WebApp never Ready.
    broken = {"image": "registry.invalid/shop/web:1", "replicas": 1}
    for metadata in ({"name": "web"}, {"name": "quiet", "annotations": {DEFAULT_SLO_ANNOTATION: "false"}}):
        webapp = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WebApp", "metadata": metadata, "spec": broken}
        await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "webapps", webapp)

    async def default_slo(name: str) -> dict[str, Any] | None:
        found = await get(kube_api, SLO, namespace, name)
        return found

    created = await eventually(lambda: default_slo("web-availability"), timeout=60, what="the default SLO of web")
    assert created["spec"]["sli"] == {"webAppAvailability": {"webApp": "web"}}
    assert created["spec"]["objective"] == 99.5
    assert created["metadata"]["ownerReferences"][0]["name"] == "web"

    state = await state_of(bus, namespace, "web-availability")
    assert state.budget_remaining < 0  # down all the time observed: 200 times the budget
    assert BurnTier.PAGE in state.firing

    async def status_shows_it() -> dict[str, Any] | None:
        obj = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, "web-availability")
        status = obj.get("status") or {}
        return status if status.get("firingTiers") == ["page", "ticket"] else None

    status = await eventually(status_shows_it, timeout=30, interval=0.2, what="firing tiers in the SLO status")
    assert status["budgetRemaining"] < 0
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Burning": "True",
        "BudgetExhausted": "True",
    }
    # Evaluations go on (twice a second): the tier still fires, and was told once.
    await state_of(bus, namespace, "web-availability", after=state.evaluated_at + timedelta(seconds=2))
    firings = page_firings(await published(bus, namespace))
    assert len(firings) == 1, firings
    assert firings[0].startswith(f"{namespace}/web-availability:page:firing:")
    metrics = (await engine.get("/metrics"))[1]
    assert (
        f'ballast_slo_tier_firing{{namespace="{namespace}",service="web",slo="web-availability",tier="page"}} 1.0'
        in metrics
    )
    # `kubectl describe slo` tells the transitions with their figures, once each.
    slo_uid = created["metadata"]["uid"]

    async def described() -> dict[str, dict[str, Any]] | None:
        events = (await send_json(kube_api, "GET", EVENT.collection(namespace)))["items"]
        mine = [e for e in events if e["regarding"].get("uid") == slo_uid]
        by_reason = {e["reason"]: e for e in mine}
        wanted = {"PageBurnFiring", "TicketBurnFiring", "BudgetExhausted"}
        return by_reason if wanted <= set(by_reason) and len(mine) == len(by_reason) else None

    events = await eventually(described, timeout=30, what="Events on the burning SLO")
    page = events["PageBurnFiring"]
    assert (page["type"], page["reportingController"]) == ("Warning", "platform.example.com/slo-engine")
    assert page["note"].startswith("page burn firing: ")
    assert "over 1h" in page["note"]
    assert "of the error budget left" in page["note"]
    assert events["BudgetExhausted"]["note"].endswith("(exhausted at 0%)")
    assert "series" not in page, "told once, not again at every evaluation"

    # Annotated off: no default SLO; the annotation taken away: one; set again: gone.
    assert await default_slo("quiet-availability") is None
    await annotate(kube_api, namespace, "quiet", None)
    await eventually(lambda: default_slo("quiet-availability"), timeout=30, what="quiet's default SLO once wanted")
    await annotate(kube_api, namespace, "quiet", "false")

    async def removed() -> bool:
        return await default_slo("quiet-availability") is None

    await eventually(removed, timeout=30, what="quiet's default SLO removed when annotated off")
    await engine.stop(timeout=30)
    await reconciler.stop(timeout=30)


async def test_a_restart_mid_stream_keeps_the_budget(
    fresh_nats_server: NatsServer,
    fresh_bus: Bus,
    services: Callable[..., ServiceProcess],
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    slo_api: None,
) -> None:
    bus = fresh_bus
    await create_slo(kube_api, namespace, slo_object("web-availability", "web", objective=99.9))
    now = datetime.now(UTC)
    first = now - 60 * MINUTE
    await webapp_fact(bus, namespace, "web", first, ready=2)
    await webapp_fact(bus, namespace, "web", now - 30 * MINUTE, ready=0)
    await webapp_fact(bus, namespace, "web", now - 20 * MINUTE, ready=2)  # 10 of 60 minutes down: 1.67x the budget
    env = {"BALLAST_DEFAULT_SLO": "false"}
    engine = start_engine(services, fresh_nats_server.url, kubeconfig_path, namespace, "before", **env)
    kv = await bus.kv(SLO_SLI, WebAppRecord)
    await eventually(lambda: changes(kv, namespace, 3), timeout=30, interval=0.1, what="the facts handled")
    before = await state_of(bus, namespace, "web-availability", after=datetime.now(UTC))
    assert BurnTier.PAGE in before.firing
    assert before.budget_remaining == pytest.approx(
        expected_remaining([(now - 30 * MINUTE, now - 20 * MINUTE)], first, before.evaluated_at, PAGING_BUDGET),
        abs=1e-6,
    )
    await engine.stop(timeout=30)

    # While no engine runs the WebApp goes down again. The facts from before the restart were acknowledged: only KV
    # still has them (the durable delivers each fact once).
    outage = datetime.now(UTC)
    await webapp_fact(bus, namespace, "web", outage, ready=1)
    entry = await kv.get(webapp_key(namespace, "web"))
    assert entry is not None
    assert entry.value is not None
    assert len(entry.value.changes) == 3  # the new fact is not handled yet

    engine = start_engine(services, fresh_nats_server.url, kubeconfig_path, namespace, "after", **env)
    await eventually(lambda: changes(kv, namespace, 4), timeout=30, interval=0.1, what="the outage handled")
    after = await state_of(bus, namespace, "web-availability", after=datetime.now(UTC))
    downs = [(now - 30 * MINUTE, now - 20 * MINUTE), (outage, after.evaluated_at)]
    assert after.budget_remaining == pytest.approx(
        expected_remaining(downs, first, after.evaluated_at, PAGING_BUDGET), abs=1e-6
    )
    assert after.budget_remaining < before.budget_remaining
    # The page still fires since the same moment, and was told once.
    stored = await state_of(bus, namespace, "web-availability")
    assert BurnTier.PAGE in stored.firing
    assert len(page_firings(await published(bus, namespace))) == 1
    await engine.stop(timeout=30)


async def test_the_standby_continues_the_budget_when_the_leader_is_killed(
    fresh_nats_server: NatsServer,
    fresh_bus: Bus,
    services: Callable[..., ServiceProcess],
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    slo_api: None,
) -> None:
    bus = fresh_bus
    await create_slo(kube_api, namespace, slo_object("web-availability", "web", objective=99.9))
    now = datetime.now(UTC)
    first = now - 60 * MINUTE
    await webapp_fact(bus, namespace, "web", first, ready=2)
    await webapp_fact(bus, namespace, "web", now - 30 * MINUTE, ready=0)
    env = {"BALLAST_DEFAULT_SLO": "false"}
    replicas = {
        name: start_engine(services, fresh_nats_server.url, kubeconfig_path, namespace, name, **env)
        for name in ("a", "b")
    }
    for replica in replicas.values():
        await replica.wait_status("/readyz", 200, timeout=60)
    leader = await eventually(lambda: holder(kube_api, namespace), timeout=30, what="a leader")
    kv = await bus.kv(SLO_SLI, WebAppRecord)
    await eventually(lambda: changes(kv, namespace, 2), timeout=30, interval=0.1, what="the facts handled")
    before = await state_of(bus, namespace, "web-availability", after=datetime.now(UTC))
    assert BurnTier.PAGE in before.firing

    replicas[leader].kill()  # SIGKILL: no release, the lease has to expire
    killed_at = datetime.now(UTC)
    await webapp_fact(bus, namespace, "web", killed_at, ready=2)  # handled by the survivor (a shared durable)
    standby = next(name for name in replicas if name != leader)

    async def standby_leads() -> bool:
        return await holder(kube_api, namespace) == standby

    await eventually(standby_leads, timeout=30, interval=0.2, what="the standby holding the lease")
    # A fact handed to the killed replica's open pull request comes back after the ack wait (30 s).
    await eventually(lambda: changes(kv, namespace, 3), timeout=60, interval=0.1, what="the recovery handled")
    after = await state_of(bus, namespace, "web-availability", after=datetime.now(UTC))
    downs = [(now - 30 * MINUTE, killed_at)]
    assert after.budget_remaining == pytest.approx(
        expected_remaining(downs, first, after.evaluated_at, PAGING_BUDGET), abs=1e-6
    )
    assert len(page_firings(await published(bus, namespace))) == 1
    await replicas[standby].stop(timeout=30)


async def test_malformed_facts_are_dead_lettered_with_the_reason_and_the_next_is_kept(
    fresh_nats_server: NatsServer,
    fresh_bus: Bus,
    services: Callable[..., ServiceProcess],
    kubeconfig_path: Path,
    namespace: str,
    slo_api: None,
) -> None:
    bus = fresh_bus
    subject = k8s_subject(CLUSTER, namespace, "WebApp", "updated")
    ce = {
        "ce-specversion": "1.0",
        "ce-id": "broken-1",
        "ce-source": SOURCE,
        "ce-type": k8s_event_type("WebApp", "updated"),
        "ce-time": datetime.now(UTC).isoformat(),
        "ce-datacontenttype": "application/json",
        "Nats-Msg-Id": f"{SOURCE}/broken-1",
    }
    await bus.js.publish(subject, b'{"cluster": "local", "replicas": "three"}', headers=ce)
    await webapp_fact(bus, namespace, "web", datetime.now(UTC) + timedelta(hours=1), ready=2)
    good_at = datetime.now(UTC)
    await webapp_fact(bus, namespace, "web", good_at, ready=0)
    engine = start_engine(
        services, fresh_nats_server.url, kubeconfig_path, namespace, "engine", BALLAST_DEFAULT_SLO="false"
    )
    kv = await bus.kv(SLO_SLI, WebAppRecord)

    async def kept() -> WebAppRecord | None:
        entry = await kv.get(webapp_key(namespace, "web"))
        return entry.value if entry is not None else None

    record = await eventually(kept, timeout=30, interval=0.1, what="the good fact kept")
    assert [(c.at, c.state) for c in record.changes] == [(good_at, "down")]

    async def dead_letters() -> list[str] | None:
        reasons = []
        dlq = f"dlq.{SLO_ENGINE_FACTS.durable}"
        async with bus.read(DEAD_LETTERS.name, subjects=[dlq], until=LAST) as letters:
            async for letter in letters:
                reasons.append(letter.headers[DLQ_REASON])
        return reasons if len(reasons) == 2 else None

    reasons = sorted(await eventually(dead_letters, timeout=30, interval=0.2, what="two dead letters"))
    assert reasons[0].startswith("rejected: the event is dated "), reasons
    assert reasons[0].endswith("in the future: its time cannot be placed in a window"), reasons
    assert reasons[1].startswith("schema_violation: data does not match ObservedObject"), reasons
    await engine.stop(timeout=30)


def chaos_event(
    kind: ChaosEvent, namespace: str, at: datetime, run_id: str = "uid-e:2026-12-01T12:00:00Z"
) -> tuple[str, Any]:
    """A chaos run's event as the chaos-runner publishes it (its id made of the run's: give a run of its own on a
    shared server)."""
    common: dict[str, Any] = {
        "cluster": CLUSTER,
        "experiment": ExperimentRef(namespace=namespace, name="kill-web"),
        "run_id": run_id,
        "target": ChaosTarget(namespace=namespace, webapp="web"),
        "fault": FaultKind.POD_DELETE,
        "at": at,
    }
    if kind is ChaosEvent.STARTED:
        payload: Any = ExperimentStarted(**common)
    else:
        payload = ExperimentCompleted(**common, verdict=Verdict.PASS, injections=1, budget_consumed=0.0)
    envelope = new_event(chaos_event_type(kind), "/clusters/local/chaos-runner", payload, event_id=f"{run_id}:{kind}")
    return chaos_subject(CLUSTER, namespace, kind), envelope


async def test_burn_during_a_recorded_chaos_window_is_attributed_and_can_be_kept_out_of_the_budget(
    fresh_nats_server: NatsServer,
    fresh_bus: Bus,
    services: Callable[..., ServiceProcess],
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    slo_api: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bus = fresh_bus
    await create_slo(kube_api, namespace, slo_object("counted", "web"))
    excluding = slo_object("excluding", "web", budgetPolicy={"excludeChaosBurn": True})
    await create_slo(kube_api, namespace, excluding)
    now = datetime.now(UTC)
    first = now - 60 * MINUTE
    # Down 10 minutes; a chaos run covered the last 5 of them.
    await webapp_fact(bus, namespace, "web", first, ready=2)
    await webapp_fact(bus, namespace, "web", now - 30 * MINUTE, ready=0)
    await webapp_fact(bus, namespace, "web", now - 20 * MINUTE, ready=2)
    for kind, at in ((ChaosEvent.STARTED, now - 25 * MINUTE), (ChaosEvent.COMPLETED, now - 15 * MINUTE)):
        await bus.publisher.publish(*chaos_event(kind, namespace, at))
    engine = start_engine(
        services, fresh_nats_server.url, kubeconfig_path, namespace, "engine", BALLAST_DEFAULT_SLO="false"
    )

    kv = await bus.kv(SLO_SLI, WebAppRecord)
    causes = await bus.kv(SLO_SLI, CauseWindow)
    await eventually(lambda: changes(kv, namespace, 3), timeout=30, interval=0.1, what="the facts handled")

    async def run_ended() -> bool:
        async with causes.watch("cause.>") as windows:
            async for window in windows:
                if isinstance(window, CaughtUp):
                    return False
                if window.value is not None and window.value.namespace == namespace and window.value.end is not None:
                    return True
        return False

    await eventually(run_ended, timeout=30, interval=0.2, what="the chaos run recorded")
    handled = datetime.now(UTC)

    async def attributed() -> dict[str, SloState] | None:
        found = await states(bus, namespace)
        if any(state.evaluated_at <= handled for state in found.values()):
            return None
        both = [found.get("counted"), found.get("excluding")]
        if any(s is None or BudgetCause.CHAOS not in {p.cause for p in s.consumption} for s in both):
            return None
        return found

    found = await eventually(attributed, timeout=60, interval=0.2, what="chaos consumption in both SLOs")
    counted, excluded = found["counted"], found["excluding"]
    observed = counted.evaluated_at - first
    per_minute = MINUTE / (observed * 0.1)  # the budget one minute down consumes
    parts = {p.cause: p for p in counted.consumption}
    assert parts[BudgetCause.CHAOS].budget_consumed == pytest.approx(5 * per_minute, rel=1e-3)
    assert parts[BudgetCause.CHAOS].refs == ("uid-e:2026-12-01T12:00:00Z",)
    assert parts[BudgetCause.UNATTRIBUTED].budget_consumed == pytest.approx(5 * per_minute, rel=1e-3)
    assert not parts[BudgetCause.CHAOS].excluded
    assert counted.budget_remaining == pytest.approx(1 - 10 * per_minute, abs=1e-3)
    assert {p.cause: p.excluded for p in excluded.consumption}[BudgetCause.CHAOS]
    assert excluded.budget_remaining == pytest.approx(1 - 5 * per_minute, abs=1e-3)

    custom = client.CustomObjectsApi(kube_api)

    async def in_status() -> dict[str, Any] | None:
        obj = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, "excluding")
        consumption = (obj.get("status") or {}).get("budgetConsumption") or []
        return next((part for part in consumption if part["cause"] == "chaos"), None)

    # Figures alone are written at most every 30 s: the first status may predate the chaos events' ingest.
    chaos = await eventually(in_status, timeout=60, interval=0.2, what="chaos consumption in the status")
    assert chaos["excluded"] is True
    assert chaos["refs"] == ["uid-e:2026-12-01T12:00:00Z"]

    # The CLI reads the same figures (it runs its own event loop: in a thread).
    url = fresh_nats_server.url
    assert await asyncio.to_thread(main, ["slo", "budget", f"{namespace}/excluding", "--nats-url", url]) == 0
    budget = capsys.readouterr().out
    assert f"SLO {namespace}/excluding (service web): 90% over 30d" in budget
    assert "[excluded from the budget]  (uid-e:2026-12-01T12:00:00Z)" in budget
    assert await asyncio.to_thread(main, ["slo", "status", "-n", namespace, "--nats-url", url]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "NAMESPACE",
        "NAME",
        "SERVICE",
        "OBJECTIVE",
        "BUDGET",
        "BURN",
        "1H",
        "FIRING",
        "EXHAUSTED",
        "IN",
    ]
    assert [line.split()[1] for line in table[1:]] == ["counted", "excluding"]
    assert await asyncio.to_thread(main, ["slo", "budget", f"{namespace}/nothing", "--nats-url", url]) == 1
    await engine.stop(timeout=30)
