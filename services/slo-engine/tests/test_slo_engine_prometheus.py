"""The slo-engine process wired to a real Prometheus: an SLO object with an event-ratio SLI over the synthetic traffic
exporter gets its rules written where Prometheus loads them; 10 % of errors injected make the engine's page tier fire
on the bus and in the SLO's status; Prometheus stopped, the SLO keeps its state and says the reader fails; Prometheus
back and the errors gone, the tier resolves; the SLO deleted, its rules go. Rules of an SLO deleted while no engine
ran are pruned at start.

The SLO has a 1h period and the fast AlertWindows table of the Prometheus tests (5s to 1m windows), given to the
engine as Sloth's windows directory, so the story takes minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from slo_fixtures import slo_api, start_engine  # noqa: F401  (fixture)
from test_prometheus_live import (  # noqa: F401  (fixtures)
    catalogue,
    exporter,
    prometheus_binary,
    scraping_prometheus,
    traffic,
    two_pods_served,
)
from test_slo_engine_live import chaos_event, create_slo, published, states

from ballast.bus import Bus
from ballast.bus.kv import CaughtUp
from ballast.events.catalogue import SLO_SLI
from ballast.events.contracts.chaos import (
    ChaosEvent,
)
from ballast.events.contracts.slo import BudgetCause, BurnTier, SloEvent, SloState, slo_event_type
from ballast.local.traffic import TrafficExporter
from ballast.slo import WindowCatalogue
from ballast.slo.crd import GROUP, SLOS, VERSION
from ballast.slo_engine.causes import CauseWindow
from ballast.testing import NatsServer, ServiceProcess, eventually

pytestmark = pytest.mark.cluster

NAME = "availability"
CLUSTER = "local"


def event_ratio_slo(namespace: str) -> dict[str, Any]:
    where = f'namespace="{namespace}",webapp="web"'
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": NAME},
        "spec": {
            "service": "web",
            "objective": 99,
            "window": {"duration": "1h"},
            "sli": {
                "eventRatio": {
                    "errorQuery": f'sum(rate(http_requests_total{{{where},code=~"5.."}}[{{{{.window}}}}]))',
                    "totalQuery": f"sum(rate(http_requests_total{{{where}}}[{{{{.window}}}}]))",
                }
            },
            "alerting": {"name": "WebAvailability"},
        },
    }


def engine_state(bus: Bus, namespace: str, check: Callable[[SloState], bool]) -> Callable[[], Awaitable[Any]]:
    async def probe() -> SloState | None:
        try:
            state = (await states(bus, namespace)).get(NAME)
        except Exception:  # no engine answering yet, or one still loading (503)
            return None
        return state if state is not None and check(state) else None

    return probe


def slo_status(kube_api: Any, namespace: str, check: Callable[[dict[str, Any]], bool]) -> Callable[[], Awaitable[Any]]:
    async def probe() -> dict[str, Any] | None:
        obj = await client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, SLOS, NAME
        )
        status = obj.get("status") or {}
        return status if check(status) else None

    return probe


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


async def reader_failing(engine: ServiceProcess) -> str:
    metrics = (await engine.get("/metrics"))[1]
    return next(
        line for line in metrics.splitlines() if line.startswith('ballast_slo_reader_failing{reader="prometheus"}')
    )


async def test_an_event_ratio_slo_pages_from_prometheus_keeps_its_state_while_prometheus_is_down_and_clears(
    nats_server: NatsServer,
    bus: Bus,
    services: Callable[..., ServiceProcess],
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    slo_api: None,
    exporter: TrafficExporter,
    catalogue: WindowCatalogue,
    prometheus_binary: Path,
    tmp_path: Path,
) -> None:
    await bus.ensure_streams()
    await two_pods_served(kube_api, namespace, exporter)
    prometheus = await scraping_prometheus(exporter, prometheus_binary, tmp_path)
    rules = prometheus.rules_dir / f"{namespace}_{NAME}.yaml"
    stale = prometheus.rules_dir / f"{namespace}_gone.yaml"  # an SLO deleted while no engine ran
    stale.write_text("groups: []\n")
    engine = start_engine(
        services,
        nats_server.url,
        kubeconfig_path,
        namespace,
        "engine",
        BALLAST_DEFAULT_SLO="false",
        BALLAST_PROMETHEUS_URL=prometheus.url,
        BALLAST_SLO_RULES_DIR=str(prometheus.rules_dir),
        BALLAST_SLO_WINDOWS_DIR=str(tmp_path / "windows"),  # the `catalogue` fixture's file
    )
    try:
        await eventually(lambda: not stale.exists(), timeout=60, what="the stale rule file pruned at start")
        await create_slo(kube_api, namespace, event_ratio_slo(namespace))
        await eventually(rules.is_file, timeout=30, what="the SLO's rule file written")
        recorded = [r for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"] if "record" in r]
        assert recorded
        assert all(r["labels"]["namespace"] == namespace for r in recorded)

        calm = await eventually(
            engine_state(bus, namespace, lambda s: True), timeout=90, interval=0.5, what="the SLO evaluated"
        )
        assert not calm.firing
        assert (await reader_failing(engine)).endswith(" 0.0")

        assert await traffic("set", f"{namespace}/web", "--error-rate", "0.1", "--url", exporter.url) == 0
        paging = await eventually(
            engine_state(bus, namespace, lambda s: BurnTier.PAGE in s.firing),
            timeout=90,
            interval=0.5,
            what="the engine's page tier firing",
        )
        assert [e for e, _ in await published(bus, namespace)].count(slo_event_type(SloEvent.PAGE_BURN_FIRING)) == 1
        status = await eventually(
            slo_status(kube_api, namespace, lambda s: "page" in s.get("firingTiers", [])),
            timeout=30,
            interval=0.5,
            what="the page tier in the SLO's status",
        )
        assert conditions(status)["Burning"] == ("True", "PageBurnFiring")

        # Prometheus gone: the state is kept as it was (never reset), and the status and the gauge say why.
        await asyncio.to_thread(prometheus.stop)
        down = await eventually(
            slo_status(kube_api, namespace, lambda s: conditions(s).get("Measured", ("",))[0] == "False"),
            timeout=30,
            interval=0.5,
            what="Measured False while Prometheus is down",
        )
        assert conditions(down)["Measured"] == ("False", "ReaderFailing")
        assert "page" in down["firingTiers"]
        assert (await reader_failing(engine)).endswith(" 1.0")
        kept = (await states(bus, namespace))[NAME]
        assert BurnTier.PAGE in kept.firing
        failed_at = next(c for c in down["conditions"] if c["type"] == "Measured")["lastTransitionTime"]
        # Not evaluated since the reader failed: the last state stands.
        assert paging.evaluated_at <= kept.evaluated_at <= datetime.fromisoformat(failed_at) + timedelta(seconds=1)

        await asyncio.to_thread(prometheus.start)
        await eventually(
            slo_status(kube_api, namespace, lambda s: conditions(s).get("Measured", ("",))[0] == "True"),
            timeout=60,
            interval=0.5,
            what="Measured True once Prometheus answers",
        )
        assert (await reader_failing(engine)).endswith(" 0.0")

        assert await traffic("reset", f"{namespace}/web", "--url", exporter.url) == 0
        await eventually(
            engine_state(bus, namespace, lambda s: BurnTier.PAGE not in s.firing),
            timeout=90,
            interval=0.5,
            what="the engine's page tier resolved",
        )
        assert slo_event_type(SloEvent.PAGE_BURN_RESOLVED) in [e for e, _ in await published(bus, namespace)]
        await eventually(
            slo_status(kube_api, namespace, lambda s: "page" not in s.get("firingTiers", ["page"])),
            timeout=30,
            interval=0.5,
            what="the page tier gone from the SLO's status",
        )

        await client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, NAME)
        await eventually(lambda: not rules.exists(), timeout=30, what="the SLO's rule file removed with it")
    finally:
        await engine.stop(timeout=30)
        await asyncio.to_thread(prometheus.stop)


def shares(status: dict[str, Any]) -> dict[str, tuple[float, list[str]]]:
    return {part["cause"]: (part["budgetConsumed"], part["refs"]) for part in status.get("budgetConsumption", [])}


async def test_budget_an_event_ratio_slo_consumes_during_a_chaos_run_is_tagged_with_it_and_after_it_is_not(
    nats_server: NatsServer,
    bus: Bus,
    services: Callable[..., ServiceProcess],
    kube_api: Any,
    kubeconfig_path: Path,
    namespace: str,
    slo_api: None,
    exporter: TrafficExporter,
    catalogue: WindowCatalogue,
    prometheus_binary: Path,
    tmp_path: Path,
) -> None:
    await bus.ensure_streams()
    await two_pods_served(kube_api, namespace, exporter)
    prometheus = await scraping_prometheus(exporter, prometheus_binary, tmp_path)
    engine = start_engine(
        services,
        nats_server.url,
        kubeconfig_path,
        namespace,
        "engine",
        BALLAST_DEFAULT_SLO="false",
        BALLAST_PROMETHEUS_URL=prometheus.url,
        BALLAST_SLO_RULES_DIR=str(prometheus.rules_dir),
        BALLAST_SLO_WINDOWS_DIR=str(tmp_path / "windows"),
    )
    run_id = f"uid-{namespace}:run"
    await bus.ensure_buckets([SLO_SLI])  # the engine makes it too, maybe not yet
    causes = await bus.kv(SLO_SLI, CauseWindow)

    async def run_recorded(ended: bool) -> bool:
        async with causes.watch("cause.>") as windows:
            async for window in windows:
                if isinstance(window, CaughtUp):
                    return False
                value = window.value
                if value is not None and value.ref == run_id and (value.end is not None) == ended:
                    return True
        return False

    try:
        await create_slo(kube_api, namespace, event_ratio_slo(namespace))
        await eventually(
            engine_state(bus, namespace, lambda s: True), timeout=90, interval=0.5, what="the SLO evaluated"
        )
        await bus.publisher.publish(*chaos_event(ChaosEvent.STARTED, namespace, datetime.now(UTC), run_id))
        await eventually(lambda: run_recorded(False), timeout=30, interval=0.2, what="the chaos run's start recorded")

        assert await traffic("set", f"{namespace}/web", "--error-rate", "0.1", "--url", exporter.url) == 0
        during = await eventually(
            slo_status(kube_api, namespace, lambda s: shares(s).get("chaos", (0, []))[0] > 0),
            timeout=90,
            interval=0.5,
            what="budget consumption tagged with the chaos run in the SLO's status",
        )
        assert shares(during)["chaos"][1] == [run_id]

        completed = datetime.now(UTC)
        await bus.publisher.publish(*chaos_event(ChaosEvent.COMPLETED, namespace, completed, run_id))
        await eventually(lambda: run_recorded(True), timeout=30, interval=0.2, what="the chaos run's end recorded")
        # The errors go on. Once the run and the shortest window after it (5 s, which still counts its errors) are
        # behind the engine's cycles, what the SLO consumes is no longer the run's.
        lag = min(catalogue.for_period(timedelta(hours=1)).windows())
        settled = completed + lag + timedelta(seconds=2)
        after: SloState = await eventually(
            engine_state(bus, namespace, lambda s: s.evaluated_at > settled), timeout=60, interval=0.5, what="cycles"
        )
        chaos_share = {p.cause: p.budget_consumed for p in after.consumption}[BudgetCause.CHAOS]
        unattributed = {p.cause: p.budget_consumed for p in after.consumption}.get(BudgetCause.UNATTRIBUTED, 0.0)

        def more_unattributed(state: SloState) -> bool:
            parts = {p.cause: p.budget_consumed for p in state.consumption}
            return parts.get(BudgetCause.UNATTRIBUTED, 0.0) > unattributed

        later: SloState = await eventually(
            engine_state(bus, namespace, more_unattributed), timeout=60, interval=0.5, what="unattributed consumption"
        )
        parts = {p.cause: p for p in later.consumption}
        assert parts[BudgetCause.CHAOS].budget_consumed == pytest.approx(chaos_share)  # not a bit more
        assert parts[BudgetCause.CHAOS].refs == (run_id,)
        assert parts[BudgetCause.UNATTRIBUTED].refs == ()
        assert not any(p.excluded for p in later.consumption)  # excludeChaosBurn is for availability SLIs
        status = await eventually(
            slo_status(kube_api, namespace, lambda s: "unattributed" in shares(s)),
            timeout=30,
            interval=0.5,
            what="the unattributed consumption in the SLO's status",
        )
        assert shares(status)["chaos"][1] == [run_id]
    finally:
        await traffic("reset", f"{namespace}/web", "--url", exporter.url)
        await engine.stop(timeout=30)
        await asyncio.to_thread(prometheus.stop)
