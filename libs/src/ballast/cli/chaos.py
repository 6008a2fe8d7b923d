"""`ballast chaos`: ask the chaos-runner over the bus, and show what it runs.

ballast chaos run NS/NAME [--dry-run]          run an experiment now (cmd.chaos.run)
ballast chaos stop NS/NAME                      abort its running run (cmd.chaos.stop)
ballast chaos stop --all                        the kill switch: abort every run, refuse new ones until lifted
ballast chaos pause [--namespace NS] [--service S] [--resume]
                                                hold (or release) chaos; `pause --resume` alone lifts the kill switch
ballast chaos list                              runs, holds and the kill switch, from the chaos-runs bucket

Commands are CloudEvents on the COMMANDS work queue; the request id (`--request-id`, random by default) is the event
id, so a retried command is handled once. `list` reads the bucket's JSON as the runner wrote it (the CLI does not
import the service).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import uuid
from typing import Any

from pydantic import BaseModel

from ballast.events.contracts.chaos import (
    ChaosCommand,
    ExperimentRef,
    PauseChaos,
    RunExperiment,
    StopExperiments,
    chaos_command_subject,
    chaos_command_type,
)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chaos = commands.add_parser("chaos", help="run, stop, pause and list chaos experiments (the chaos-runner)")
    chaos.add_argument("--nats-url", default=DEFAULT_NATS_URL)
    chaos.add_argument("--by", default=None, help="who asks (default: the local user)")
    chaos.add_argument("--request-id", default=None, help="the command's id; a retry with the same id runs once")
    actions = chaos.add_subparsers(dest="chaos_command", required=True)
    run = actions.add_parser("run", help="run an experiment now")
    run.add_argument("experiment", type=_experiment, metavar="NAMESPACE/NAME")
    run.add_argument("--dry-run", action="store_true", help="select targets and check the steady state only")
    stop = actions.add_parser("stop", help="abort an experiment's run, or every run with --all (the kill switch)")
    which = stop.add_mutually_exclusive_group(required=True)
    which.add_argument("experiment", nargs="?", type=_experiment, metavar="NAMESPACE/NAME")
    which.add_argument("--all", action="store_true", help="kill switch: abort everything, refuse new runs")
    stop.add_argument("--reason", default="stopped from the command line")
    pause = actions.add_parser("pause", help="hold chaos against a namespace or service (--resume releases)")
    pause.add_argument("--namespace")
    pause.add_argument("--service")
    pause.add_argument("--resume", action="store_true", help="release; with no scope also lifts the kill switch")
    pause.add_argument("--reason", default="from the command line")
    actions.add_parser("list", help="runs, holds and the kill switch")


def _experiment(text: str) -> ExperimentRef:
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/NAME")
    return ExperimentRef(namespace=namespace, name=name)


def command_for(args: argparse.Namespace) -> tuple[ChaosCommand, BaseModel]:
    """The command the arguments ask for (pure: tested without a bus)."""
    asked = {"request_id": args.request_id or uuid.uuid4().hex, "requested_by": args.by or getpass.getuser()}
    if args.chaos_command == "run":
        return ChaosCommand.RUN, RunExperiment(**asked, experiment=args.experiment, dry_run=args.dry_run)
    if args.chaos_command == "stop":
        return ChaosCommand.STOP, StopExperiments(
            **asked, experiment=None if args.all else args.experiment, reason=args.reason
        )
    return ChaosCommand.PAUSE, PauseChaos(
        **asked,
        namespace=args.namespace,
        service=args.service,
        paused=not args.resume,
        reason=args.reason,
    )


async def send(nats_url: str, command: ChaosCommand, payload: BaseModel) -> None:
    from prometheus_client import CollectorRegistry

    from ballast.bus import Bus
    from ballast.events import new_event
    from ballast.telemetry.metrics import BusMetrics

    bus = await Bus.connect(nats_url, name="ballast-cli", metrics=BusMetrics(CollectorRegistry()), wait_connected=10)
    try:
        request_id = getattr(payload, "request_id")  # noqa: B009  (every chaos command has one)
        event = new_event(chaos_command_type(command), "ballast-cli", payload, event_id=request_id)
        await bus.publisher.publish(chaos_command_subject(command), event)
    finally:
        await bus.close()


async def snapshot(nats_url: str) -> dict[str, Any]:
    """The bucket's current records by key (`chaos-runs`: run.*, stop.*, hold.*, control)."""
    import nats
    import nats.js.errors

    from ballast.events.catalogue import CHAOS_RUNS

    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        try:
            store = await nc.jetstream().key_value(CHAOS_RUNS.name)
            keys = await store.keys()
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.NoKeysError):
            return {}
        found: dict[str, Any] = {}
        for key in keys:
            with_value = await store.get(key)
            if with_value.value:
                found[key] = json.loads(with_value.value)
        return found
    finally:
        await nc.close()


def render(records: dict[str, Any]) -> list[str]:
    """The snapshot for people: the kill switch, holds, then runs (running first, newest first)."""
    lines = []
    control = records.get("control")
    if control and control.get("kill_switch"):
        lines.append(f"KILL SWITCH ENGAGED by {control['by']} at {control['at']}: {control['reason']}")
    else:
        lines.append("kill switch: off")
    holds = [v for k, v in records.items() if k.startswith("hold.")]
    for hold in sorted(holds, key=lambda h: h["at"]):
        scope = f"{hold.get('namespace') or '*'}/{hold.get('service') or '*'}"
        tier = f" ({hold['tier']} tier)" if hold.get("tier") else ""
        lines.append(f"held {scope}{tier} [{hold['source']}]: {hold['reason']}")
    runs = [v for k, v in records.items() if k.startswith("run.")]
    runs.sort(key=lambda r: (r["phase"] != "running", r["started_at"]), reverse=False)
    if runs:
        lines.append(f"{'RUN':<50} {'EXPERIMENT':<32} {'FAULT':<12} {'PHASE':<9} {'OUTCOME':<20} OWNER")
    for run in runs:
        experiment = f"{run['experiment']['namespace']}/{run['experiment']['name']}"
        open_faults = sum(1 for f in run.get("faults", []) if f["state"] in ("recorded", "applied"))
        outcome = run.get("outcome") or (f"{open_faults} fault(s) open" if open_faults else "")
        lines.append(
            f"{run['run_id']:<50} {experiment:<32} {run['fault']:<12} {run['phase']:<9} {outcome:<20} {run['owner']}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    if args.chaos_command == "list":
        for line in render(asyncio.run(snapshot(args.nats_url))):
            print(line)
        return 0
    command, payload = command_for(args)
    asyncio.run(send(args.nats_url, command, payload))
    print(f"{chaos_command_subject(command)} sent: {payload.model_dump_json(exclude_none=True)}", file=sys.stdout)
    return 0
