"""bench-operator: N WebApps through the reconciler against N Deployments+Services created directly (the raw
baseline), on one local control plane (kwok nodes), in the same run.

    python tests/bench/bench_operator.py [--webapps N] [--per-namespace K] [--workers W]
    BENCH_RECONCILER_PYTHON=/other/checkout/.venv/bin/python python tests/bench/bench_operator.py ...

The second form runs the reconciler of another checkout (its interpreter's `ballast.reconciler`) under this harness:
a change's before and after, measured by the same phases against the same baseline.

The apps are spread over namespaces of PER_NAMESPACE (100) each, as a platform's tenants hold them, in both paths:
Kubernetes' own controllers scan a whole namespace on every sync (the ReplicaSets of a Deployment, the pods and
Services behind an EndpointSlice), so N apps in one namespace cost them O(N) per change. `--per-namespace K` sets
the spread; K >= N puts every app in one namespace, to measure that case.

Phases, one control plane, each timed phase started on a quiet cluster (all processes together under half a core)
and in namespaces that exist with their default ServiceAccounts (a controller makes those; pods wait for them):
1. raw before: N Deployments+Services created at once with kubernetes-asyncio: the very objects the reconciler
   renders for the WebApps of phase 2 (hardened pod template, probes, rolling update), so the ratio measures the
   operator, not the hardening; timed until every Deployment is Ready. The namespaces are then deleted and the run
   waits until they are gone, so the operator phase starts from the same empty cluster.
2. operator (the burst): N WebApps created at once; timed until every WebApp reports Ready. Their create -> Ready
   latencies are burst_ready_*: in a burst a WebApp's latency is its place in the queue of the whole burst. While the
   burst converges, a WebApp already Ready has its child Service deleted every HEAL_BURST_EVERY s (up to
   HEAL_SAMPLES): the time until the Service is back is heal_burst_*, a repair waiting behind the burst.
3. steady: with the N WebApps in place and the cluster quiet again, SAMPLES more are applied one every 1/RATE s,
   as users do; steady_ready_* are their create -> Ready latencies.
4. heal idle: a child Service of an existing WebApp deleted -> back (heal_idle_*), HEAL_SAMPLES times, one at a time.
5. raw after: the reconciler stopped and its namespaces deleted, phase 1 again. converge_ratio = the mean of the
   two raw times / the operator time: this host's speed drifts by a fifth within minutes (the same work taking that
   much more CPU time too), and a baseline on each side of the operator phase cancels a steady drift.
rss_peak_mb is the reconciler process's peak resident memory (VmHWM) through phases 2-4, rss_final_mb its resident
memory at the end of phase 4; its resident memory every RSS_EVERY s, with the phase under way, is printed as a curve.
CPU seconds per process and phase are printed, to show where the machine's two cores went.

Reading the burst: both paths keep every core busy, so converge_ratio is close to the ratio of the CPU work the two
need (the operator's extra: the WebApp itself, its status, a ServiceAccount and NetworkPolicy, server-side applies,
an Event, its watches). The latency line shows the one step both paths take in single file: the API server allocates
each Service's cluster IP under one lock (writing an IPAddress object per Service), so Services are created one after
another, at a rate that falls as the API server gets busier. The reconciler does not let that line pace its other
children: a reconcile leaves a slow write under way (ballast.reconciler.writes), so Deployments reach Kubernetes
ahead of their Services and close together, as in the raw burst; a reconciler that waited for each Service would hand
Deployments over at that line's pace. (Deployments that arrive one by one also get more status writes and conflicts
from Kubernetes' controllers, at about the same CPU: `make bench-arrival` compares the two.)
The line `converge_ratio with a reconciler using no CPU` takes the reconciler's own CPU out of the operator phase
(its wall time scaled by the CPU the other processes used): what the control plane's work for the WebApps and their
children leaves to win by making the reconciler cheaper.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from ballast.kube.apply import apply
from ballast.kube.client import api_client
from ballast.kube.informer import Informer
from ballast.kube.install import install, load_manifests
from ballast.kube.resource import DEPLOYMENT, SERVICE, WEBAPP, resource_for
from ballast.kube.rest import send, send_json
from ballast.local.controlplane import ControlPlane
from ballast.local.nats_server import NatsServer, free_port
from ballast.reconciler.api import API_VERSION, WebApp
from ballast.reconciler.render import MANAGED_BY, MANAGED_BY_LABEL, render
from ballast.testing.waiting import eventually

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SPEC = {"image": "registry.example.com/shop/web:1.2.3", "monitoring": {"enabled": False}}
CONCURRENCY = 32
PER_NAMESPACE = 100
SAMPLES = 100
RATE = 5.0  # WebApps per second in the steady phase
HEAL_SAMPLES = 50
HEAL_BURST_EVERY = 1.0  # seconds between heals started during the burst
RSS_EVERY = 10.0  # seconds between samples of the reconciler's resident memory
TICKS = os.sysconf("SC_CLK_TCK")
MANAGED = f"{MANAGED_BY_LABEL}={MANAGED_BY}"  # the label on every rendered child, raw ones included


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of /proc/<pid>/status in MB: VmRSS (resident now) or VmHWM (the most resident so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssCurve:
    """The reconciler's resident memory every RSS_EVERY seconds from its start, each sample labelled with the phase
    under way: the curve, where one figure at the end would hide the peak and when it came."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.phase = "start"
        self.samples: list[tuple[float, float, str]] = []  # (seconds since start, MB, phase)

    async def run(self, stop: asyncio.Event) -> None:
        """Samples until `stop`, and once more then: the curve ends where the measurement does."""
        started = time.monotonic()
        while True:
            self.samples.append((time.monotonic() - started, memory_mb(self.pid), self.phase))
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RSS_EVERY):  # the sampling period, not synchronisation
                    await stop.wait()

    def report(self) -> str:
        rows = [f"{t:6.0f} {mb:6.0f}  {phase}" for t, mb, phase in self.samples]
        return f"reconciler rss every {RSS_EVERY:g}s (t_s rss_mb phase):\n" + "\n".join(rows)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def quiet(cpu: CpuMeter, cores: float = 0.5, window: float = 5.0, timeout: float = 900.0) -> float:
    """Waits until the measured processes together use less than `cores` over `window` seconds: every controller
    has worked off the burst. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = sum(cpu_seconds(pid) for pid in cpu.processes.values())
        await asyncio.sleep(window)  # the measurement window, not synchronisation
        if (sum(cpu_seconds(pid) for pid in cpu.processes.values()) - before) / window < cores:
            return time.monotonic() - started
    raise TimeoutError(f"the cluster stayed busy (over {cores} cores) for {timeout:.0f}s after the burst")


class CpuMeter:
    """CPU seconds each process spent between `start()` and `report()`."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = processes
        self._start: dict[str, float] = {}

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.processes.items()}

    def used(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self._start.get(name, 0.0) for name, pid in self.processes.items()}

    def report(self, phase: str, elapsed: float) -> str:
        used = self.used()
        parts = " ".join(f"{name}={seconds:.0f}" for name, seconds in sorted(used.items(), key=lambda kv: -kv[1]))
        return f"{phase} cpu_s over {elapsed:.0f}s wall: {parts} (total {sum(used.values()):.0f})"


