"""bench-policy: the policy-gate's decision latency with the whole gatekeeper-library general category loaded, on
its two doors, against the same queries sent straight to OPA in the same run.

Policies: every `library/general/*/template.yaml` and, per template, the constraint of its first sample (read from
`../shared/conformance/gatekeeper-library` beside the repository, or `BALLAST_CONFORMANCE`). Objects: every plain
`example_*.yaml` of those samples, taken in turn. The gate runs as its own process (its OPA managed by it), on a real
nats-server, and answers N decisions on each door, one at a time after a warm-up:

- bus: `svc.policy.check` with one manifest (request to reply, through NATS);
- admission: an AdmissionReview v1 CREATE over HTTPS (a kept-alive TLS connection, as the API server keeps one);
Only the objects some constraint matches are used (the others never reach OPA).

- raw: the very requests the gate's engine sends OPA for the same object (`PolicyEngine.prepared_query`: the same
  (review, constraint) checks, workloads with their pods, to the same entrypoint rule through
  `POST /v1/data/ballast/engine/violations`: one request, or two at once from BALLAST_OPA_SPLIT_AT checks when that is
  set, as the gate then does), sent with the same client the gate uses (`OpaClient.evaluate`, its JSON encoding
  included) straight to an OPA of this process started the same way (`ManagedOpa`) and loaded with the same policies.

overhead_p99_ms is bus_p99 - raw_p99 (the gate's own cost on its busier path). The gate's resident memory (its
Python process, and its OPA apart) is read from /proc at the end, and the CPU each process spent per decision on each
path from /proc as it runs (on a shared machine the latencies mostly measure the others' load; the CPU much less).

    python tests/bench/bench_policy.py [--decisions N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from prometheus_client import CollectorRegistry

from ballast.bus import Bus
from ballast.events.contracts.policy import POLICY_CHECK, PolicyCheckRequest
from ballast.local.nats_server import free_port
from ballast.local.policy_webhook import write_certificate
from ballast.local.tools import tool
from ballast.policy import WORKLOAD_EXPANSIONS, ManagedOpa, PolicyEngine, load_policies, read_policies, review_object
from ballast.policy.documents import load_documents
from ballast.policy.review import is_admission_review
from ballast.telemetry.metrics import BusMetrics
from ballast.testing import NatsServer, ServiceProcess

REPOSITORY = Path(__file__).resolve().parents[2]
CONFORMANCE = Path(os.environ.get("BALLAST_CONFORMANCE") or REPOSITORY.parent / "shared" / "conformance")
GENERAL = CONFORMANCE / "gatekeeper-library" / "library" / "general"
WARM_UP = 50


def library() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Templates, one constraint per template, and the samples' plain objects."""
    templates, constraints, objects = [], [], []
    for path in sorted(GENERAL.glob("*/template.yaml")):
        templates.extend(load_documents(path))
        samples = sorted(p for p in (path.parent / "samples").iterdir() if (p / "constraint.yaml").is_file())
        if samples:
            constraints.extend(load_documents(samples[0] / "constraint.yaml"))
        for sample in samples:
            for example in sorted(sample.glob("example_*.yaml")):
                for obj in load_documents(example):
                    if not is_admission_review(obj) and obj.get("kind") and obj.get("apiVersion"):
                        metadata = obj.setdefault("metadata", {})
                        metadata.setdefault("name", f"{obj['kind'].lower()}-example")
                        if obj["kind"] != "Namespace":
                            metadata.setdefault("namespace", "shop")
                        objects.append(obj)
    return templates, constraints, objects


