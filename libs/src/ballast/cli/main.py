"""The `ballast` command: run the platform locally, provision the bus.

ballast up [--nodes N] [--no-cluster]     NATS + local Kubernetes control plane + every service, until Ctrl-C
ballast streams ensure --nats-url URL     create or update the catalogue's streams (the chart's install job)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ballast.cli import platform


def _streams_ensure(nats_url: str) -> int:
    from prometheus_client import CollectorRegistry

    from ballast.bus import Bus
    from ballast.telemetry.metrics import BusMetrics

    async def ensure() -> None:
        bus = await Bus.connect(
            nats_url, name="ballast-cli", metrics=BusMetrics(CollectorRegistry()), wait_connected=30
        )
        await bus.ensure_streams()
        for spec in bus.catalogue.streams:
            print(f"stream {spec.name}: {', '.join(spec.subjects)} ({spec.retention.value})")
        await bus.close()

    asyncio.run(ensure())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ballast", description="Ballast platform command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run NATS, a local control plane and every service until interrupted")
    up.add_argument("--nodes", type=int, default=2, help="fake (kwok) nodes in the local cluster")
    up.add_argument("--no-cluster", action="store_true", help="services only, without a Kubernetes control plane")
    up.add_argument("--nats-port", type=int, default=4222)
    up.add_argument("--state-dir", default=".ballast/platform", help="NATS store, cluster data and service logs")
    streams = commands.add_parser("streams", help="JetStream streams of the catalogue")
    streams.add_argument("action", choices=["ensure"])
    streams.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    args = parser.parse_args(argv)
    if args.command == "up":
        return platform.up(
            nodes=args.nodes, with_cluster=not args.no_cluster, nats_port=args.nats_port, state_dir=args.state_dir
        )
    return _streams_ensure(args.nats_url)


if __name__ == "__main__":
    sys.exit(main())