Latencies = dict[str, tuple[float, float]]  # request kind -> (seconds, count)


def _request_kind(line: str, *, with_code: bool) -> str:
    """'VERB resource[/subresource]' of one apiserver_request_* sample, '(code)' added to failures if asked."""
    labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(","))
    labels = {k: v.strip('"') for k, v in labels.items()}
    subresource = f"/{labels['subresource']}" if labels.get("subresource") else ""
    failed = f"({labels['code']})" if with_code and not labels.get("code", "200").startswith("2") else ""
    return f"{labels['verb']} {labels['resource']}{subresource}{failed}"


async def apiserver_requests(api: Any) -> tuple[dict[str, float], Latencies]:
    """From one scrape of the API server's own metrics: apiserver_request_total by request kind and status, and the
    total seconds and count of apiserver_request_duration_seconds by request kind (watches left out)."""
    response = await send(api, "GET", "/metrics")
    text = (await response.read()).decode()
    counts: dict[str, float] = {}
    latencies: Latencies = {}
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            what = _request_kind(line, with_code=True)
            counts[what] = counts.get(what, 0.0) + float(line.rsplit(" ", 1)[1])
            continue
        is_sum = line.startswith("apiserver_request_duration_seconds_sum{")
        if not (is_sum or line.startswith("apiserver_request_duration_seconds_count{")):
            continue
        what = _request_kind(line, with_code=False)
        if what.startswith(("WATCH ", "CONNECT ")):
            continue
        seconds, count = latencies.get(what, (0.0, 0.0))
        value = float(line.rsplit(" ", 1)[1])
        latencies[what] = (seconds + value, count) if is_sum else (seconds, count + value)
    return counts, latencies


