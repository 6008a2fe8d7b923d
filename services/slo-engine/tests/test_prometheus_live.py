"""SLO rules in a real Prometheus (the one `make tools` builds), fed by the synthetic traffic exporter reading a real
control plane: the generated rule groups load; 10 % of errors injected through `ballast traffic set` make the page
tier fire in Prometheus (ALERTS) and, through the Prometheus reader and the budget book, on the bus; the engine's
burn rates equal Prometheus's own evaluation of the generated recording rules at the same instant within 1 %; and
recovery clears both. A calendar period's ratio is read since its start. A deleted pod costs the exporter's WebApp
errors until it is replaced.

The SLO has a 1h period with an AlertWindows table (Sloth's format) of 5s to 1m windows instead of 5m to 3d, and
Prometheus scrapes and evaluates every second, so the story takes a couple of minutes, not days. The factors scale
with the period as Sloth computes them, so the rules are the ones a 30d SLO gets, only faster.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from ballast.bus import LAST, Bus
from ballast.cli.main import main as ballast
from ballast.events.catalogue import CATALOGUE, PLATFORM_EVENTS, SLO_BUDGETS
from ballast.events.contracts.slo import BurnTier, SloEvent, slo_event_type
from ballast.kube.install import install, load_manifests
from ballast.local.nats_server import free_port
from ballast.local.prometheus import Prometheus, ScrapeTarget
from ballast.local.tools import ToolsMissing, tool
from ballast.local.traffic import Faults, TrafficExporter
from ballast.slo import (
    Alerting,
    AlertTier,
    AlertWindows,
    CalendarUnit,
    CalendarWindow,
    EventRatioSli,
    RollingWindow,
    RuleOptions,
    ServiceLevelObjective,
    WindowCatalogue,
)
from ballast.slo.evaluation import BudgetState, Measurement, evaluate
from ballast.slo.periods import period_at
from ballast.slo.rules import RecordingRule
from ballast.slo_engine.budgets import BudgetBook, BudgetShard
from ballast.slo_engine.prometheus_measure import PrometheusMeasurer
from ballast.slo_engine.prometheus_source import PrometheusSource, SeriesSlo, sli_record, windows_to_read
from ballast.slo_engine.rules_sync import RuleSync, slo_rules
from ballast.testing import eventually
from ballast.testing.kube import fake_node_deployment

pytestmark = pytest.mark.cluster

REPOSITORY = Path(__file__).resolve().parents[3]
WEBAPP_CRD = REPOSITORY / "deploy" / "crds" / "webapps.platform.example.com.yaml"
CLUSTER = "local"
PERIOD = timedelta(hours=1)
FAST_WINDOWS = """
apiVersion: sloth.slok.dev/v1
kind: AlertWindows
spec:
  sloPeriod: 1h
  page: {quick: {errorBudgetPercent: 2, shortWindow: 5s, longWindow: 20s},
         slow: {errorBudgetPercent: 5, shortWindow: 10s, longWindow: 30s}}
  ticket: {quick: {errorBudgetPercent: 10, shortWindow: 15s, longWindow: 45s},
           slow: {errorBudgetPercent: 10, shortWindow: 30s, longWindow: 1m}}
