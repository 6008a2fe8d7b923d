"""bench-slo: the slo-engine's evaluation cycle over N SLOs against a real Prometheus, its bus-fact ingest against a
raw JetStream consume+ack of the same events in the same run, and `svc.slo.status` latency.

    python tests/bench/bench_slo.py [--slos N] [--events E] [--webapps W] [--burst B] [--requests R]

One nats-server, one Prometheus (the one `make tools` builds), one slo-engine process (`python -m ballast.slo_engine`)
whose kubeconfig points at nothing: it never leads (no Kubernetes here), so its ingest and `svc.slo.status` are those
of any replica. This process plays the leader's evaluation.

Phases:
1. ingest: E Deployment facts (`evt.k8s`, ready replicas going down and up) about W WebApps, B in a row about each
   (a rollout or a lost replica is told in a burst), are stored on K8S_EVENTS before anything consumes them. raw: a
   durable pull consumer of this process with the engine's filter fetches and acks them all (nats-py, 256 a fetch,
   no decoding): events/s from the first fetch to the last ack flushed. engine: the engine process starts and works
   through the same backlog on its durable `slo-engine-facts` (decoded, each WebApp's record written to the
   `slo-sli` bucket before the ack); events/s from the first to the last ack seen in the consumer's info (polled
   every 10 ms). Then raw again, on a new durable. ingest_ratio = engine / the mean of the two raw runs (a
   neighbour's load on a shared machine moves a single run a lot).
2. evaluation: N SLOs with PromQL SLIs (event ratio, 30d rolling, page and ticket tiers; 100 per namespace, 1 in 100
   burning fast enough to page). Their SLIs are PromQL, so the engine reads them from the series their recording
   rules record (`slo:sli_error:ratio_rate<window>`, one instant query per window for all SLOs). Prometheus scrapes
   those series from an exporter in this process rather than evaluating N x 8 recording rules on this machine (the
   engine reads a recorded series the same way whoever wrote it); the engine's rules themselves are tested in
   tests/test_prometheus_live.py. One cycle is the leader's `Evaluator.evaluate_all` with the Prometheus measurer and
   the budget book on the real `slo-budgets` bucket: read, evaluate, store the states in their shards
   (compare-and-set), publish the transitions. The first cycle creates every state and publishes the page tiers'
   firing events; then every series moves (x1.5, scraped before going on) and eval_cycle_ms is the second cycle
   (every state's figures changed: every state stored); a third over the same series (figures unchanged: no state
   stored again) is printed too. What the bench built before (the N objectives, the facts) is frozen out of the
   collector's way first, as an engine's start-up is. Every phase's line says the host's CPU steal meanwhile.
3. status: R `svc.slo.status` requests for one SLO each (namespace and name, a different SLO each time) sent to the
   engine process over the bus once its view holds the N states as the second cycle stored them (not while it is
   still applying that cycle's shard writes); status_p99_ms from R after a warm-up.

    python tests/bench/bench_slo.py --slos 1000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import CollectorRegistry

from ballast.bus import Bus
from ballast.events.catalogue import K8S_EVENTS, SLO_BUDGETS, SLO_ENGINE_FACTS
from ballast.events.contracts.common import ObjectRef
from ballast.events.contracts.k8s import ObservedObject
from ballast.events.contracts.slo import SLO_STATUS, SloStatusRequest, SloStatusResponse
from ballast.events.envelope import new_event
from ballast.local.nats_server import NatsServer, free_port
from ballast.local.prometheus import Prometheus, ScrapeTarget
from ballast.runtime import collector
from ballast.slo import Alerting, AlertTier, EventRatioSli, RollingWindow, ServiceLevelObjective, WindowCatalogue
from ballast.slo.rules import NAMESPACE_LABEL
from ballast.slo_engine.budgets import BudgetBook, BudgetShard
from ballast.slo_engine.evaluator import Evaluator
from ballast.slo_engine.prometheus_measure import PrometheusMeasurer
from ballast.slo_engine.prometheus_source import PrometheusSource, sli_record, windows_to_read
from ballast.telemetry.metrics import BusMetrics
from ballast.testing import ServiceProcess, eventually
from ballast.testing.host import CpuTimes

CLUSTER = "bench"
PER_NAMESPACE = 100
PERIOD = timedelta(days=30)
BURNING_EVERY = 100  # one SLO in this many burns at 20x its budget (the page tier fires)
WARM_UP = 100
MOVED = 1.5  # the series' scale from the second cycle on


def log(message: str) -> None:
    print(f"bench-slo: {message}", file=sys.stderr, flush=True)


def stolen(since: CpuTimes) -> str:
    """The host's CPU time the hypervisor gave other guests since `since` (see ballast.testing.host): a shared
    machine's figures move with it."""
    return f", host CPU steal {CpuTimes.now().steal_pct_since(since):.1f}%"


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) >= 2 else samples[0]