def latency_summary(before: Latencies, after: Latencies, n: int) -> str:
    """Mean API server latency of the requests made about once per app or more, slowest first: one serialised step
    (a Service's cluster IP is allocated under one lock) shows here as a latency far above the rest."""
    rows = []
    for what, (seconds, count) in after.items():
        was_seconds, was_count = before.get(what, (0.0, 0.0))
        if count - was_count >= n:
            rows.append((what, (seconds - was_seconds) / (count - was_count)))
    parts = [f"{what}={mean * 1000:.0f}ms" for what, mean in sorted(rows, key=lambda row: -row[1])[:8]]
    return "mean API latency: " + " ".join(parts)


def request_summary(before: dict[str, float], after: dict[str, float], n: int, top: int = 16) -> str:
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}
    parts = [f"{k}={v / n:.2f}" for k, v in sorted(delta.items(), key=lambda kv: -kv[1])[:top]]
    return f"{sum(delta.values()) / n:.1f} API requests per app: " + " ".join(parts)


def log_levels(log_path: Path) -> dict[str, int]:
    levels: dict[str, int] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            level = json.loads(line).get("level", "?")
        except ValueError:
            level = "unstructured"
        levels[level] = levels.get(level, 0) + 1
    return levels


async def reconcile_summary(http_port: int) -> str:
    """The reconciler's own account: reconciles by result and retries."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{http_port}/metrics") as response:
        text = await response.text()
    wanted = ("controller_runtime_reconcile_total{", "workqueue_retries_total{")
    counts = [line for line in text.splitlines() if line.startswith(wanted) and 'controller="webapp"' in line]
    return "reconciler: " + "; ".join(counts)


async def bounded(calls: list[Any]) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Any) -> None:
        async with slots:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def wait_for(count: Callable[[], int], n: int, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while count() < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {count()}/{n} after {timeout:.0f}s")
        await asyncio.sleep(0.1)


def deployment_ready(obj: dict[str, Any]) -> bool:
    return bool(obj.get("status", {}).get("readyReplicas") == 1)


def namespaces(prefix: str, n: int, per_namespace: int) -> list[str]:
    return [f"{prefix}-{j}" for j in range(math.ceil(n / per_namespace))]


def placed(names: list[str], spaces: list[str]) -> list[tuple[str, str]]:
    """(namespace, name) for each name, filling the namespaces in turn."""
    per_namespace = math.ceil(len(names) / len(spaces))
    return [(spaces[i // per_namespace], name) for i, name in enumerate(names)]


def equivalent_children(name: str, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment and Service the reconciler renders for the bench's WebApp, as plain objects of their own: no
    owner, and the namespace's default ServiceAccount (the raw path makes no ServiceAccount)."""
    webapp = WebApp.model_validate(
        {
            "apiVersion": API_VERSION,
            "kind": "WebApp",
            "metadata": {"name": name, "namespace": namespace, "uid": "00000000-0000-0000-0000-000000000000"},
            "spec": SPEC,
        }
    )
    children = {m["kind"]: m for m in render(webapp, service_monitors=False)}
    deployment, service = children["Deployment"], children["Service"]
    for child in (deployment, service):
        del child["metadata"]["ownerReferences"]
    del deployment["spec"]["template"]["spec"]["serviceAccountName"]
    return deployment, service


async def default_service_accounts(api: Any, spaces: list[str]) -> None:
    """Waits until every namespace has its default ServiceAccount: a controller makes it after the namespace, and
    pods are admitted only once it exists. A timed phase that started before would time that controller too."""
    core = client.CoreV1Api(api)

    async def all_there() -> bool:
        found = await core.list_service_account_for_all_namespaces(field_selector="metadata.name=default")
        return set(spaces) <= {account.metadata.namespace for account in found.items}

    await eventually(all_there, timeout=300, interval=0.5, what=f"default ServiceAccounts in {len(spaces)} namespaces")


