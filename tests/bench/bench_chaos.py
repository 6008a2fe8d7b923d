"""bench-chaos: the chaos-runner's recovery, abort and kill-switch latencies on one local control plane (kwok nodes).

    python tests/bench/bench_chaos.py [--experiments N] [--kill-switch K]

One nats-server, one control plane (3 kwok nodes), one chaos-runner process; N 3-replica Deployments in a namespace
opted in to chaos, one ChaosExperiment each. No baseline: no other chaos tool runs here to compare with, so the
figures are absolute, against the issue's bars (recovery p99 < 5 s, abort p99 < 1000 ms, kill switch with 100 running
experiments < 2000 ms).

Phases:
1. recovery: N pod-delete runs (forced, 2 s), CONCURRENCY at a time; recovery_* is each completed event's
   recovery_seconds (first fault -> the target's pods Ready again, as the runner measures it).
2. abort: N scale-down runs (3 -> 2, 10 minutes), one at a time; once a run's fault is injected, a page-tier
   burn-firing event for its service is published; abort_* is publish -> the aborted event received (the fault is
   reverted and verified before the runner publishes it). The hold is then lifted with the resolved event.
3. kill switch: K (default min(N, 100)) scale-down runs at once; once every fault is injected, `cmd.chaos.stop`
   without an experiment; killswitch_ms is the command's publish -> the K-th aborted event (every fault reverted).
Event arrival is timed on a core NATS subscription to evt.chaos.> (stream publishes reach it as they are stored).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from ballast.bus import Bus
from ballast.events import decode, new_event
from ballast.events.catalogue import REGISTRY
from ballast.events.contracts.chaos import (
    ChaosCommand,
    ExperimentRef,
    PauseChaos,
    RunExperiment,
    StopExperiments,
    chaos_command_subject,
    chaos_command_type,
)
from ballast.events.contracts.slo import (
    AlertState,
)
from ballast.kube.client import api_client
from ballast.kube.install import install, load_manifests
from ballast.kube.resource import DEPLOYMENT, NAMESPACE, Resource
from ballast.kube.rest import send_json
from ballast.local.controlplane import ControlPlane
from ballast.local.nats_server import NatsServer
from ballast.telemetry.metrics import BusMetrics
from ballast.testing.kube import fake_node_deployment_manifest
from ballast.testing.service_process import ServiceProcess
from ballast.testing.slo import burn_alert, publish_burn
from ballast.testing.waiting import eventually

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CRDS = [DEPLOY / "crds" / f"{name}.platform.example.com.yaml" for name in ("webapps", "tenants", "chaosexperiments")]
EXPERIMENTS = Resource("platform.example.com", "v1", "chaosexperiments", "ChaosExperiment")
NAMESPACE_NAME = "bench-chaos"
CLUSTER = "bench"
CONCURRENCY = 10


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] if ordered else float("nan")


def experiment(name: str, app: str, fault: dict[str, Any], duration: str) -> dict[str, Any]:
    return {
        "apiVersion": EXPERIMENTS.api_version,
        "kind": "ChaosExperiment",
        "metadata": {"name": name, "namespace": NAMESPACE_NAME},
        "spec": {
            "target": {"selector": {"matchLabels": {"app": app}}},
            "service": app,
            "fault": fault,
            "duration": duration,
            "hypothesis": {"checkIntervalSeconds": 1},
        },
    }


class Arrivals:
    """Chaos events as they arrive, by run id and kind, with the monotonic time they came."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], tuple[float, Any]] = {}
        self.changed = asyncio.Event()

    async def on_message(self, msg: Any) -> None:
        at = time.monotonic()
        event: Any = decode(msg.headers, msg.data, REGISTRY)
        kind = event.type.split(".")[3]
        self.seen.setdefault((event.data.run_id, kind), (at, event))
        self.changed.set()

    def of(self, kind: str) -> dict[str, tuple[float, Any]]:
        return {run: value for (run, k), value in self.seen.items() if k == kind}

    def by_experiment(self, kind: str, name: str) -> list[tuple[float, Any]]:
        return [value for value in self.of(kind).values() if value[1].data.experiment.name == name]


