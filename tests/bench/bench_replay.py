"""bench-replay: the replay tooling against raw nats-py on one real nats-server (loopback), same stream, same run.

N typed events (CloudEvents headers, JSON ObservedObject bodies, as the reconciler publishes them) are stored in
K8S_EVENTS once. Then, for R rounds:
  raw read     nats-py alone reading the whole stream: an ordered push consumer (`js.subscribe(ordered_consumer=True)`,
               nats-py's fastest way through a stream, with flow control and heartbeats) counting messages
  lean read    `ballast.replay.lean_reader.LeanReader` alone (our own protocol client, the export's read path)
               counting messages: printed for comparison, not a bar
  export       `ballast.replay.exporting.export`: the lean reader, each message turned into a JSONL line
               (attributes decoded, body checked to round-trip) and written to a file
  shadow copy  `ballast.replay.shadow.copy_window`: SHADOW_<run> mirroring the stream with a subject transform,
               timed from the stream's creation to the last message's arrival (server-side, no client in the path)
  import       `ballast.replay.importing`: the export file checked (every line parsed, decoded, validated) and
               published into a re-created K8S_EVENTS, timed to the last acknowledgement
Rates are events per second; the line printed last holds the medians:

    bench-replay: events=<N> export_per_s=<..> import_per_s=<..> shadow_copy_per_s=<..> raw_read_per_s=<..>

Bars (issue 20): export >= 0.8 x raw read and >= 100k/s; shadow copy >= 100k/s.

    python tests/bench/bench_replay.py [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import DeliverPolicy
from prometheus_client import CollectorRegistry

from ballast.bus import Bus
from ballast.events import encode, new_event
from ballast.events.catalogue import CATALOGUE, K8S_EVENTS
from ballast.events.contracts.common import ObjectRef
from ballast.events.contracts.k8s import ObservedObject, k8s_event_type, k8s_subject
from ballast.replay import importing
from ballast.replay.exporting import export
from ballast.replay.lean_reader import LeanReader
from ballast.replay.selection import Selection
from ballast.replay.shadow import Recorded, copy_window, remove
from ballast.telemetry.metrics import BusMetrics
from ballast.testing import NatsServer


def messages(n: int) -> list[tuple[str, dict[str, str], bytes]]:
    found = []
    for i in range(n):
        name = f"web-{i % 500}"
        data = ObservedObject(
            cluster="bench",
            object=ObjectRef(api_version="apps/v1", kind="Deployment", namespace="shop", name=name, uid=f"uid-{name}"),
            resource_version=str(i),
            generation=i // 500 + 1,
            labels={"app": name, "team": "shop"},
            replicas=3,
            ready_replicas=i % 4,
            image="registry.example.com/shop/web:1.2.3",
            phase="Running",
        )
        event = new_event(
            k8s_event_type("Deployment", "updated"),
            "/clusters/bench/reconciler",
            data,
            subject=f"shop/{name}",
            event_id=f"uid-{name}:{i}:updated",
        )
        headers, body = encode(event)
        headers["Nats-Msg-Id"] = event.msg_id
        found.append((k8s_subject("bench", "shop", "Deployment", "updated"), headers, body))
    return found


async def store(bus: Bus, batch: list[tuple[str, dict[str, str], bytes]]) -> None:
    for subject, headers, body in batch:
        await bus.js.publish_async(subject, body, headers=dict(headers))
    await bus.js.publish_async_completed()


async def raw_read(url: str, n: int) -> float:
    nc = await nats.connect(url, name="bench-raw-read")
    js = nc.jetstream()
    count = 0
    done = asyncio.Event()

    async def on_message(_: object) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    started = time.perf_counter()
    sub = await js.subscribe(
        "evt.k8s.>", stream=K8S_EVENTS.name, cb=on_message, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    await nc.close()
    return n / elapsed


async def lean_read(url: str, n: int) -> float:
    count = 0
    started = time.perf_counter()
    async with LeanReader(url, K8S_EVENTS.name) as reader:
        async for batch in reader:
            count += len(batch)
    elapsed = time.perf_counter() - started
    if count != n:
        raise SystemExit(f"the lean reader read {count} events, not {n}")
    return n / elapsed


async def export_run(bus: Bus, path: Path, n: int) -> float:
    started = time.perf_counter()
    with path.open("wb") as out:
        result = await export(bus, K8S_EVENTS.name, Selection(), out)
    elapsed = time.perf_counter() - started
    if result.written != n:
        raise SystemExit(f"export wrote {result.written} events, not {n}")
    return n / elapsed


async def shadow_run(bus: Bus, n: int, run: str) -> float:
    copy = await copy_window(bus.js, run, [Recorded(K8S_EVENTS.name, "evt.k8s.>")])
    await remove(bus.js, run)
    if copy.copied != n:
        raise SystemExit(f"shadow copy holds {copy.copied} events, not {n}")
    return copy.rate


async def import_run(bus: Bus, path: Path, n: int) -> float:
    await bus.js.delete_stream(K8S_EVENTS.name)  # a new stream: nothing in it, no duplicate window to hit
    await bus.ensure_streams([K8S_EVENTS])
    started = time.perf_counter()
    plan = importing.check(path, CATALOGUE)
    result = await importing.publish(bus, plan)
    elapsed = time.perf_counter() - started
    if result.tally.stored != n:
        raise SystemExit(f"import stored {result.tally.stored} events, not {n} ({result.error})")
    return n / elapsed


async def main(n: int, rounds: int) -> None:
    with NatsServer() as server, tempfile.TemporaryDirectory() as scratch:
        bus = await Bus.connect(server.url, name="bench-replay", metrics=BusMetrics(CollectorRegistry()))
        await bus.ensure_streams([K8S_EVENTS])
        print(f"storing {n:,} events ...", file=sys.stderr)
        await store(bus, messages(n))
        path = Path(scratch) / "export.jsonl"
        await export_run(bus, path, n)  # warm-up: imports, caches, the server's file store
        raw, lean, exported, copied, imported = [], [], [], [], []
        for round_ in range(rounds):
            raw.append(await raw_read(server.url, n))
            lean.append(await lean_read(server.url, n))
            exported.append(await export_run(bus, path, n))
            copied.append(await shadow_run(bus, n, f"bench{round_}"))
            imported.append(await import_run(bus, path, n))
            print(
                f"round {round_ + 1}/{rounds}: raw read {raw[-1]:,.0f}/s, lean read {lean[-1]:,.0f}/s, "
                f"export {exported[-1]:,.0f}/s, "
                f"shadow copy {copied[-1]:,.0f}/s, import {imported[-1]:,.0f}/s",
                file=sys.stderr,
            )
        await bus.close()
    med = {
        k: statistics.median(v)
        for k, v in (("raw", raw), ("lean", lean), ("export", exported), ("shadow", copied), ("import", imported))
    }
    print(f"export/raw read: {med['export'] / med['raw']:.2f} (bar 0.8); export and shadow copy bar: 100,000/s")
    print(f"lean read (the export's reader, without the lines): {med['lean']:.0f}/s")
    print(
        f"bench-replay: events={n} export_per_s={med['export']:.0f} import_per_s={med['import']:.0f} "
        f"shadow_copy_per_s={med['shadow']:.0f} raw_read_per_s={med['raw']:.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds))
