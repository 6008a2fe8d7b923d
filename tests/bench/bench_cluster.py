"""Benchmark of the local control plane (`make bench-cluster`); a measurement, not a test.

Starts a control plane, times it to ready, times a 10-replica Deployment to all pods Ready, sums the resident
memory of the control plane's processes, stops it, and prints as its last line:

    bench-cluster: ready_s=<start to all components ready> deploy_ready_s=<10 pods Ready> rss_mb=<sum of RSS>

Targets on a 2-core machine: ready_s < 30, deploy_ready_s < 10.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

from kubernetes_asyncio import client

from ballast.kube.client import api_client
from ballast.local.controlplane import ControlPlane
from ballast.testing.kube import fake_node_deployment
from ballast.testing.waiting import eventually

REPLICAS = 10


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0  # a kernel thread or a zombie has no resident set


async def deploy_until_ready(kubeconfig: Path, replicas: int) -> float:
    api = await api_client(str(kubeconfig))
    async with api:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench")))
        deployment = fake_node_deployment("web", replicas)

        async def default_service_account() -> bool:
            found = await core.list_namespaced_service_account("bench", field_selector="metadata.name=default")
            return bool(found.items)

        async def all_ready() -> bool:
            status = (await apps.read_namespaced_deployment_status("web", "bench")).status
            return (status.ready_replicas or 0) == replicas

        # The namespace's default ServiceAccount comes from a controller; pods are admitted only once it exists.
        await eventually(default_service_account, timeout=30, what="ServiceAccount bench/default")
        began = time.monotonic()
        await apps.create_namespaced_deployment("bench", deployment)
        await eventually(all_ready, timeout=120, what=f"{replicas} pods Ready")
        return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3, help="kwok fake nodes (default 3)")
    args = parser.parse_args()

    plane = ControlPlane(nodes=args.nodes)
    began = time.monotonic()
    plane.start()
    try:
        ready_s = time.monotonic() - began
        print(f"control plane ready in {ready_s:.2f}s at {plane.server} ({args.nodes} kwok nodes)", flush=True)
        deploy_ready_s = asyncio.run(deploy_until_ready(plane.kubeconfig_path, REPLICAS))
        print(f"{REPLICAS}-replica Deployment Ready in {deploy_ready_s:.2f}s", flush=True)
        per_process = {record.name: rss_kib(record.pid) / 1024 for record in plane.records}
        print("rss_mb: " + ", ".join(f"{name}={mb:.0f}" for name, mb in per_process.items()), flush=True)
        rss_mb = sum(per_process.values())
    finally:
        plane.stop()
    print(f"bench-cluster: ready_s={ready_s:.2f} deploy_ready_s={deploy_ready_s:.2f} rss_mb={rss_mb:.0f}")


if __name__ == "__main__":
    # A timeout or Ctrl-C must still stop the servers the run started (they run in their own sessions).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
