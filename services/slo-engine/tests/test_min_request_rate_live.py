"""The minimum request rate against a real Prometheus fed by the synthetic traffic exporter: two SLOs over the same
WebApp's requests, at 5 requests/s with 10 % of them failing; the one whose minimum is 1 request/s pages, in
Prometheus (ALERTS) and in the engine, the one whose minimum is 50 does not, in either, though its burn rates are as
high; at 100 requests/s it pages too. The engine reads the request rates from the series `rules_sync` records for
SLOs with a minimum.

The fast 1h period and windows of the other Prometheus tests (`test_prometheus_live`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from test_prometheus_live import (  # noqa: F401  (fixtures)
    CLUSTER,
    PERIOD,
    availability,
    catalogue,
    exporter,
    prometheus_binary,
    scraping_prometheus,
    traffic,
    two_pods_served,
)

from ballast.bus import Bus
from ballast.events.catalogue import CATALOGUE, PLATFORM_EVENTS, SLO_BUDGETS
from ballast.events.contracts.slo import BurnTier
from ballast.kube.informer import ObjectKey
from ballast.local.traffic import TrafficExporter
from ballast.slo import RuleOptions, ServiceLevelObjective, WindowCatalogue
from ballast.slo.evaluation import BudgetState
from ballast.slo_engine.budgets import BudgetBook, BudgetShard
from ballast.slo_engine.prometheus_measure import PrometheusMeasurer
from ballast.slo_engine.prometheus_source import PrometheusSource
from ballast.slo_engine.rules_sync import RuleSync
from ballast.testing import eventually

pytestmark = pytest.mark.cluster


def gated(namespace: str, name: str, minimum: float) -> ServiceLevelObjective:
    return availability(namespace).model_copy(update={"name": name, "min_request_rate": minimum})


async def page_alert(source: PrometheusSource, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = f'alertname="WebAvailability",sloth_severity="page",alertstate="firing",namespace="{namespace}"'
    return await source.query(f'ALERTS{{{selector},sloth_slo="{name}"}}', datetime.now(UTC))


async def test_an_slo_below_its_minimum_request_rate_stays_silent_while_one_above_it_pages(
    kube_api: Any,
    namespace: str,
    exporter: TrafficExporter,
    bus: Bus,
    catalogue: WindowCatalogue,
    prometheus_binary: Path,
    tmp_path: Path,
) -> None:
    await two_pods_served(kube_api, namespace, exporter)
    web = f"{namespace}/web"
    assert await traffic("set", web, "--rps", "5", "--error-rate", "0.1", "--url", exporter.url) == 0

    slos: dict[ObjectKey, ServiceLevelObjective] = {
        (namespace, "busy"): gated(namespace, "busy", 1),
        (namespace, "quiet"): gated(namespace, "quiet", 50),
    }
    windows = catalogue.for_period(PERIOD)
    options = RuleOptions(version=version("ballast-libs"), windows=catalogue)
    prometheus = await scraping_prometheus(exporter, prometheus_binary, tmp_path)
    try:
        sync = RuleSync(None, prometheus.rules_dir, options)
        for (ns, name), objective in slos.items():
            await sync.sync({"metadata": {"namespace": ns, "name": name}}, objective)
        await asyncio.to_thread(prometheus.reload)
        await bus.ensure_streams([PLATFORM_EVENTS])
        await bus.ensure_buckets([SLO_BUDGETS])
        book = BudgetBook(
            await bus.kv(SLO_BUDGETS, BudgetShard), bus.publisher, CATALOGUE.registry, CLUSTER, "/test/slo-engine"
        )
        async with PrometheusSource(prometheus.url) as source:
            measurer = PrometheusMeasurer(source, catalogue)

            async def engine_states() -> dict[str, BudgetState] | None:
                measured = await measurer.measure(slos, datetime.now(UTC).replace(microsecond=0))
                if len(measured) != len(slos):
                    return None
                return {key[1]: await book.evaluate(slos[key], key[0], *measured[key]) for key in sorted(measured)}

            await eventually(
                lambda: page_alert(source, namespace, "busy"), timeout=90, interval=0.5, what="ALERTS: busy paging"
            )

            async def busy_pages() -> dict[str, BudgetState] | None:
                states = await engine_states()
                return states if states is not None and BurnTier.PAGE in states["busy"].firing else None

            states = await eventually(busy_pages, timeout=30, interval=0.5, what="the engine paging for busy")
            # The same errors over the same requests: the quiet SLO burns as fast, below its minimum.
            quiet = states["quiet"]
            assert quiet.firing == {}
            page_long = windows.page.quick.long_window
            factor = windows.page.quick.factor(PERIOD)
            assert quiet.burn_rates[page_long] > factor
            assert not await page_alert(source, namespace, "quiet")

            # The recorded request rates the engine reads: 5 requests/s once the series are older than the window.
            async def steady() -> dict[str, float] | None:
                read = await source.read([], rate_windows=[page_long])
                rates = {key.slo: by[page_long] for key, by in read.rates.items() if key.namespace == namespace}
                return (
                    rates
                    if rates == {"busy": pytest.approx(5, rel=0.05), "quiet": pytest.approx(5, rel=0.05)}
                    else None
                )

            await eventually(steady, timeout=60, interval=0.5, what="5 requests/s recorded for both SLOs")
            states = await eventually(busy_pages, timeout=30, interval=0.5, what="the engine still paging for busy")
            assert states["quiet"].firing == {}
            assert not await page_alert(source, namespace, "quiet")

            # More requests, the same share failing: the quiet SLO's minimum is reached, and it pages too.
            assert await traffic("set", web, "--rps", "100", "--url", exporter.url) == 0
            await eventually(
                lambda: page_alert(source, namespace, "quiet"), timeout=90, interval=0.5, what="ALERTS: quiet paging"
            )

            async def quiet_pages() -> dict[str, BudgetState] | None:
                states = await engine_states()
                return states if states is not None and BurnTier.PAGE in states["quiet"].firing else None

            await eventually(quiet_pages, timeout=30, interval=0.5, what="the engine paging for quiet")
    finally:
        await asyncio.to_thread(prometheus.stop)