async def create_namespaces(api: Any, spaces: list[str]) -> None:
    core = client.CoreV1Api(api)
    for namespace in spaces:
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    await default_service_accounts(api, spaces)


async def raw_baseline(api: Any, spaces: list[str], n: int, rate: float | None = None) -> float:
    """N Deployments+Services created in `spaces` (which exist, with their default ServiceAccounts): at once
    (CONCURRENCY requests in flight), or one Deployment and its Service every 1/rate s (bench-arrival). The seconds
    until every Deployment is Ready."""
    deployments = Informer(api, DEPLOYMENT, label_selector=MANAGED)
    stop = asyncio.Event()
    watching = asyncio.create_task(deployments.run(stop))
    await deployments.synced.wait()
    objects = [equivalent_children(name, ns) for ns, name in placed([f"web-{i}" for i in range(n)], spaces)]

    def create(obj: dict[str, Any]) -> Callable[[], Any]:
        path = resource_for(obj).collection(obj["metadata"]["namespace"])
        return lambda: send_json(api, "POST", path, body=obj)

    slots = asyncio.Semaphore(CONCURRENCY)  # paced requests the API server holds wait here, not in the HTTP pool

    async def create_pair(deployment: dict[str, Any], service: dict[str, Any]) -> None:
        for obj in (deployment, service):
            async with slots:
                await create(obj)()

    started = time.monotonic()
    if rate is None:
        await bounded([create(d) for d, _ in objects] + [create(s) for _, s in objects])
    else:
        pairs = []
        for i, (deployment, service) in enumerate(objects):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))  # the arrival pace being measured
            pairs.append(asyncio.create_task(create_pair(deployment, service)))
        await asyncio.gather(*pairs)
    ours = set(spaces)
    ready = lambda: sum(  # noqa: E731
        1 for obj in deployments.store.values() if obj["metadata"]["namespace"] in ours and deployment_ready(obj)
    )
    await wait_for(ready, n, "raw Deployments ready", timeout=30 * 60)
    elapsed = time.monotonic() - started
    stop.set()
    await watching
    return elapsed


async def measure_raw(api: Any, cpu: CpuMeter, spaces: list[str], n: int, phase: str, *, remove: bool) -> float:
    """One raw baseline, from a quiet cluster, with its account printed; its namespaces deleted afterwards if asked
    (minutes at N=5000, for nothing when the control plane goes next)."""
    await create_namespaces(api, spaces)  # before the quiet wait and the clock, as the tenant's are for the operator
    await quiet(cpu)
    cpu.start()
    requests, latencies = await apiserver_requests(api)
    raw = await raw_baseline(api, spaces, n)
    print(cpu.report(phase, raw), flush=True)
    requests_after, latencies_after = await apiserver_requests(api)
    print(f"{phase}: " + request_summary(requests, requests_after, n), flush=True)
    print(f"{phase}: " + latency_summary(latencies, latencies_after, n), flush=True)
    print(f"{phase}: {n} Deployments+Services in {len(spaces)} namespaces, Ready in {raw:.1f}s", flush=True)
    if remove:
        print(f"{phase}: namespaces deleted and gone in {await remove_namespaces(api, spaces):.1f}s", flush=True)
    return raw


async def remove_namespaces(api: Any, spaces: list[str]) -> float:
    """Deletes the namespaces and waits until they are gone (their pods with them)."""
    core = client.CoreV1Api(api)
    started = time.monotonic()
    for namespace in spaces:
        await core.delete_namespace(namespace)
    deadline = started + 10 * 60
    left = set(spaces)
    while time.monotonic() < deadline:
        left &= {ns.metadata.name for ns in (await core.list_namespace()).items}
        if not left:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise TimeoutError(f"namespaces {sorted(left)} still there after 10 minutes")


WebAppKey = tuple[str, str]  # (namespace, name)