"""


@pytest.fixture
def catalogue(tmp_path: Path) -> WindowCatalogue:
    (tmp_path / "windows").mkdir()
    (tmp_path / "windows" / "fast.yaml").write_text(FAST_WINDOWS)
    return WindowCatalogue.from_directory(tmp_path / "windows")


@pytest.fixture
def prometheus_binary() -> Path:
    try:
        return tool("prometheus")
    except ToolsMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def availability(namespace: str) -> ServiceLevelObjective:
    where = f'namespace="{namespace}",webapp="web"'
    return ServiceLevelObjective(
        service="web",
        name="availability",
        objective=99,
        window=RollingWindow(length=PERIOD),
        sli=EventRatioSli(
            error_query=f'sum(rate(http_requests_total{{{where},code=~"5.."}}[{{{{.window}}}}]))',
            total_query=f"sum(rate(http_requests_total{{{where}}}[{{{{.window}}}}]))",
        ),
        alerting=Alerting(name="WebAvailability", page=AlertTier(), ticket=AlertTier()),
    )


async def webapp_with_pods(kube_api: Any, namespace: str, replicas: int) -> None:
    """A WebApp object and a Deployment it controls, on kwok's fake nodes (no reconciler needed: the exporter reads
    the Deployment, and the owner must exist or the garbage collector takes the Deployment)."""
    await install(kube_api, load_manifests(WEBAPP_CRD))
    custom = client.CustomObjectsApi(kube_api)
    body = {
        "apiVersion": "platform.example.com/v1",
        "kind": "WebApp",
        "metadata": {"name": "web"},
        "spec": {"image": "registry.example.com/shop/web:1.0.0"},
    }
    webapp = await eventually(
        lambda: _create(
            custom.create_namespaced_custom_object("platform.example.com", "v1", namespace, "webapps", body)
        ),
        timeout=30,
        what="the WebApp created (its CRD established)",
    )
    deployment = fake_node_deployment("web", replicas)
    deployment.metadata.owner_references = [
        client.V1OwnerReference(
            api_version="platform.example.com/v1",
            kind="WebApp",
            name="web",
            uid=webapp["metadata"]["uid"],
            controller=True,
        )
    ]
    await client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, deployment)


async def _create(call: Any) -> dict[str, Any] | None:
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        created: dict[str, Any] = await call
    except ApiException as exc:
        if exc.status == 404:  # the CRD is not served yet
            return None
        raise
    return created


@pytest.fixture
async def exporter(kube_api: Any) -> AsyncIterator[TrafficExporter]:
    running = TrafficExporter(kube_api, port=free_port())
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(running.run(stop, started))
    await asyncio.wait_for(started.wait(), timeout=10)
    await asyncio.wait_for(running.deployments.synced.wait(), timeout=30)
    yield running
    stop.set()
    await task


def serving(exporter: TrafficExporter, namespace: str, ready: int) -> bool:
    traffic = exporter.model.webapps.get((namespace, "web"))
    return traffic is not None and traffic.desired == ready and traffic.ready == ready


async def two_pods_served(kube_api: Any, namespace: str, exporter: TrafficExporter) -> None:
    """The WebApp `web` with two pods, once the exporter serves traffic for both."""
    await webapp_with_pods(kube_api, namespace, replicas=2)
    await eventually(lambda: serving(exporter, namespace, 2), timeout=60, what="the exporter serving 2 of 2 pods")


async def scraping_prometheus(exporter: TrafficExporter, binary: Path, tmp_path: Path) -> Prometheus:
    """A started Prometheus (the caller stops it) scraping the exporter, its data and rules under `tmp_path`."""
    prometheus = Prometheus(
        [ScrapeTarget("synthetic-traffic", f"127.0.0.1:{exporter.port}")],
        data_dir=tmp_path / "prometheus",
        binary=binary,
    )
    await asyncio.to_thread(prometheus.start)
    return prometheus


async def traffic(*args: str) -> int:
    """`ballast traffic ...`, the CLI as a user runs it (off the loop: the exporter answers on this loop)."""
    return await asyncio.to_thread(ballast, ["traffic", *args])


async def page_alerts(source: PrometheusSource, namespace: str) -> list[dict[str, Any]]:
    selector = f'alertname="WebAvailability",sloth_severity="page",alertstate="firing",namespace="{namespace}"'
    return await source.query(f"ALERTS{{{selector}}}", datetime.now(UTC))


async def published(bus: Bus, namespace: str) -> list[str]:
    found = []
    async with bus.read(PLATFORM_EVENTS.name, subjects=[f"evt.slo.{CLUSTER}.{namespace}.>"], until=LAST) as events:
        async for stored in events:
            assert stored.event is not None, stored.error
            found.append(stored.event.type)
    return found


async def test_injected_errors_page_in_prometheus_and_on_the_bus_with_the_same_burn_rates_and_recovery_clears(
    kube_api: Any,
    namespace: str,
    exporter: TrafficExporter,
    bus: Bus,
    catalogue: WindowCatalogue,
    prometheus_binary: Path,
    tmp_path: Path,
) -> None:
    await two_pods_served(kube_api, namespace, exporter)

    objective = availability(namespace)
    windows = catalogue.for_period(PERIOD)
    options = RuleOptions(version=version("ballast-libs"), windows=catalogue)
    prometheus = await scraping_prometheus(exporter, prometheus_binary, tmp_path)
    try:
        synced = await RuleSync(None, prometheus.rules_dir, options).sync(
            {"metadata": {"namespace": namespace, "name": "availability"}}, objective
        )
        assert synced.rule_file == prometheus.rules_dir / f"{namespace}_availability.yaml"
        await asyncio.to_thread(prometheus.reload)

        await bus.ensure_streams([PLATFORM_EVENTS])
        await bus.ensure_buckets([SLO_BUDGETS])
        book = BudgetBook(
            await bus.kv(SLO_BUDGETS, BudgetShard), bus.publisher, CATALOGUE.registry, CLUSTER, "/test/slo-engine"
        )
        async with PrometheusSource(prometheus.url) as source:
            await _rules_loaded(prometheus.url)
            key = SeriesSlo.of(namespace, objective)
            to_read = windows_to_read([windows])
            assert len(to_read) == 8  # 7 distinct alert windows and the period: 8 queries whatever the number of SLOs

            async def engine_state() -> BudgetState | None:
                readings = await source.read(to_read)
                measurement = readings.measurement(key, windows)
                if measurement is None:
                    return None
                return await book.evaluate(objective, namespace, windows, measurement)

            calm = await eventually(engine_state, timeout=60, interval=0.5, what="every window recorded")
            assert calm.firing == {}
            assert not await page_alerts(source, namespace)

            assert await traffic("set", f"{namespace}/web", "--error-rate", "0.1", "--url", exporter.url) == 0
            await eventually(
                lambda: page_alerts(source, namespace), timeout=60, interval=0.5, what="ALERTS: the page tier firing"
            )

            async def engine_pages() -> BudgetState | None:
                state = await engine_state()
                return state if state is not None and BurnTier.PAGE in state.firing else None

            await eventually(engine_pages, timeout=30, interval=0.5, what="the engine's page tier firing")
            assert slo_event_type(SloEvent.PAGE_BURN_FIRING) in await published(bus, namespace)

            # Once the longest alert window lies wholly in the errors, compare at one recorded instant.
            longest = max(windows.windows())

            async def steady() -> bool:
                readings = await source.read([longest])
                ratio = readings.ratios.get(key, {}).get(longest)
                return ratio is not None and ratio > 0.099

            await eventually(steady, timeout=90, interval=1, what="the longest window wholly at 10 % errors")
            await _same_burn_rates_as_prometheus(source, objective, namespace, catalogue)

            assert await traffic("reset", f"{namespace}/web", "--url", exporter.url) == 0

            async def cleared() -> bool:
                return not await page_alerts(source, namespace)

            await eventually(cleared, timeout=60, interval=0.5, what="ALERTS: the page tier cleared")

            async def engine_cleared() -> BudgetState | None:
                state = await engine_state()
                return state if state is not None and BurnTier.PAGE not in state.firing else None

            await eventually(engine_cleared, timeout=30, interval=0.5, what="the engine's page tier resolved")
            assert slo_event_type(SloEvent.PAGE_BURN_RESOLVED) in await published(bus, namespace)
    finally:
        await asyncio.to_thread(prometheus.stop)


async def _rules_loaded(url: str) -> None:
    """The three rule groups are loaded and every rule has evaluated without error."""

    async def healthy() -> dict[str, list[str]] | None:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/api/v1/rules") as response:
            groups = (await response.json())["data"]["groups"]
        by_group = {g["name"]: [r["health"] for r in g["rules"]] for g in groups}
        return by_group if by_group and all(h == "ok" for hs in by_group.values() for h in hs) else None

    loaded = await eventually(healthy, timeout=30, interval=0.5, what="the rule groups loaded and evaluated")
    assert sorted(loaded) == [
        "sloth-slo-alerts-web-availability",
        "sloth-slo-meta-recordings-web-availability",
        "sloth-slo-sli-recordings-web-availability",
    ]
    assert len(loaded["sloth-slo-sli-recordings-web-availability"]) == 8  # 7 distinct windows and the period


async def _same_burn_rates_as_prometheus(
    source: PrometheusSource, objective: ServiceLevelObjective, namespace: str, catalogue: WindowCatalogue
) -> None:
    """At the instant of a rule evaluation, the reader's ratios through the evaluator give the burn rates that
    Prometheus computes from the generated recording rules' own expressions over the same series."""
    windows = catalogue.for_period(PERIOD)
    selector = f'{{sloth_id="{objective.id}",namespace="{namespace}"}}'
    shortest = min(windows.windows())
    (stamp,) = await source.query(f"timestamp({sli_record(shortest)}{selector})", datetime.now(UTC))
    at = datetime.fromtimestamp(float(stamp["value"][1]), UTC)  # the SLI group's last evaluation
    readings = await source.read(windows_to_read([windows]), at=at)
    measurement = readings.measurement(SeriesSlo.of(namespace, objective), windows)
    assert measurement is not None
    state = evaluate(objective, namespace, CLUSTER, windows, measurement, None).state
    engine = dict(state.burn_rates)

    (sli_group, _meta, _alerts) = slo_rules(namespace, objective, RuleOptions(version="t", windows=catalogue))
    expressions = {rule.record: rule.expr for rule in sli_group.rules if isinstance(rule, RecordingRule)}
    for window in windows.windows():
        expr = expressions[sli_record(window)]
        (burn,) = await source.query(f"({expr}) / scalar(slo:error_budget:ratio{selector})", at)
        assert engine[window] == pytest.approx(float(burn["value"][1]), rel=0.01), window
        assert engine[window] == pytest.approx(10, rel=0.01)  # 10 % errors on a 1 % budget
    (period,) = await source.query(expressions[sli_record(windows.period)], at)
    assert measurement.period == pytest.approx(float(period["value"][1]), rel=0.01)
    assert state.budget_remaining == pytest.approx(1 - float(period["value"][1]) / objective.error_budget, rel=0.01)


