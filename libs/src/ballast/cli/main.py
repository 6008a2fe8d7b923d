"""The `ballast` command: run the platform locally, provision the bus.

ballast up [--nodes N] [--no-cluster]     NATS + local Kubernetes control plane + every service, until Ctrl-C
ballast streams ensure --nats-url URL     create or update the catalogue's streams (the chart's install job)
ballast policy verify SUITE.yaml...       run gator suites against the real OPA
ballast policy test FILE... --policy DIR  judge manifests by Gatekeeper policies (text, json, junit)
ballast slo generate|validate -i SPECS    Sloth-compatible Prometheus rules from Sloth and OpenSLO specs
ballast incident list|show|ack|resolve|role|postmortem    the incident-bot's incidents over svc.incident.*
ballast chaos run|stop|pause|list         chaos experiments through the chaos-runner (stop --all: kill switch)
ballast traffic set NS/WEBAPP --error-rate 0.1   inject errors into the local platform's synthetic traffic
ballast slo status|budget                 the live error budgets the slo-engine keeps (svc.slo.status)
ballast events tail|export|import|replay|shadow|dlq   the event flight recorder (docs/replay.md)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from ballast.cli import chaos, events, incident, platform, slo, traffic

if TYPE_CHECKING:
    from ballast.kube.rest import KubeApi


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


async def _apply_when_namespace_exists(api: KubeApi, document: dict[str, Any], wait: float = 30.0) -> None:
    """Applies `document`; a namespace that a Tenant applied just before is still being created: wait for it."""
    from ballast.kube.apply import apply
    from ballast.kube.errors import NotFound

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            await apply(api, document, field_manager="ballast-cli")
            return
        except NotFound:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


def _apply(files: list[str]) -> int:
    import os
    from pathlib import Path

    import yaml

    from ballast.kube.client import api_client

    kubeconfig = os.environ.get("KUBECONFIG", ".ballast/platform/cluster/kubeconfig")
    documents = [d for f in files for d in yaml.safe_load_all(Path(f).read_text()) if d]

    async def run() -> None:
        api = await api_client(kubeconfig)
        async with api:
            for document in documents:
                await _apply_when_namespace_exists(api, document)
                metadata = document["metadata"]
                where = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
                print(f"{document['kind']} {where}{metadata['name']} applied")

    asyncio.run(run())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ballast", description="Ballast platform command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run NATS, a local control plane and every service until interrupted")
    up.add_argument("--nodes", type=int, default=2, help="fake (kwok) nodes in the local cluster")
    up.add_argument("--no-cluster", action="store_true", help="services only, without a Kubernetes control plane")
    up.add_argument("--nats-port", type=int, default=4222)
    up.add_argument("--state-dir", default=".ballast/platform", help="NATS store, cluster data and service logs")
    demo = commands.add_parser("demo", help="the operator lifecycle end to end on a local platform, narrated")
    demo.add_argument("--state-dir", default=".ballast/demo")
    demo.add_argument("--nats-port", type=int, default=4223)
    demo.add_argument("--http-port-base", type=int, default=8091, help="first of the services' HTTP ports")
    apply_cmd = commands.add_parser("apply", help="server-side apply manifests (e.g. deploy/samples) to KUBECONFIG")
    apply_cmd.add_argument("files", nargs="+")
    streams = commands.add_parser("streams", help="JetStream streams of the catalogue")
    streams.add_argument("action", choices=["ensure"])
    streams.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    policy = commands.add_parser("policy", help="Gatekeeper policies on the real OPA, from files")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    verify = policy_commands.add_parser("verify", help="run gator suite.yaml files (as gator verify does)")
    verify.add_argument("suites", nargs="+", metavar="SUITE.yaml")
    opa_help = "the opa binary (default: BALLAST_OPA_BINARY, else the one make tools built)"
    verify.add_argument("--opa", help=opa_help)
    policy_test = policy_commands.add_parser("test", help="judge manifests by the policies in --policy")
    policy_test.add_argument("files", nargs="+", metavar="FILE", help="manifests (YAML or JSON; directories too)")
    policy_test.add_argument("--policy", action="append", required=True, help="templates and constraints (repeatable)")
    policy_test.add_argument("--output", "-o", choices=["text", "json", "junit"], default="text")
    policy_test.add_argument("--fail-on-warn", action="store_true", help="exit 1 on warnings, 2 on denials")
    policy_test.add_argument("--opa", help=opa_help)
    slo.add_parser(commands)
    incident.add_parser(commands)
    chaos.add_parser(commands)
    traffic.add_parser(commands)
    events.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "events":
        return int(args.events_main(args))
    if args.command == "policy":
        from ballast.cli import policy as policy_cli

        if args.policy_command == "verify":
            return policy_cli.verify(args.suites, args.opa)
        return policy_cli.test(args.files, args.policy, args.output, args.fail_on_warn, args.opa)
    if args.command == "up":
        return platform.up(
            nodes=args.nodes, with_cluster=not args.no_cluster, nats_port=args.nats_port, state_dir=args.state_dir
        )
    if args.command == "demo":
        from ballast.cli import demo as demo_script

        return platform.up(
            nodes=2,
            with_cluster=True,
            nats_port=args.nats_port,
            state_dir=args.state_dir,
            only=("reconciler",),
            then=demo_script.run,
            http_port_base=args.http_port_base,
        )
    if args.command == "apply":
        return _apply(args.files)
    if args.command == "slo":
        return slo.run(args)
    if args.command == "incident":
        return incident.run(args)
    if args.command == "chaos":
        return chaos.run(args)
    if args.command == "traffic":
        return traffic.run(args)
    return _streams_ensure(args.nats_url)


if __name__ == "__main__":
    sys.exit(main())