async def send_command(bus: Bus, command: ChaosCommand, payload: Any) -> float:
    started = time.monotonic()
    await bus.publisher.publish(
        chaos_command_subject(command),
        new_event(chaos_command_type(command), "bench", payload, event_id=payload.request_id),
    )
    return started


def run(name: str) -> RunExperiment:
    return RunExperiment(
        request_id=uuid.uuid4().hex,
        requested_by="bench",
        experiment=ExperimentRef(namespace=NAMESPACE_NAME, name=name),
    )


async def burn(bus: Bus, service: str, state: AlertState) -> float:
    alert = burn_alert(CLUSTER, NAMESPACE_NAME, f"{service}-slo", service, state=state, budget_remaining=0.9)
    started = time.monotonic()
    await publish_burn(bus, alert, source="bench")
    return started


async def no_holds(bus: Bus) -> bool:
    import nats.js.errors

    store = await bus.js.key_value("chaos-runs")
    try:
        keys = await store.keys()
    except nats.js.errors.NoKeysError:
        return True
    return not any(key.startswith("hold.") for key in keys)


async def wait_for(arrivals: Arrivals, predicate: Any, timeout: float, what: str) -> None:
    await eventually(lambda: predicate() or None, timeout=timeout, interval=0.01, what=what)


async def prepare(api: Any, n: int) -> None:
    await install(api, load_manifests(*CRDS))
    await send_json(
        api,
        "POST",
        NAMESPACE.collection(),
        body={
            "metadata": {"name": NAMESPACE_NAME, "labels": {"chaos.platform.example.com/enabled": "true"}},
        },
    )

    async def account() -> bool:
        listed = await send_json(api, "GET", f"/api/v1/namespaces/{NAMESPACE_NAME}/serviceaccounts")
        return any(a["metadata"]["name"] == "default" for a in listed["items"])

    await eventually(account, timeout=30, interval=0.1, what="the namespace's default ServiceAccount")
    for i in range(n):
        await send_json(
            api, "POST", DEPLOYMENT.collection(NAMESPACE_NAME), body=fake_node_deployment_manifest(f"app-{i}", 3)
        )
        await send_json(
            api,
            "POST",
            EXPERIMENTS.collection(NAMESPACE_NAME),
            body=experiment(f"kill-{i}", f"app-{i}", {"kind": "PodDelete", "force": True}, "2s"),
        )
        await send_json(
            api,
            "POST",
            EXPERIMENTS.collection(NAMESPACE_NAME),
            body=experiment(f"scale-{i}", f"app-{i}", {"kind": "ScaleDown", "replicas": 2}, "10m"),
        )

    async def all_ready() -> bool:
        listed = await send_json(api, "GET", DEPLOYMENT.collection(NAMESPACE_NAME))
        return sum(1 for d in listed["items"] if (d.get("status") or {}).get("readyReplicas") == 3) == n

    await eventually(all_ready, timeout=300, interval=0.5, what=f"{n} Deployments Ready")