async def test_a_deleted_pod_costs_errors_until_it_is_replaced(
    kube_api: Any, namespace: str, exporter: TrafficExporter
) -> None:
    await two_pods_served(kube_api, namespace, exporter)
    exporter.model.advance()
    before = exporter.model.webapps[(namespace, "web")].requests["503"]

    core = client.CoreV1Api(kube_api)
    pods = (await core.list_namespaced_pod(namespace, label_selector="app=web")).items
    await core.delete_namespaced_pod(pods[0].metadata.name, namespace, grace_period_seconds=0)

    def missing_replica() -> bool:
        exporter.model.advance()
        return exporter.model.webapps[(namespace, "web")].requests["503"] > before

    await eventually(missing_replica, timeout=30, what="503s while a replica is missing")
    await eventually(lambda: serving(exporter, namespace, 2), timeout=60, what="the replica replaced")
    assert exporter.model.webapps[(namespace, "web")].shares()["503"] == 0  # replaced: no more errors


async def test_bad_traffic_settings_are_refused_with_the_reason_and_change_nothing(
    exporter: TrafficExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await traffic("set", "shop/web", "--error-rate", "0.2", "--url", exporter.url) == 0
    assert await traffic("set", "shop/web", "--error-rate", "2", "--url", exporter.url) == 1
    assert "errorRate" in capsys.readouterr().err
    assert await traffic("set", "shop", "--latency-ms", "10", "--url", exporter.url) == 1
    assert "'shop' is not NAMESPACE/WEBAPP" in capsys.readouterr().err
    assert exporter.model.faults(("shop", "web")) == Faults(error_rate=0.2)


async def test_a_calendar_period_is_read_since_its_start_as_the_mean_of_its_recorded_shortest_window(
    kube_api: Any,
    namespace: str,
    exporter: TrafficExporter,
    catalogue: WindowCatalogue,
    prometheus_binary: Path,
    tmp_path: Path,
) -> None:
    """A calendar SLO's rules record its windows but no period ratio (no fixed range); the measurer asks for the
    ratio since the period's start, which is the mean of every shortest-window ratio recorded since, computed here
    from the raw samples."""
    await two_pods_served(kube_api, namespace, exporter)
    hourly = availability(namespace).model_copy(
        update={"name": "hourly", "window": CalendarWindow(unit=CalendarUnit.HOUR)}
    )
    windows = catalogue.for_period(PERIOD)  # an hour's usual length: the fast table
    prometheus = await scraping_prometheus(exporter, prometheus_binary, tmp_path)
    try:
        options = RuleOptions(version=version("ballast-libs"), windows=catalogue)
        synced = await RuleSync(None, prometheus.rules_dir, options).sync(
            {"metadata": {"namespace": namespace, "name": "hourly"}}, hourly
        )
        assert synced.rule_file is not None
        await asyncio.to_thread(prometheus.reload)
        assert await traffic("set", f"{namespace}/web", "--error-rate", "0.05", "--url", exporter.url) == 0
        async with PrometheusSource(prometheus.url) as source:
            measurer = PrometheusMeasurer(source, catalogue)
            key = (namespace, "hourly")

            async def measured() -> Measurement | None:
                found = await measurer.measure({key: hourly}, datetime.now(UTC).replace(microsecond=0))
                return found[key][1] if key in found else None

            # Some seconds of ratios recorded, so that the mean is over several samples.
            await eventually(lambda: _recorded(source, hourly, namespace, windows, 5), timeout=60, what="ratios")
            measurement = await eventually(measured, timeout=30, interval=0.5, what="a calendar measurement")
            since = measurement.at - period_at(hourly.window, measurement.at).start
            selector = f'{{sloth_id="{hourly.id}",namespace="{namespace}"}}'
            shortest = sli_record(windows.windows()[0])
            (series,) = await source.query(f"{shortest}{selector}[{int(since.total_seconds())}s]", measurement.at)
            samples = [float(value) for _, value in series["values"]]
            assert measurement.period == pytest.approx(sum(samples) / len(samples), rel=1e-9)
            assert 0 < measurement.period < 0.2
            state = evaluate(hourly, namespace, CLUSTER, windows, measurement, None).state
            assert state.budget_remaining == pytest.approx(1 - measurement.period / hourly.error_budget)
    finally:
        await asyncio.to_thread(prometheus.stop)


async def _recorded(
    source: PrometheusSource, objective: ServiceLevelObjective, namespace: str, windows: AlertWindows, count: int
) -> bool:
    selector = f'{{sloth_id="{objective.id}",namespace="{namespace}"}}'
    found = await source.query(f"count_over_time({sli_record(windows.windows()[0])}{selector}[1h])", datetime.now(UTC))
    return bool(found) and float(found[0]["value"][1]) >= count