def admission_body(obj: dict[str, Any]) -> bytes:
    group, _, version = obj["apiVersion"].rpartition("/")
    metadata = obj["metadata"]
    request = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": obj["kind"]},
        "resource": {"group": group, "version": version, "resource": obj["kind"].lower() + "s"},
        "name": metadata["name"],
        "namespace": metadata.get("namespace", ""),
        "operation": "CREATE",
        "userInfo": {"username": "bench"},
        "object": obj,
        "oldObject": None,
        "dryRun": False,
    }
    return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) >= 2 else samples[0]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def timed(n: int, call: Any) -> list[float]:
    for i in range(WARM_UP):
        await call(i)
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def main(decisions: int) -> None:
    if not GENERAL.is_dir():
        sys.exit(f"bench-policy: {GENERAL} is missing: set BALLAST_CONFORMANCE to the conformance directory")
    templates, constraints, objects = library()
    work = Path(tempfile.mkdtemp(prefix="bench-policy-"))
    (work / "policies").mkdir()
    (work / "policies" / "templates.yaml").write_text(yaml.safe_dump_all(templates))
    (work / "policies" / "constraints.yaml").write_text(yaml.safe_dump_all(constraints))
    opa_binary = tool("opa")
    tls = write_certificate(work / "tls")
    https_port = free_port()
    with NatsServer() as nats_server:
        gate = ServiceProcess.module(
            "ballast.policy_gate",
            nats_url=nats_server.url,
            BALLAST_CLUSTER="bench",
            BALLAST_OPA_BINARY=str(opa_binary),
            BALLAST_POLICY_DIR=str(work / "policies"),
            BALLAST_HTTPS_PORT=str(https_port),
            BALLAST_TLS_CERT_FILE=str(tls.cert),
            BALLAST_TLS_KEY_FILE=str(tls.key),
            BALLAST_LOG_LEVEL="WARNING",
        ).start()
        opa = ManagedOpa(opa_binary, lambda client: engine.restore(client))
        split_at = os.environ.get("BALLAST_OPA_SPLIT_AT")  # the gate reads it too
        engine = PolicyEngine(opa.client, WORKLOAD_EXPANSIONS, split_at=int(split_at) if split_at else None)
        try:
            await gate.wait_status("/readyz", 200, timeout=120)
            async with opa:
                refused = await load_policies(engine, read_policies([work / "policies"]))
                for problem in refused:
                    print(f"bench-policy: not loaded: {problem}", file=sys.stderr)
                bus = await Bus.connect(nats_server.url, name="bench", metrics=BusMetrics(CollectorRegistry()))
                try:
                    assert gate.proc is not None
                    assert nats_server.pid is not None
                    assert opa.pid is not None
                    figures = await measure(
                        bus,
                        engine,
                        objects,
                        https_port,
                        tls.ca_pem,
                        decisions,
                        gate_pid=gate.proc.pid,
                        nats_pid=nats_server.pid,
                        raw_opa_pid=opa.pid,
                    )
                finally:
                    await bus.close()
            assert gate.proc is not None
            gate_rss = rss_mb(gate.proc.pid)
            opa_rss = sum(rss_mb(child) for child in children(gate.proc.pid))
        finally:
            await gate.stop()
    bus_p99, admission_p99, raw_p99 = figures
    print(
        f"bench-policy: templates={len(engine.templates)} decisions={decisions} bus_p99_ms={bus_p99:.2f} "
        f"admission_p99_ms={admission_p99:.2f} raw_opa_p99_ms={raw_p99:.2f} overhead_p99_ms={bus_p99 - raw_p99:.2f} "
        f"gate_rss_mb={gate_rss:.0f} opa_rss_mb={opa_rss:.0f}"
    )


def cpu_ms(pid: int) -> float:
    """User and system CPU a process has spent, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


async def timed_cpu(n: int, call: Any, processes: dict[str, int]) -> tuple[list[float], dict[str, float]]:
    """The latencies of n calls, and the CPU each process spent per call (warm-up included)."""
    processes = processes | {"bench": os.getpid()}
    before = {name: cpu_ms(pid) for name, pid in processes.items()}
    latencies = await timed(n, call)
    return latencies, {name: (cpu_ms(pid) - before[name]) / (n + WARM_UP) for name, pid in processes.items()}


async def measure(
    bus: Bus,
    engine: PolicyEngine,
    objects: list[dict[str, Any]],
    https_port: int,
    ca_pem: bytes,
    n: int,
    *,
    gate_pid: int,
    nats_pid: int,
    raw_opa_pid: int,
) -> tuple[float, float, float]:
    # Only objects some constraint matches: the three paths judge the same ones, each with OPA asked.
    prepared = [engine.prepared_query([review_object(obj, operation="CREATE")]) for obj in objects]
    objects = [obj for obj, requests in zip(objects, prepared, strict=True) if requests]
    prepared = [requests for requests in prepared if requests]
    requests = [
        PolicyCheckRequest(cluster="bench", namespace="shop", manifests=[obj], requested_by="bench") for obj in objects
    ]

    async def on_the_bus(i: int) -> None:
        await bus.request(POLICY_CHECK, requests[i % len(requests)], timeout=10)

    bodies = [admission_body(obj) for obj in objects]
    context = ssl.create_default_context(cadata=ca_pem.decode())
    url = f"https://127.0.0.1:{https_port}/validate"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=1)) as session:

        async def at_admission(i: int) -> None:
            async with session.post(
                url, data=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
            ) as r:
                if r.status != 200:
                    raise RuntimeError(f"the webhook answered {r.status}: {await r.text()}")
                await r.read()

        async def straight_to_opa(i: int) -> None:
            await asyncio.gather(*(engine.client.evaluate(path, body) for path, body in prepared[i % len(prepared)]))

        processes = {"gate": gate_pid, "gate_opa": children(gate_pid)[0], "nats": nats_pid, "raw_opa": raw_opa_pid}
        bus_ms, bus_cpu = await timed_cpu(n, on_the_bus, processes)
        admission_ms, admission_cpu = await timed_cpu(n, at_admission, processes)
        raw_ms, raw_cpu = await timed_cpu(n, straight_to_opa, processes)
    for door, cpu in (("bus", bus_cpu), ("admission", admission_cpu), ("raw", raw_cpu)):
        print(f"bench-policy: cpu_ms_per_decision {door} " + " ".join(f"{k}={v:.2f}" for k, v in cpu.items()))
    print(
        f"bench-policy: medians bus_p50_ms={statistics.median(bus_ms):.2f} "
        f"admission_p50_ms={statistics.median(admission_ms):.2f} raw_opa_p50_ms={statistics.median(raw_ms):.2f} "
        f"objects={len(objects)}"
    )
    return p99(bus_ms), p99(admission_ms), p99(raw_ms)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.decisions))