class WebAppClock:
    """Create and Ready times of WebApps, from a watch."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.created: dict[WebAppKey, float] = {}
        self.ready_at: dict[WebAppKey, float] = {}
        self.informer = Informer(api, WEBAPP)
        self.informer.subscribe(self._seen)

    def _seen(self, _: str, obj: dict[str, Any], _old: dict[str, Any] | None) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        conditions = (obj.get("status") or {}).get("conditions", [])
        if key not in self.ready_at and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            self.ready_at[key] = time.monotonic()

    async def create(self, key: WebAppKey) -> None:
        namespace, name = key
        body = {"apiVersion": API_VERSION, "kind": "WebApp", "metadata": {"name": name}, "spec": SPEC}
        self.created[key] = time.monotonic()
        await client.CustomObjectsApi(self.api).create_namespaced_custom_object(
            "platform.example.com", "v1", namespace, "webapps", body
        )

    def latencies(self, keys: list[WebAppKey]) -> list[float]:
        return sorted(self.ready_at[key] - self.created[key] for key in keys)


class ServiceHeals:
    """Deletes a WebApp's child Service and times it back (a new Service: another uid), from a watch."""

    def __init__(self, api: Any) -> None:
        self.core = client.CoreV1Api(api)
        self.informer = Informer(api, SERVICE, label_selector=MANAGED)
        self.informer.subscribe(self._seen)
        self._waiting: dict[WebAppKey, tuple[str, asyncio.Event]] = {}  # key -> (deleted uid, back)

    def _seen(self, event: str, obj: dict[str, Any], _old: dict[str, Any] | None) -> None:
        waiting = self._waiting.get((obj["metadata"]["namespace"], obj["metadata"]["name"]))
        if event != "DELETED" and waiting is not None and obj["metadata"]["uid"] != waiting[0]:
            waiting[1].set()

    def has(self, key: WebAppKey) -> bool:
        return key in self.informer.store

    async def heal(self, key: WebAppKey) -> float:
        namespace, name = key
        back = asyncio.Event()
        self._waiting[key] = (self.informer.store[key]["metadata"]["uid"], back)
        deleted = time.monotonic()
        await self.core.delete_namespaced_service(name, namespace)
        await asyncio.wait_for(back.wait(), 600)
        del self._waiting[key]
        return time.monotonic() - deleted


@dataclass
class OperatorRun:
    elapsed: float  # the burst: N WebApps created at once until all are Ready
    without_reconciler: float  # the same, the reconciler's own CPU taken out
    burst_ready: list[float]
    steady_ready: list[float]
    heals_burst: list[float]
    heals_idle: list[float]


async def heal_under_burst(clock: WebAppClock, heals: ServiceHeals, burst: list[WebAppKey]) -> list[float]:
    """Heals WebApps of the burst that are Ready while others still converge, one started every HEAL_BURST_EVERY
    seconds: each repair waits in the reconciler's queue behind the burst, which the idle heals do not show."""
    in_burst, healed, running = set(burst), set[WebAppKey](), list[asyncio.Task[float]]()
    while len(running) < HEAL_SAMPLES and len(clock.ready_at) < len(burst):
        # The Service must be in the watch's cache, so that its re-creation is told from its creation.
        ready = next((k for k in clock.ready_at if k in in_burst and k not in healed and heals.has(k)), None)
        if ready is None:
            await asyncio.sleep(0.1)  # polling for the next Ready WebApp, not synchronisation
            continue
        healed.add(ready)
        running.append(asyncio.create_task(heals.heal(ready)))
        await asyncio.sleep(HEAL_BURST_EVERY)  # the pace of the heals, not synchronisation
    return sorted(await asyncio.gather(*running))