async def main(n: int, kill_switch: int) -> None:
    with NatsServer() as nats, ControlPlane(nodes=3) as plane:
        api = await api_client(str(plane.kubeconfig_path))
        bus = await Bus.connect(nats.url, name="bench", metrics=BusMetrics(CollectorRegistry()))
        await bus.ensure_streams()
        await bus.ensure_buckets()
        arrivals = Arrivals()
        await bus.nc.subscribe(f"evt.chaos.{CLUSTER}.>", cb=arrivals.on_message)
        await prepare(api, max(n, kill_switch))
        runner = ServiceProcess.module(
            "ballast.chaos_runner",
            nats_url=nats.url,
            KUBECONFIG=str(plane.kubeconfig_path),
            BALLAST_CLUSTER=CLUSTER,
            BALLAST_IDENTITY="bench-runner",
            BALLAST_LOG_LEVEL="WARNING",
        ).start()
        try:
            await runner.wait_status("/readyz", 200, timeout=60)

            # 1. recovery
            for start in range(0, n, CONCURRENCY):
                batch = [f"kill-{i}" for i in range(start, min(n, start + CONCURRENCY))]
                for name in batch:
                    await send_command(bus, ChaosCommand.RUN, run(name))
                await wait_for(
                    arrivals,
                    lambda b=batch: all(arrivals.by_experiment("completed", x) for x in b),
                    120,
                    f"runs {batch[0]}.. completed",
                )
            recoveries = [
                e.data.recovery_seconds
                for _, e in arrivals.of("completed").values()
                if e.data.recovery_seconds is not None
            ]

            # 2. abort on burn
            aborts = []
            for i in range(n):
                name = f"scale-{i}"
                await send_command(bus, ChaosCommand.RUN, run(name))
                await wait_for(arrivals, lambda x=name: arrivals.by_experiment("injected", x), 60, f"{name} injected")
                published = await burn(bus, f"app-{i}", AlertState.FIRING)
                await wait_for(arrivals, lambda x=name: arrivals.by_experiment("aborted", x), 30, f"{name} aborted")
                ((arrived, _),) = arrivals.by_experiment("aborted", name)
                aborts.append((arrived - published) * 1000)
                await burn(bus, f"app-{i}", AlertState.RESOLVED)

            # 3. kill switch (the experiments run once more: each gets a new run id), once the burn holds are lifted
            await eventually(lambda: no_holds(bus), timeout=30, interval=0.1, what="burn holds lifted")
            before = len(arrivals.of("aborted"))
            injected_before = len(arrivals.of("injected"))
            for i in range(kill_switch):
                await send_command(bus, ChaosCommand.RUN, run(f"scale-{i}"))
            await wait_for(
                arrivals,
                lambda: len(arrivals.of("injected")) >= injected_before + kill_switch,
                300,
                f"{kill_switch} faults injected",
            )
            stop = StopExperiments(request_id=uuid.uuid4().hex, requested_by="bench", reason="bench kill switch")
            published = await send_command(bus, ChaosCommand.STOP, stop)
            await wait_for(
                arrivals,
                lambda: len(arrivals.of("aborted")) >= before + kill_switch,
                60,
                f"{kill_switch} runs aborted",
            )
            last = max(at for at, _ in arrivals.of("aborted").values())
            killswitch_ms = (last - published) * 1000
            lift = PauseChaos(request_id=uuid.uuid4().hex, requested_by="bench", paused=False, reason="bench done")
            await send_command(bus, ChaosCommand.PAUSE, lift)
            await runner.stop(timeout=60)
        finally:
            runner.kill()
            await bus.close()
            await api.close()
    print(
        f"recovery: {len(recoveries)} runs, min {min(recoveries):.2f}s, mean {statistics.mean(recoveries):.2f}s; "
        f"abort: {len(aborts)} runs, max {max(aborts):.0f}ms",
        file=sys.stderr,
    )
    print(
        f"bench-chaos: experiments={n} recovery_p50_s={percentile(recoveries, 50):.2f} "
        f"recovery_p99_s={percentile(recoveries, 99):.2f} abort_p99_ms={percentile(aborts, 99):.0f} "
        f"killswitch_ms={killswitch_ms:.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=int(os.environ.get("EXPERIMENTS", "20")))
    parser.add_argument("--kill-switch", type=int, default=None, help="runs stopped at once (default min(N, 100))")
    arguments = parser.parse_args()
    if arguments.kill_switch is not None and not 1 <= arguments.kill_switch <= arguments.experiments:
        # The kill-switch phase runs again the experiments the earlier phases made: no more than there are.
        parser.error(f"--kill-switch must be between 1 and --experiments ({arguments.experiments})")
    asyncio.run(main(arguments.experiments, arguments.kill_switch or min(arguments.experiments, 100)))