# --- the SLOs and their recorded series -------------------------------------------------------------------------


def slo_key(i: int) -> tuple[str, str]:
    return f"team-{i // PER_NAMESPACE}", f"slo-{i}"


def objective(i: int) -> ServiceLevelObjective:
    namespace, name = slo_key(i)
    service = f"svc-{i}"
    where = f'namespace="{namespace}",service="{service}"'
    return ServiceLevelObjective(
        service=service,
        name=name,
        objective=99.9,
        window=RollingWindow(length=PERIOD),
        sli=EventRatioSli(
            error_query=f'sum(rate(http_requests_total{{{where},code=~"5.."}}[{{{{.window}}}}]))',
            total_query=f"sum(rate(http_requests_total{{{where}}}[{{{{.window}}}}]))",
        ),
        alerting=Alerting(name="BenchBurn", page=AlertTier(), ticket=AlertTier()),
    )


def exposition(n: int, windows: list[timedelta], scale: float = 1.0) -> bytes:
    """The series the SLOs' recording rules record, labelled as `rules_sync` labels them; `scale` moves every ratio
    (every SLO's figures change, no tier starts or stops firing)."""
    lines = []
    for window in windows:
        record = sli_record(window)
        lines.append(f"# TYPE {record.replace(':', '_')} gauge")
        for i in range(n):
            namespace, name = slo_key(i)
            burning = i % BURNING_EVERY == 0
            ratio = scale * (0.0005 if window == PERIOD else (0.02 if burning else 0.0001))
            labels = (
                f'{NAMESPACE_LABEL}="{namespace}",sloth_service="svc-{i}",sloth_slo="{name}",'
                f'sloth_id="svc-{i}-{name}",sloth_window="{record.removeprefix("slo:sli_error:ratio_rate")}"'
            )
            lines.append(f"{record}{{{labels}}} {ratio}")
    return ("\n".join(lines) + "\n").encode()


