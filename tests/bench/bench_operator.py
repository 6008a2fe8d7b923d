"""bench-operator: N WebApps through the reconciler against N Deployments+Services created directly (the raw
baseline), on one local control plane (kwok nodes), in the same run.

    python tests/bench/bench_operator.py [--webapps N]

converge_ratio = raw time / operator time (all N Ready); ready_p50_s/ready_p99_s: each WebApp's create to its Ready
condition; heal_p99_s: a deleted child Service back; rss_mb: the reconciler process's resident memory at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

from ballast.kube.apply import apply
from ballast.kube.controlplane import ControlPlane
from ballast.kube.informer import Informer
from ballast.kube.install import install, load_manifests
from ballast.local.nats_server import NatsServer, free_port
from ballast.testing.kube import fake_node_deployment

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
IMAGE = "registry.example.com/shop/web:1.2.3"
CONCURRENCY = 32
HEAL_SAMPLES = 50


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def bounded(calls: list[Any]) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Any) -> None:
        async with slots:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def wait_all(informer: Informer, done: Any, n: int, what: str, timeout: float) -> None:
    started = time.monotonic()
    while sum(1 for obj in informer.store.values() if done(obj)) < n:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: {sum(1 for o in informer.store.values() if done(o))}/{n} after {timeout}s")
        await asyncio.sleep(0.1)


def deployment_ready(obj: dict[str, Any]) -> bool:
    return bool(obj.get("status", {}).get("readyReplicas") == 1)


async def raw_baseline(api: Any, n: int) -> float:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="raw")))
    deployments = Informer(api, "/apis/apps/v1/namespaces/raw/deployments", lambda *_: None)
    stop = asyncio.Event()
    watching = asyncio.create_task(deployments.run(stop))
    await deployments.synced.wait()

    def service(name: str) -> client.V1Service:
        return client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(selector={"app": name}, ports=[client.V1ServicePort(port=8080)]),
        )

    started = time.monotonic()
    await bounded(
        [
            (lambda i=i: apps.create_namespaced_deployment("raw", fake_node_deployment(f"web-{i}", 1, IMAGE)))
            for i in range(n)
        ]
        + [(lambda i=i: core.create_namespaced_service("raw", service(f"web-{i}"))) for i in range(n)]
    )
    await wait_all(deployments, deployment_ready, n, "raw Deployments ready", timeout=30 * 60)
    elapsed = time.monotonic() - started
    stop.set()
    await watching
    return elapsed


async def through_operator(api: Any, n: int, reconciler_pid: int) -> tuple[float, list[float], list[float]]:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    tenant = {
        "apiVersion": "platform.example.com/v1",
        "kind": "Tenant",
        "metadata": {"name": "bench"},
        "spec": {"namespaces": ["bench"], "maxPodSecurity": "restricted"},
    }
    await apply(api, tenant, field_manager="bench")
    while True:  # the reconciler creates the tenant's namespace
        try:
            await core.read_namespace("bench")
            break
        except client.exceptions.ApiException:
            await asyncio.sleep(0.1)
    created: dict[str, float] = {}
    ready_at: dict[str, float] = {}

    def on_webapp(_: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        conditions = (obj.get("status") or {}).get("conditions", [])
        if name not in ready_at and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            ready_at[name] = time.monotonic()

    webapps = Informer(api, "/apis/platform.example.com/v1/namespaces/bench/webapps", on_webapp)
    stop = asyncio.Event()
    watching = asyncio.create_task(webapps.run(stop))
    await webapps.synced.wait()

    async def create(i: int) -> None:
        name = f"web-{i}"
        created[name] = time.monotonic()
        body = {
            "apiVersion": "platform.example.com/v1",
            "kind": "WebApp",
            "metadata": {"name": name},
            "spec": {"image": IMAGE, "monitoring": {"enabled": False}},
        }
        await custom.create_namespaced_custom_object("platform.example.com", "v1", "bench", "webapps", body)

    started = time.monotonic()
    await bounded([(lambda i=i: create(i)) for i in range(n)])
    deadline = time.monotonic() + 30 * 60
    while len(ready_at) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"WebApps Ready: {len(ready_at)}/{n}")
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    ready = sorted(ready_at[name] - created[name] for name in created)
    print(f"operator: {n} WebApps Ready in {elapsed:.1f}s; reconciler rss {rss_mb(reconciler_pid):.0f} MB", flush=True)

    restored: dict[str, asyncio.Event] = {}

    def on_service(event: str, obj: dict[str, Any]) -> None:
        waiting = restored.get(obj["metadata"]["name"])
        if event == "ADDED" and waiting is not None:
            waiting.set()

    services = Informer(api, "/api/v1/namespaces/bench/services", on_service)
    watching_services = asyncio.create_task(services.run(stop))
    await services.synced.wait()
    heals = []
    for i in range(min(HEAL_SAMPLES, n)):
        name = f"web-{i}"
        restored[name] = asyncio.Event()
        deleted = time.monotonic()
        await core.delete_namespaced_service(name, "bench")
        await asyncio.wait_for(restored[name].wait(), 60)
        heals.append(time.monotonic() - deleted)
    stop.set()
    await asyncio.gather(watching, watching_services)
    return elapsed, ready, sorted(heals)


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def main(n: int) -> None:
    nodes = max(3, math.ceil(2 * n / 100) + 1)
    with NatsServer() as nats, ControlPlane(nodes=nodes) as plane:
        print(f"control plane ready ({nodes} kwok nodes)", flush=True)
        api = await config.new_client_from_config(config_file=str(plane.kubeconfig_path), persist_config=False)
        async with api:
            await install(api, load_manifests(*sorted((DEPLOY / "crds").glob("*.yaml"))))
            raw = await raw_baseline(api, n)
            print(f"raw: {n} Deployments+Services, all Ready in {raw:.1f}s", flush=True)
            env = os.environ | {
                "KUBECONFIG": str(plane.kubeconfig_path),
                "BALLAST_NATS_URL": nats.url,
                "BALLAST_HTTP_PORT": str(free_port()),
                "BALLAST_WORKERS": "16",
            }
            reconciler = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ballast.reconciler",
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                operator, ready, heals = await through_operator(api, n, reconciler.pid)
                rss = rss_mb(reconciler.pid)
            finally:
                reconciler.terminate()
                await asyncio.wait_for(reconciler.wait(), 30)
    print(
        f"ready latency: p50={percentile(ready, 0.5):.2f}s p99={percentile(ready, 0.99):.2f}s "
        f"mean={statistics.fmean(ready):.2f}s; heal over {len(heals)}: p50={percentile(heals, 0.5):.3f}s"
    )
    print(
        f"bench-operator: webapps={n} converge_ratio={raw / operator:.2f} ready_p50_s={percentile(ready, 0.5):.2f} "
        f"ready_p99_s={percentile(ready, 0.99):.2f} heal_p99_s={percentile(heals, 0.99):.3f} rss_mb={rss:.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--webapps", type=int, default=1000)
    asyncio.run(main(parser.parse_args().webapps))