async def through_operator(api: Any, spaces: list[str], n: int, cpu: CpuMeter, curve: RssCurve) -> OperatorRun:
    core = client.CoreV1Api(api)
    tenant = {
        "apiVersion": API_VERSION,
        "kind": "Tenant",
        "metadata": {"name": "bench"},
        "spec": {"namespaces": spaces, "maxPodSecurity": "restricted"},
    }
    await apply(api, tenant, field_manager="bench")
    deadline = time.monotonic() + 120
    while not set(spaces) <= {ns.metadata.name for ns in (await core.list_namespace()).items}:
        if time.monotonic() > deadline:  # the reconciler creates the tenant's namespaces
            raise TimeoutError("the reconciler did not create the tenant's namespaces within 120s")
        await asyncio.sleep(0.1)
    await default_service_accounts(api, spaces)
    clock = WebAppClock(api)
    heals = ServiceHeals(api)
    stop = asyncio.Event()
    watching = [asyncio.create_task(informer.run(stop)) for informer in (clock.informer, heals.informer)]
    await clock.informer.synced.wait()
    await heals.informer.synced.wait()

    await quiet(cpu)  # as the raw phases start: no controller still digesting what came before
    curve.phase = "burst"
    cpu.start()
    requests, latencies = await apiserver_requests(api)
    started = time.monotonic()
    burst = placed([f"web-{i}" for i in range(n)], spaces)
    healing = asyncio.create_task(heal_under_burst(clock, heals, burst))
    await bounded([(lambda key=key: clock.create(key)) for key in burst])
    await wait_for(lambda: len(clock.ready_at), n, "WebApps Ready", timeout=30 * 60)
    elapsed = time.monotonic() - started
    heals_burst = await healing
    print(cpu.report("operator", elapsed), flush=True)
    # Both phases are CPU-bound: without the reconciler's own CPU the burst would take the others' share of the time.
    used = cpu.used()
    without_reconciler = elapsed * (1 - used.get("reconciler", 0.0) / max(sum(used.values()), 1e-9))
    requests_after, latencies_after = await apiserver_requests(api)
    print("operator: " + request_summary(requests, requests_after, n), flush=True)
    print("operator: " + latency_summary(latencies, latencies_after, n), flush=True)
    print(f"operator: {n} WebApps Ready in {elapsed:.1f}s", flush=True)

    # Steady: a cluster holding N WebApps, digested (controllers idle again), new ones applied at RATE per second.
    curve.phase = "settling"
    print(f"cluster quiet again after {await quiet(cpu):.0f}s", flush=True)
    curve.phase = "steady"
    steady = [(spaces[i % len(spaces)], f"steady-{i}") for i in range(SAMPLES)]
    creating = []
    for key in steady:
        creating.append(asyncio.create_task(clock.create(key)))
        await asyncio.sleep(1 / RATE)  # the arrival rate being measured, not synchronisation
    await asyncio.gather(*creating)
    await wait_for(lambda: sum(1 for s in steady if s in clock.ready_at), SAMPLES, "steady WebApps Ready", 600)

    curve.phase = "heal idle"
    heals_idle = [await heals.heal(key) for key in burst[: min(HEAL_SAMPLES, n)]]
    stop.set()
    await asyncio.gather(*watching)
    return OperatorRun(
        elapsed, without_reconciler, clock.latencies(burst), clock.latencies(steady), heals_burst, sorted(heals_idle)
    )


def percentile(values: list[float], q: float) -> float:
    """Of sorted values; NaN for none (a burst over before a heal could start under it)."""
    return values[min(len(values) - 1, int(q * len(values)))] if values else math.nan


