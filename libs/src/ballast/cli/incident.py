"""`ballast incident list|show|ack|resolve|role|postmortem`: the incident-bot's desk over `svc.incident.*`.

    ballast incident list [--all] [--service S]     active incidents (with --all: resolved and closed too)
    ballast incident show INC-7                     one incident's record
    ballast incident ack INC-7 [--by NAME]          acknowledge (the first to acknowledge becomes commander)
    ballast incident resolve INC-7 [--by NAME]      resolve
    ballast incident role INC-7 scribe alice [--by NAME]
                                                    give a role (commander, communications, operations, scribe)
    ballast incident postmortem INC-7 [--format markdown|json]
                                                    write it from the event log, store it (and post it to Slack,
                                                    when the bot has Slack); print it

`--nats-url` (default BALLAST_NATS_URL, else nats://127.0.0.1:4222), `-o json` for the records as JSON. Exit 1 when
the bot answers with an error (unknown id, a step back), 2 when it cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from datetime import timedelta

from pydantic import BaseModel

from ballast.events.contracts.incident import (
    INCIDENT_ACK,
    INCIDENT_LIST,
    INCIDENT_POSTMORTEM,
    INCIDENT_RESOLVE,
    INCIDENT_ROLE,
    INCIDENT_SHOW,
    SUPPORTING_ROLES,
    IncidentAction,
    IncidentList,
    IncidentQuery,
    IncidentRef,
    IncidentRole,
    IncidentTransition,
    PostmortemDocument,
    PostmortemFormat,
    PostmortemRequest,
    RoleAssignment,
)
from ballast.events.registry import EndpointSpec


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    incident = commands.add_parser("incident", help="incidents: list, show, acknowledge, resolve, roles, postmortem")
    actions = incident.add_subparsers(dest="incident_command", required=True)
    listing = actions.add_parser("list", help="active incidents, oldest first")
    listing.add_argument("--all", action="store_true", help="resolved and closed incidents too")
    listing.add_argument("--service", help="only incidents about this service")
    show = actions.add_parser("show", help="one incident's record")
    show.add_argument("incident_id", metavar="ID")
    for name, help_text in (("ack", "acknowledge an incident"), ("resolve", "resolve an incident")):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("incident_id", metavar="ID")
        action.add_argument("--by", default=None, help="who acts (default: the login name)")
    role = actions.add_parser("role", help="give someone a role in an incident (taking it from whoever held it)")
    role.add_argument("incident_id", metavar="ID")
    role.add_argument("role", choices=[r.value for r in IncidentRole])
    role.add_argument("to", metavar="PERSON", help="who takes the role")
    role.add_argument("--by", default=None, help="who gives it (default: the login name)")
    postmortem = actions.add_parser(
        "postmortem", help="write an incident's postmortem from the event log, store it and print it"
    )
    postmortem.add_argument("incident_id", metavar="ID")
    postmortem.add_argument("--format", choices=[f.value for f in PostmortemFormat], default="markdown")
    for parser in (listing, show, *[actions.choices[n] for n in ("ack", "resolve")], role, postmortem):
        parser.add_argument("--nats-url", default=os.environ.get("BALLAST_NATS_URL", "nats://127.0.0.1:4222"))
        parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
        # A postmortem reads hours of events (and may post to Slack): it gets longer.
        default_timeout = 30.0 if parser is postmortem else 5.0
        parser.add_argument("--timeout", type=float, default=default_timeout, help="seconds to wait for the answer")


def _request(args: argparse.Namespace) -> tuple[EndpointSpec, BaseModel]:
    command = args.incident_command
    if command == "list":
        return INCIDENT_LIST, IncidentQuery(include_resolved=args.all, service=args.service)
    if command == "show":
        return INCIDENT_SHOW, IncidentRef(incident_id=args.incident_id)
    if command == "postmortem":
        return INCIDENT_POSTMORTEM, PostmortemRequest(incident_id=args.incident_id, format=args.format)
    by = args.by or getpass.getuser()
    if command == "role":
        return INCIDENT_ROLE, RoleAssignment(incident_id=args.incident_id, by=by, role=args.role, to=args.to)
    spec = INCIDENT_ACK if command == "ack" else INCIDENT_RESOLVE
    return spec, IncidentAction(incident_id=args.incident_id, by=by)


async def _call(url: str, spec: EndpointSpec, body: BaseModel, timeout: float) -> BaseModel:
    from prometheus_client import CollectorRegistry

    from ballast.bus import Bus
    from ballast.telemetry.metrics import BusMetrics

    bus = await Bus.connect(url, name="ballast-cli", metrics=BusMetrics(CollectorRegistry()))
    try:
        return await bus.request(spec, body, timeout=timeout)
    finally:
        await bus.close()


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render_list(incidents: tuple[IncidentTransition, ...]) -> str:
    if not incidents:
        return "no incidents"
    rows = [("ID", "STATUS", "SEVERITY", "SERVICE", "OPENED", "COMMANDER", "TITLE")]
    for i in incidents:
        service = f"{i.namespace}/{i.service}" if i.namespace else i.service
        rows.append((i.incident_id, i.status.value, i.severity.value, service, i.opened_at.strftime("%Y-%m-%d %H:%M"),
                     i.commander or "-", i.title))  # fmt: skip
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
                     for row in rows)  # fmt: skip


def render_record(record: IncidentTransition) -> str:
    lines = [
        f"{record.incident_id}: {record.title}",
        f"  status:     {record.status.value}",
        f"  severity:   {record.severity.value}",
        f"  service:    {record.namespace + '/' if record.namespace else ''}{record.service}",
        f"  source:     {record.source.value} (fingerprint {record.fingerprint})",
        f"  commander:  {record.commander or '-'}",
        *(f"  {role.value + ':':<12}{record.roles[role]}" for role in SUPPORTING_ROLES if role in record.roles),
    ]
    if record.group_key:
        lines.append(f"  group key:  {record.group_key}")
    for label, at in (
        ("opened", record.opened_at),
        ("acknowledged", record.acknowledged_at),
        ("mitigated", record.mitigated_at),
        ("resolved", record.resolved_at),
        ("closed", record.closed_at),
    ):
        if at is not None:
            lines.append(f"  {label + ':':<12}{at.isoformat()}")
    if record.time_to_acknowledge is not None:
        lines.append(f"  time to acknowledge: {_ago(record.time_to_acknowledge)}")
    if record.time_to_resolve is not None:
        lines.append(f"  time to resolve:     {_ago(record.time_to_resolve)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ballast.bus import EndpointCallError

    spec, body = _request(args)
    try:
        answer = asyncio.run(_call(args.nats_url, spec, body, args.timeout))
    except EndpointCallError as exc:
        print(f"ballast incident {args.incident_command}: {exc.description} ({exc.code})", file=sys.stderr)
        return 1
    except (ConnectionError, TimeoutError, OSError) as exc:
        print(f"ballast incident: the incident-bot did not answer at {args.nats_url}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # nats-py's no-responders and timeouts are its own types
        print(f"ballast incident: the incident-bot did not answer at {args.nats_url}: {exc!r}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(answer.model_dump(mode="json"), indent=2))
    elif isinstance(answer, IncidentList):
        print(render_list(answer.incidents))
    elif isinstance(answer, PostmortemDocument):
        # The document itself on stdout (pipe it to a file); where it is stored, on stderr.
        print(answer.content, end="" if answer.content.endswith("\n") else "\n")
        posted = f", posted in Slack channel {answer.posted_to}" if answer.posted_to else ""
        print(f"{answer.postmortem_id}: {answer.digest}, stored as {answer.location}{posted}", file=sys.stderr)
    else:
        assert isinstance(answer, IncidentTransition)
        print(render_record(answer))
    return 0
