"""`make slo-demo`: an SLO burning and recovering on the local platform, with a real Prometheus, narrated live.

A WebApp (3 replicas on kwok) gets an availability SLO over the synthetic traffic; its Sloth-identical rules go to
the rules directory the platform's Prometheus loads. The demo injects 10 % errors (`ballast traffic set`), deletes a
pod, and takes the errors away again, printing every two seconds what Prometheus records and alerts on and what the
evaluator makes of it (burn rates, budget, firing tiers), and the SLO events on the bus as they arrive.

So that it takes minutes, the SLO's period is 1h with Sloth-format AlertWindows of 5s to 1m (instead of 30d with 5m
to 3d); the factors scale with the period as for any SLO (`ballast.local.demo`). The demo runs no slo-engine process:
it drives the engine's pieces (RuleSync, PrometheusSource, BudgetBook) itself, so that it can print their figures as
they change; `make loop-demo` shows the slo-engine process doing the same among the other services. Budget
attribution to causes is not shown.

    python scripts/slo_demo.py [--state-dir .ballast/slo-demo]      (make slo-demo)

A script, not a `ballast` command: it drives the slo-engine's modules, which the CLI (a library) may not import.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ballast.cli import platform
from ballast.cli.traffic import URL_FILE
from ballast.local.demo import FAST_ALERT_WINDOWS, availability_slo

MANAGER = "ballast-slo-demo"
NAMESPACE = "shop"
WEBAPP = "web"
SLO = availability_slo(NAMESPACE, WEBAPP)


def _say(message: str) -> None:
    print(f"[slo-demo] {message}", flush=True)


async def _until(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 120.0) -> float:
    started = time.monotonic()
    while not await probe():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(0.5)
    return time.monotonic() - started


def _traffic(url: str, method: str, body: dict[str, Any] | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass


async def _script(where: platform.Platform, state_dir: Path) -> None:
    import nats
    from nats.js.api import DeliverPolicy
    from prometheus_client import CollectorRegistry

    from ballast.bus import Bus
    from ballast.events.catalogue import CATALOGUE, PLATFORM_EVENTS, SLO_BUDGETS
    from ballast.events.contracts.slo import BurnTier
    from ballast.kube.apply import apply, delete, get
    from ballast.kube.client import api_client
    from ballast.kube.resource import DEPLOYMENT, POD, Resource
    from ballast.kube.resource import WEBAPP as WEBAPPS
    from ballast.kube.rest import send_json
    from ballast.slo import RuleOptions, WindowCatalogue
    from ballast.slo.crd import ServiceLevelObjectiveSpec, to_objective
    from ballast.slo.durations import format_duration
    from ballast.slo_engine.budgets import BudgetBook, BudgetShard
    from ballast.slo_engine.prometheus_source import PrometheusSource, SeriesSlo, windows_to_read
    from ballast.slo_engine.rules_sync import RuleSync
    from ballast.telemetry.metrics import BusMetrics

    if where.kubeconfig is None or where.prometheus_url is None:
        raise RuntimeError("the demo needs the cluster and Prometheus (make tools builds it)")
    traffic_url = (state_dir / URL_FILE).read_text().strip()
    windows_dir = state_dir / "alert-windows"
    windows_dir.mkdir(parents=True, exist_ok=True)
    (windows_dir / "fast.yaml").write_text(FAST_ALERT_WINDOWS)
    catalogue = WindowCatalogue.from_directory(windows_dir)
    windows = catalogue.for_period(timedelta(hours=1))
    slos = Resource("platform.example.com", "v1", "servicelevelobjectives", "ServiceLevelObjective")

    api = await api_client(str(where.kubeconfig))
    bus = await Bus.connect(where.nats_url, name="slo-demo", metrics=BusMetrics(CollectorRegistry()))
    await bus.ensure_streams([PLATFORM_EVENTS])
    await bus.ensure_buckets([SLO_BUDGETS])
    book = BudgetBook(
        await bus.kv(SLO_BUDGETS, BudgetShard), bus.publisher, CATALOGUE.registry, "local", "/local/slo-demo"
    )
    nc = await nats.connect(where.nats_url)

    async def show_event(msg: Any) -> None:
        headers = msg.headers or {}
        data = json.loads(msg.data)
        left = data.get("budget_remaining")
        figure = f" budget left {left:.0%}" if isinstance(left, float) else ""
        _say(f"  event {headers.get('ce-type', '?')}{figure}")

    await nc.jetstream().subscribe("evt.slo.>", cb=show_event, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)

    async with api, PrometheusSource(where.prometheus_url) as source:
        _say(f"1/6 namespace {NAMESPACE} and WebApp {NAMESPACE}/{WEBAPP} with 3 replicas (on kwok's fake nodes)")
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        await apply(api, namespace, field_manager=MANAGER)
        webapp = {
            "apiVersion": "platform.example.com/v1",
            "kind": "WebApp",
            "metadata": {"name": WEBAPP, "namespace": NAMESPACE},
            "spec": {"image": "registry.example.com/shop/web:1.0.0", "replicas": 3},
        }
        await apply(api, webapp, field_manager=MANAGER, resource=WEBAPPS)

        async def three_ready() -> bool:
            deployment = await get(api, DEPLOYMENT, NAMESPACE, WEBAPP) or {}
            return (deployment.get("status") or {}).get("readyReplicas") == 3

        _say(f"    3/3 ready in {await _until(three_ready, 'WebApp ready'):.1f}s; synthetic traffic {traffic_url}")

        _say("2/6 SLO availability: 99 % of requests not 5xx over 1h (alert windows 5s..1m, Sloth format)")
        stored = await apply(api, SLO, field_manager=MANAGER, resource=slos)
        objective = to_objective(NAMESPACE, "availability", ServiceLevelObjectiveSpec.model_validate(stored["spec"]))
        rules_dir = state_dir / "prometheus" / "rules"  # where `ballast up` points its Prometheus
        sync = RuleSync(api, rules_dir, RuleOptions(version=version("ballast-libs"), windows=catalogue))
        synced = await sync.sync(stored, objective)
        _say(f"    rules written to {synced.rule_file}; Prometheus {where.prometheus_url} reloads them")

        key = SeriesSlo.of(NAMESPACE, objective)
        to_read = windows_to_read([windows])
        shown = [windows.page.quick.short_window, windows.page.quick.long_window, max(windows.windows())]

        async def alerts() -> list[str]:
            found = await source.query(f'ALERTS{{alertstate="firing",namespace="{NAMESPACE}"}}', datetime.now(UTC))
            return sorted({sample["metric"].get("sloth_severity", "?") for sample in found})

        async def figures() -> tuple[set[BurnTier], list[str]] | None:
            readings = await source.read(to_read)
            measurement = readings.measurement(key, windows)
            if measurement is None:
                return None
            state = await book.evaluate(objective, NAMESPACE, windows, measurement)
            burns = state.burn_rates
            in_prometheus = await alerts()
            firing = set(state.firing)
            engine = ",".join(sorted(firing)) or "-"
            rates = " ".join(f"{format_duration(w)}={burns[w]:5.2f}" for w in shown)
            _say(
                f"    burn {rates}  budget left {state.budget_remaining:7.1%}  engine firing: {engine:<12} "
                f"Prometheus ALERTS: {','.join(in_prometheus) or '-'}"
            )
            return firing, in_prometheus

        async def watch(done: Callable[[set[BurnTier], list[str]], bool], what: str, timeout: float = 120) -> float:
            started = time.monotonic()
            while True:
                seen = await figures()
                if seen is not None and done(*seen):
                    return time.monotonic() - started
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"{what}: not within {timeout:.0f}s")
                await asyncio.sleep(2)

        _say("3/6 healthy traffic: every window recorded, nothing burning")
        _say("    (the budget's period so far is only as long as this Prometheus has run, so errors spend it fast)")
        await watch(lambda firing, alerting: not firing and not alerting, "a calm start", timeout=60)
        for _ in range(3):
            await figures()
            await asyncio.sleep(2)

        _say(f"4/6 inject 10 % errors: ballast traffic set {NAMESPACE}/{WEBAPP} --error-rate 0.1")
        await asyncio.to_thread(_traffic, f"{traffic_url}/webapps/{NAMESPACE}/{WEBAPP}", "PUT", {"errorRate": 0.1})
        took = await watch(
            lambda firing, alerting: BurnTier.PAGE in firing and "page" in alerting, "the page tier firing"
        )
        _say(f"    page tier firing in Prometheus and in the engine after {took:.0f}s")

        _say("5/6 recover: ballast traffic reset; then a pod deleted costs 503s until replaced")
        await asyncio.to_thread(_traffic, f"{traffic_url}/webapps/{NAMESPACE}/{WEBAPP}", "DELETE")
        selector = [("labelSelector", f"app.kubernetes.io/name={WEBAPP}")]
        pods = await send_json(api, "GET", POD.collection(NAMESPACE), query=selector)
        if pods.get("items"):
            await delete(api, POD, NAMESPACE, pods["items"][0]["metadata"]["name"])
        took = await watch(lambda firing, alerting: not firing and not alerting, "recovery")
        _say(f"    cleared in both after {took:.0f}s; the budget spent stays spent until it leaves the 1h period")

        _say("6/6 clean up: the SLO, its rules and the WebApp")
        await delete(api, slos, NAMESPACE, "availability")
        await sync.remove(NAMESPACE, "availability")
        await delete(api, WEBAPPS, NAMESPACE, WEBAPP)
    await nc.drain()
    await bus.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/slo_demo.py", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", default=".ballast/slo-demo")
    parser.add_argument("--nats-port", type=int, default=4224)
    parser.add_argument("--http-port-base", type=int, default=8101, help="first of the services' HTTP ports")
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir).resolve()

    def run(where: platform.Platform) -> int:
        try:
            asyncio.run(_script(where, state_dir))
        except (TimeoutError, RuntimeError) as exc:
            _say(f"FAILED: {exc}")
            return 1
        _say("done: SLO rules in Prometheus, errors paged in both, recovery cleared both")
        return 0

    return platform.up(
        nodes=2,
        with_cluster=True,
        nats_port=args.nats_port,
        state_dir=str(state_dir),
        only=("reconciler",),
        then=run,
        http_port_base=args.http_port_base,
    )


if __name__ == "__main__":
    sys.exit(main())