async def main(n: int, workers: int, per_namespace: int) -> None:
    nodes = max(3, math.ceil(2 * n / 100) + 1)
    with NatsServer() as nats, ControlPlane(nodes=nodes) as plane:
        print(f"control plane ready ({nodes} kwok nodes)", flush=True)
        processes = {record.name: record.pid for record in plane.records}
        processes["nats-server"] = nats.pid or 0
        api = await api_client(str(plane.kubeconfig_path))
        async with api:
            await install(api, load_manifests(*sorted((DEPLOY / "crds").glob("*.yaml"))))
            cpu = CpuMeter(processes | {"bench": os.getpid()})
            raw_spaces = namespaces("raw", n, per_namespace)
            raw_before = await measure_raw(api, cpu, raw_spaces, n, "raw before", remove=True)
            http_port = free_port()
            log_path = Path(tempfile.mkdtemp(prefix="bench-operator-")) / "reconciler.log"
            env = os.environ | {
                "KUBECONFIG": str(plane.kubeconfig_path),
                "BALLAST_NATS_URL": nats.url,
                "BALLAST_HTTP_PORT": str(http_port),
                "BALLAST_WORKERS": str(workers),
            }
            reconciler = await asyncio.create_subprocess_exec(
                # Another checkout's interpreter measures that checkout's reconciler with this harness: the
                # before-and-after figures of a change, from the same phases and the same baseline.
                os.environ.get("BENCH_RECONCILER_PYTHON", sys.executable),
                "-m",
                "ballast.reconciler",
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log_path.open("wb"),
            )
            curve, sampling = RssCurve(reconciler.pid), asyncio.Event()
            curving = asyncio.create_task(curve.run(sampling))
            try:
                cpu.processes["reconciler"] = reconciler.pid
                spaces = namespaces("bench", n, per_namespace)
                run = await through_operator(api, spaces, n, cpu, curve)
                rss_final, rss_peak = memory_mb(reconciler.pid), memory_mb(reconciler.pid, "VmHWM")
                print(await reconcile_summary(http_port), flush=True)
            finally:
                sampling.set()
                await curving
                reconciler.terminate()
                await asyncio.wait_for(reconciler.wait(), 30)
                del cpu.processes["reconciler"]
            # The same baseline again, from the same empty cluster: the host's speed drifts by a fifth within minutes
            # (the same work, CPU seconds and all), and the mean of a baseline before and after the operator phase
            # cancels a steady drift that one baseline would put into the ratio.
            gone = await remove_namespaces(api, spaces)
            print(f"operator: namespaces deleted and gone in {gone:.1f}s", flush=True)
            raw_after = await measure_raw(api, cpu, raw_spaces, n, "raw after", remove=False)
    raw = (raw_before + raw_after) / 2
    operator, burst, ready = run.elapsed, run.burst_ready, run.steady_ready
    print(f"reconciler log lines by level: {log_levels(log_path)} ({log_path})")
    print(curve.report())
    print(
        f"raw baseline: {raw_before:.1f}s before and {raw_after:.1f}s after the operator phase, mean {raw:.1f}s; "
        f"the operator phase: {operator:.1f}s (converge_ratio against each: {raw_before / operator:.2f}, "
        f"{raw_after / operator:.2f})"
    )
    print(
        f"converge_ratio with a reconciler using no CPU: {raw / run.without_reconciler:.2f} (the control plane's share)"
    )
    print(
        f"burst of {n}: create->Ready p50={percentile(burst, 0.5):.2f}s p99={percentile(burst, 0.99):.2f}s; "
        f"steady ({SAMPLES} at {RATE:g}/s): p50={percentile(ready, 0.5):.2f}s p99={percentile(ready, 0.99):.2f}s "
        f"mean={statistics.fmean(ready):.2f}s"
    )
    print(
        f"heal (child Service deleted -> back): idle over {len(run.heals_idle)}: "
        f"p50={percentile(run.heals_idle, 0.5):.3f}s p99={percentile(run.heals_idle, 0.99):.3f}s; "
        f"under the burst over {len(run.heals_burst)}: p50={percentile(run.heals_burst, 0.5):.3f}s "
        f"p99={percentile(run.heals_burst, 0.99):.3f}s"
    )
    print(f"reconciler memory: peak (VmHWM) {rss_peak:.0f} MB, {rss_final:.0f} MB resident at the end of the heals")
    print(
        f"bench-operator: webapps={n} converge_ratio={raw / operator:.2f} "
        f"steady_ready_p50_s={percentile(ready, 0.5):.2f} steady_ready_p99_s={percentile(ready, 0.99):.2f} "
        f"burst_ready_p99_s={percentile(burst, 0.99):.2f} heal_idle_p99_s={percentile(run.heals_idle, 0.99):.3f} "
        f"heal_burst_p99_s={percentile(run.heals_burst, 0.99):.3f} rss_peak_mb={rss_peak:.0f} "
        f"rss_final_mb={rss_final:.0f}"
    )


if __name__ == "__main__":
    # A timeout or Ctrl-C must still stop the servers the run started (they run in their own sessions).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--webapps", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16, help="the reconciler's BALLAST_WORKERS")
    parser.add_argument("--per-namespace", type=int, default=PER_NAMESPACE, help="apps per namespace (at most)")
    arguments = parser.parse_args()
    spread = math.ceil(arguments.webapps / max(1, arguments.per_namespace))
    if arguments.webapps < 1 or arguments.per_namespace < 1 or spread > 256:
        parser.error("need --webapps >= 1 and --per-namespace >= 1, and at most 256 namespaces (a Tenant's limit)")
    asyncio.run(main(arguments.webapps, arguments.workers, arguments.per_namespace))