async def serve_series(body: list[bytes]) -> tuple[web.AppRunner, int]:
    """Serves body[0] (replace it to change the series)."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=body[0], content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def moved(url: str, n: int) -> bool:
    """Whether Prometheus serves the moved series (the last SLO's period ratio) yet."""
    namespace, name = slo_key(n - 1)
    expr = f'{sli_record(PERIOD)}{{{NAMESPACE_LABEL}="{namespace}",sloth_slo="{name}"}}'
    async with PrometheusSource(url) as source:
        found = await source.query(expr, datetime.now(UTC))
    return bool(found) and abs(float(found[0]["value"][1]) - 0.0005 * MOVED) < 1e-9


# --- ingest -----------------------------------------------------------------------------------------------------


def facts(events: int, webapps: int, burst: int) -> list[tuple[str, Any]]:
    """Deployment facts about `webapps` WebApps in turn, `burst` in a row about each (as a rollout or a lost replica
    tells them: ready replicas going 2, 3, 2, 3...); dated in the last minutes, oldest first."""
    start = datetime.now(UTC) - timedelta(seconds=max(60, events // 100))
    step = (datetime.now(UTC) - timedelta(seconds=5) - start) / events
    found = []
    for i in range(events):
        w = (i // burst) % webapps
        namespace, name = f"team-{w // PER_NAMESPACE}", f"web-{w}"
        observed = ObservedObject(
            cluster=CLUSTER,
            object=ObjectRef(api_version="apps/v1", kind="Deployment", namespace=namespace, name=name, uid=f"d{w}"),
            resource_version=str(i + 1),
            owner=ObjectRef(
                api_version="platform.example.com/v1", kind="WebApp", namespace=namespace, name=name, uid=f"w{w}"
            ),
            replicas=3,
            ready_replicas=3 if i % 2 else 2,
        )
        event = new_event("io.k8s.deployment.updated.v1", "/bench", observed, time=start + step * i)
        found.append((f"evt.k8s.{CLUSTER}.{namespace}.Deployment.updated", event))
    return found


async def raw_ingest(bus: Bus, events: int, durable: str) -> float:
    """Events/s of a plain pull consumer with the engine's filter: fetch 256, ack each, no decoding."""
    await bus.js.add_consumer(
        K8S_EVENTS.name,
        ConsumerConfig(
            durable_name=durable,
            filter_subjects=list(SLO_ENGINE_FACTS.filter_subjects),
            ack_policy=AckPolicy.EXPLICIT,
            max_ack_pending=SLO_ENGINE_FACTS.max_ack_pending,
        ),
    )
    subscription = await bus.js.pull_subscribe_bind(durable, K8S_EVENTS.name)
    done = 0
    started = time.perf_counter()
    while done < events:
        for msg in await subscription.fetch(SLO_ENGINE_FACTS.max_ack_pending, timeout=5):
            await msg.ack()
            done += 1
    await bus.nc.flush()
    elapsed = time.perf_counter() - started
    await subscription.unsubscribe()
    await bus.js.delete_consumer(K8S_EVENTS.name, durable)
    return events / elapsed


async def engine_ingest(bus: Bus, events: int, timeout: float) -> float:
    """Events/s of the engine's facts durable working through the backlog, from its first ack to its last."""
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    while time.monotonic() < deadline:
        try:
            info = await bus.js.consumer_info(K8S_EVENTS.name, SLO_ENGINE_FACTS.durable)
        except Exception:  # not created yet: the engine is starting
            await asyncio.sleep(0.01)
            continue
        now = time.perf_counter()
        acked = events - info.num_pending - info.num_ack_pending
        if first is None and acked > 0:
            first = (now, acked)
        if acked >= events and first is not None:
            return (events - first[1]) / (now - first[0]) if now > first[0] else float("inf")
        if time.monotonic() - last_report > 5:
            log(f"engine ingest: {acked}/{events} acked")
            last_report = time.monotonic()
        await asyncio.sleep(0.01)
    raise TimeoutError(f"the engine did not ingest {events} facts within {timeout}s")


def dead_kubeconfig(directory: Path) -> Path:
    """A kubeconfig naming an API server that is not there: the engine campaigns for the lease and never leads."""
    path = directory / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: none, cluster: {{server: "https://127.0.0.1:{free_port()}", insecure-skip-tls-verify: true}}}}]
users: [{{name: none, user: {{token: none}}}}]
contexts: [{{name: none, context: {{cluster: none, user: none}}}}]
current-context: none
"""
    )
    return path


# --- the run ----------------------------------------------------------------------------------------------------


async def main(n: int, events: int, webapps: int, burst: int, requests: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-slo-"))
    catalogue = WindowCatalogue.builtin()
    objectives = {slo_key(i): objective(i) for i in range(n)}
    windows = sorted(windows_to_read([catalogue.for_period(PERIOD)]))
    served = [exposition(n, windows)]
    series, series_port = await serve_series(served)
    with (
        NatsServer() as nats_server,
        Prometheus(
            [ScrapeTarget("bench-slis", f"127.0.0.1:{series_port}")],
            data_dir=work / "prometheus",
            scrape_interval=timedelta(seconds=5),
            evaluation_interval=timedelta(seconds=5),
        ) as prometheus,
    ):
        bus = await Bus.connect(nats_server.url, name="bench", metrics=BusMetrics(CollectorRegistry()))
        engine: ServiceProcess | None = None
        try:
            await bus.ensure_streams()
            await bus.ensure_buckets()
            await bus.ensure_consumer(SLO_ENGINE_FACTS)

            # 1. ingest
            backlog = facts(events, webapps, burst)
            for start in range(0, events, 1000):
                await bus.publisher.publish_all(backlog[start : start + 1000])
            log(f"{events} facts about {webapps} WebApps stored; raw consume+ack")
            host = CpuTimes.now()
            raw_before = await raw_ingest(bus, events, "bench-raw-before")
            log(f"raw: {raw_before:.0f} events/s{stolen(host)}; starting the engine")
            engine = ServiceProcess.module(
                "ballast.slo_engine",
                nats_url=nats_server.url,
                KUBECONFIG=str(dead_kubeconfig(work)),
                BALLAST_CLUSTER=CLUSTER,
                BALLAST_LOG_LEVEL="ERROR",
            ).start()
            host = CpuTimes.now()
            engine_rate = await engine_ingest(bus, events, timeout=max(120, events / 50))
            log(f"engine: {engine_rate:.0f} events/s{stolen(host)} (from its start); raw consume+ack again")
            host = CpuTimes.now()
            raw_after = await raw_ingest(bus, events, "bench-raw-after")
            raw_rate = (raw_before + raw_after) / 2  # before and after: a neighbour's load moves both alike
            log(f"raw: {raw_after:.0f} events/s{stolen(host)}; engine / mean raw: {engine_rate / raw_rate:.2f}")
            await engine.wait_status("/readyz", 200, timeout=60)

            # 2. evaluation
            async def scraped() -> bool:
                async with PrometheusSource(prometheus.url) as source:
                    found = await source.query(f"count({sli_record(windows[0])})", datetime.now(UTC))
                return bool(found) and int(float(found[0]["value"][1])) == n

            await eventually(scraped, timeout=120, interval=0.5, what=f"Prometheus holding the series of {n} SLOs")
            log(f"Prometheus holds the series of {n} SLOs ({len(windows)} windows); evaluating")
            # What this process built so far (the N objectives, the ingest's facts) is, in an engine at its n-th
            # cycle, long past the young generations; frozen here so that the cycles' collections do not walk it as
            # new (a 0.5-0.7 s pass in the second cycle otherwise), as `settle` does for an engine's start-up.
            del backlog
            collector.settle()
            book = BudgetBook(
                await bus.kv(SLO_BUDGETS, BudgetShard), bus.publisher, bus.catalogue.registry, CLUSTER, "/bench"
            )
            cycles: list[float] = []
            moments: list[datetime] = []
            # BENCH_SLO_PROFILE=<file>: each cycle runs under cProfile, its stats written to <file>.cycle<k>.
            profile = os.environ.get("BENCH_SLO_PROFILE")
            async with PrometheusSource(prometheus.url) as source:
                evaluator = Evaluator(lambda: objectives, [PrometheusMeasurer(source, catalogue)], book, interval=10.0)
                for cycle in range(3):
                    if cycle == 1:  # every SLO's figures move before the second cycle: every state is stored
                        served[0] = exposition(n, windows, scale=MOVED)
                        await eventually(
                            lambda: moved(prometheus.url, n), timeout=60, interval=0.5, what="the moved series scraped"
                        )
                    profiler = cProfile.Profile() if profile else None
                    started, cpu, host = time.perf_counter(), time.process_time(), CpuTimes.now()
                    if profiler is not None:
                        profiler.enable()
                    moments.append(datetime.now(UTC))
                    evaluated = await evaluator.evaluate_all(moments[-1])
                    cycles.append((time.perf_counter() - started) * 1000)
                    if profiler is not None:
                        profiler.disable()
                        profiler.dump_stats(f"{profile}.cycle{cycle + 1}")
                    if evaluated != n:
                        sys.exit(f"bench-slo: cycle {cycle + 1} evaluated {evaluated} SLOs of {n}")
                    cpu_ms = (time.process_time() - cpu) * 1000
                    what = ("every state created", "every state's figures moved", "the same figures: none stored")
                    log(
                        f"cycle {cycle + 1} ({what[cycle]}): {evaluated} SLOs in {cycles[-1]:.0f} ms "
                        f"({cpu_ms:.0f} ms CPU here{stolen(host)})"
                    )

            # 3. status
            per_namespace = collections.Counter(slo_key(i)[0] for i in range(n))

            async def holds_all() -> bool:
                # Every state the second cycle stored (or a later one): the view has applied every shard it wrote.
                for namespace, count in sorted(per_namespace.items()):
                    answer = await bus.request(SLO_STATUS, SloStatusRequest(namespace=namespace), timeout=5)
                    assert isinstance(answer, SloStatusResponse)
                    if len(answer.slos) < count or any(s.evaluated_at < moments[1] for s in answer.slos):
                        return False
                return True

            await eventually(holds_all, timeout=120, interval=0.2, what=f"the engine's view holding {n} SLOs")
            picks = random.Random(16)
            latencies = []
            host = CpuTimes.now()
            for i in range(WARM_UP + requests):
                namespace, name = slo_key(picks.randrange(n))
                started = time.perf_counter()
                answer = await bus.request(SLO_STATUS, SloStatusRequest(namespace=namespace, name=name), timeout=5)
                took = (time.perf_counter() - started) * 1000
                if not isinstance(answer, SloStatusResponse) or len(answer.slos) != 1:
                    sys.exit(f"bench-slo: svc.slo.status answered {answer!r} for {namespace}/{name}")
                if i >= WARM_UP:
                    latencies.append(took)
            log(
                f"status: {requests} requests, p50 {statistics.median(latencies):.2f} ms, "
                f"p99 {p99(latencies):.2f} ms, max {max(latencies):.2f} ms{stolen(host)}"
            )
            await engine.stop(timeout=30)
        finally:
            if engine is not None:
                engine.kill()
            await bus.close()
            await series.cleanup()
    log(f"first cycle (every state created, {n // BURNING_EVERY} page tiers firing): {cycles[0]:.0f} ms")
    log(f"third cycle (figures unchanged, no state stored): {cycles[2]:.0f} ms")
    print(
        f"bench-slo: slos={n} eval_cycle_ms={cycles[1]:.0f} events={events} "
        f"ingest_ratio={engine_rate / raw_rate:.2f} status_p99_ms={p99(latencies):.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slos", type=int, default=int(os.environ.get("SLOS", "10000")))
    parser.add_argument("--events", type=int, default=20000, help="facts ingested (default 20000)")
    parser.add_argument("--webapps", type=int, default=1000, help="WebApps the facts are about (default 1000)")
    parser.add_argument("--burst", type=int, default=10, help="facts in a row about one WebApp (default 10)")
    parser.add_argument("--requests", type=int, default=2000, help="svc.slo.status requests timed (default 2000)")
    arguments = parser.parse_args()
    if min(arguments.slos, arguments.events, arguments.webapps, arguments.burst) < 1 or arguments.requests < 2:
        parser.error("--slos, --events, --webapps and --burst must be at least 1, --requests at least 2")
    collector.settle(collector.BUSY_SERVICE)  # as the engine process does once started
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as the engine runs (run_service)
        runner.run(main(arguments.slos, arguments.events, arguments.webapps, arguments.burst, arguments.requests))
