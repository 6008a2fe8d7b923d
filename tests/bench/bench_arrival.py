"""bench-arrival: the control plane's CPU for the same Deployments+Services created at once and at a steady pace.

    python tests/bench/bench_arrival.py [--deployments N] [--rate R]

N Deployments+Services (bench-operator's raw objects: what the reconciler renders for a WebApp, on their own), 100
per namespace, on one local control plane (kwok nodes), three times, each in fresh namespaces that exist with their
default ServiceAccounts and from a quiet cluster: 1. at once (bench-operator's raw burst), 2. one Deployment and its
Service every 1/R s (10/s), 3. at once again. A phase's cost is the CPU seconds of the control plane's processes
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) from the first create until every Deployment is
Ready and the cluster is quiet again (under half a core over 5 s), less what the idle control plane uses in as long
(measured before the phase): the paced phase lasts longer, and idling is not its work. cpu_ratio is the paced cost
over the mean of the two bursts' (one on each side cancels a drift in the host's speed, as in bench-operator). Each
phase's API requests per Deployment are printed (Deployment status writes, conflicts): what Kubernetes' controllers
do more of for Deployments that arrive one by one. The reconciler's child writes (ballast.reconciler.writes) exist
so that the Deployments of a burst of WebApps do not reach Kubernetes at the pace of the Services' cluster-IP line.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import time
from typing import Any

from bench_operator import (
    CpuMeter,
    apiserver_requests,
    create_namespaces,
    namespaces,
    quiet,
    raw_baseline,
    remove_namespaces,
    request_summary,
)

from ballast.kube.client import api_client
from ballast.local.controlplane import ControlPlane

PER_NAMESPACE = 100
IDLE_WINDOW = 10.0  # seconds over which the quiet control plane's own CPU use is measured


async def idle_cores(cpu: CpuMeter) -> float:
    """The cores the quiet control plane uses by itself (leader elections, lease renewals, resyncs)."""
    cpu.start()
    await asyncio.sleep(IDLE_WINDOW)  # the measurement window, not synchronisation
    return sum(cpu.used().values()) / IDLE_WINDOW


async def phase(api: Any, cpu: CpuMeter, name: str, n: int, rate: float | None, *, remove: bool) -> float:
    """One phase, its account printed; the control plane's CPU seconds for its work."""
    spaces = namespaces(name, n, PER_NAMESPACE)
    await create_namespaces(api, spaces)
    await quiet(cpu)
    idle = await idle_cores(cpu)
    requests, _ = await apiserver_requests(api)
    cpu.start()
    started = time.monotonic()
    ready = await raw_baseline(api, spaces, n, rate)
    await quiet(cpu)
    elapsed = time.monotonic() - started
    used = cpu.used()
    requests_after, _ = await apiserver_requests(api)
    work = sum(used.values()) - idle * elapsed
    parts = " ".join(f"{process}={seconds:.1f}" for process, seconds in sorted(used.items(), key=lambda kv: -kv[1]))
    print(
        f"{name}: {n} Deployments+Services Ready in {ready:.1f}s, quiet again at {elapsed:.1f}s; control plane "
        f"cpu_s {sum(used.values()):.1f} ({parts}) less idle {idle:.2f} cores x {elapsed:.0f}s = {work:.1f}",
        flush=True,
    )
    print(f"{name}: " + request_summary(requests, requests_after, n), flush=True)
    if remove:
        print(f"{name}: namespaces deleted and gone in {await remove_namespaces(api, spaces):.1f}s", flush=True)
    return work


async def main(n: int, rate: float) -> None:
    nodes = max(3, math.ceil(2 * n / 100) + 1)
    with ControlPlane(nodes=nodes) as plane:
        print(f"control plane ready ({nodes} kwok nodes)", flush=True)
        cpu = CpuMeter({record.name: record.pid for record in plane.records})
        api = await api_client(str(plane.kubeconfig_path))
        async with api:
            before = await phase(api, cpu, "burst-before", n, None, remove=True)
            paced = await phase(api, cpu, "paced", n, rate, remove=True)
            after = await phase(api, cpu, "burst-after", n, None, remove=False)
    burst = (before + after) / 2
    print(f"bursts: {before:.1f} and {after:.1f} cpu_s, mean {burst:.1f}; paced at {rate:g}/s: {paced:.1f} cpu_s")
    print(
        f"bench-arrival: deployments={n} rate={rate:g} burst_cpu_s={burst:.1f} paced_cpu_s={paced:.1f} "
        f"cpu_ratio={paced / burst:.2f}"
    )


if __name__ == "__main__":
    # A timeout or Ctrl-C must still stop the servers the run started (they run in their own sessions).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=500)
    parser.add_argument("--rate", type=float, default=10.0, help="Deployment+Service pairs per second when paced")
    arguments = parser.parse_args()
    if arguments.deployments < 1 or arguments.rate <= 0:
        parser.error("need --deployments >= 1 and --rate > 0")
    asyncio.run(main(arguments.deployments, arguments.rate))
