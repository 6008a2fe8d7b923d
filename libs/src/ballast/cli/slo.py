"""`ballast slo generate|validate|status|budget`: Prometheus rules from SLO specs, with Sloth's `generate` flags,
and the live budgets the slo-engine keeps.

    ballast slo generate -i slos.yaml [-o rules.yaml]     one file in, one rule file out (stdout without -o)
    ballast slo generate -i specs/ -o rules/              a directory in: one rule file per spec file, same paths
    ballast slo validate -i specs/                        exit 0 when every document would generate, 1 otherwise
    ballast slo status [-n NS] [--service S] [--burning]  every SLO's budget, burn and firing tiers (svc.slo.status)
    ballast slo budget NS/NAME                            one SLO: burn per window, time to exhaustion, by cause

Sloth's flags keep their meaning: --default-slo-period (the period of Sloth specs, 30d), --slo-period-windows-path
(a directory of AlertWindows files replacing the built-in 30d and 28d tables), --extra-labels/-l k=v (on every
recorded series), --disable-alerts, --disable-recordings. Errors name the file, the document, the field and the rule.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

from ballast.events.contracts.slo import SloState, SloStatusRequest, SloStatusResponse
from ballast.slo import (
    InvalidSpec,
    RuleOptions,
    SloGroup,
    SpecError,
    SpecFormat,
    UnsupportedSlo,
    WebAppAvailabilitySli,
    WindowCatalogue,
    document_rules,
    load_paths,
)
from ballast.slo.alert_windows import MissingAlertWindows
from ballast.slo.durations import format_duration, parse_duration
from ballast.slo.rendering import render_rule_files
from ballast.slo.rules import RuleDocument

_LABEL = re.compile(r"^([a-zA-Z_][a-zA-Z0-9_]*)=(.*)$")


def _period(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _slo_ref(text: str) -> tuple[str, str]:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/NAME")
    return namespace, name


def _label(text: str) -> tuple[str, str]:
    match = _LABEL.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not name=value with a Prometheus label name")
    return match[1], match[2]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    slo = commands.add_parser("slo", help="SLO specs (Sloth, OpenSLO) into Prometheus rules; live budgets")
    actions = slo.add_subparsers(dest="slo_command", required=True)
    generate = actions.add_parser("generate", help="write Sloth-compatible recording and alerting rules")
    validate = actions.add_parser("validate", help="check that every document loads and its rules generate")
    status = actions.add_parser("status", help="every SLO's budget left, burn rate and firing tiers, live")
    budget = actions.add_parser("budget", help="one SLO's budget: burn per window, time to exhaustion, causes")
    status.add_argument("-n", "--namespace", help="only SLOs in this namespace")
    status.add_argument("--service", help="only SLOs about this service")
    status.add_argument("--burning", action="store_true", help="only SLOs with a tier firing or the budget exhausted")
    budget.add_argument("slo", metavar="NAMESPACE/NAME", type=_slo_ref, help="the SLO")
    for parser in (status, budget):
        parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
        parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
        parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the slo-engine")
    for parser in (generate, validate):
        parser.add_argument("-i", "--input", required=True, type=Path, help="a spec file or a directory of them")
        parser.add_argument("--default-slo-period", type=_period, default=timedelta(days=30), metavar="DURATION")
        parser.add_argument("--slo-period-windows-path", type=Path, metavar="DIR", help="AlertWindows files")
        parser.add_argument(
            "-l", "--extra-labels", type=_label, action="append", default=[], metavar="K=V", help="repeatable"
        )
    generate.add_argument("-o", "--out", type=Path, help="file (or directory for a directory input); default stdout")
    generate.add_argument("--disable-alerts", action="store_true", help="no alerting rules")
    generate.add_argument("--disable-recordings", action="store_true", help="no recording rules")


def _generate(args: argparse.Namespace) -> tuple[dict[str, list[RuleDocument]], list[SpecError], list[SloGroup]]:
    """Rule documents per input file (one per spec document), every error found, and the ServiceLevelObjective
    objects that need no rules (their SLI is measured from the cluster's facts, not from Prometheus)."""
    windows = WindowCatalogue.builtin()
    if args.slo_period_windows_path is not None:
        windows = WindowCatalogue.from_directory(args.slo_period_windows_path)
    windows.for_period(args.default_slo_period)  # the periods there are, when it is not one of them
    options = RuleOptions(
        version=version("ballast-libs"),
        windows=windows,
        extra_labels=dict(args.extra_labels),
        # validate checks every rule kind; only generate has the flags to leave some out
        recordings=args.slo_command == "validate" or not args.disable_recordings,
        alerts=args.slo_command == "validate" or not args.disable_alerts,
    )
    loaded = load_paths([args.input], args.default_slo_period)
    errors = list(loaded.errors)
    by_file: dict[str, list[RuleDocument]] = {}
    from_facts: list[SloGroup] = []
    for group in loaded.groups:
        if group.format is SpecFormat.BALLAST and all(isinstance(s.sli, WebAppAvailabilitySli) for s in group.slos):
            from_facts.append(group)
            continue
        try:
            rules = document_rules(group, options)
        except UnsupportedSlo as error:
            errors.append(SpecError(group.file, group.document, "", f"no Prometheus rules: {error}"))
            continue
        if not rules.groups:  # as Sloth: an empty output is more likely a mistake than a wish
            errors.append(SpecError(group.file, group.document, "", "no rules: every alert and recording is disabled"))
            continue
        by_file.setdefault(group.file, []).append(rules)
    return by_file, errors, from_facts


def _write(args: argparse.Namespace, by_file: dict[str, list[RuleDocument]]) -> None:
    release = version("ballast-libs")
    if not args.input.is_dir():
        text = render_rule_files([document for documents in by_file.values() for document in documents], release)
        if args.out is None:
            sys.stdout.write(text)
        else:
            args.out.write_text(text)
        return
    for file, documents in by_file.items():
        target = args.out / Path(file).relative_to(args.input)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_rule_files(documents, release))
        print(f"{file} -> {target}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.slo_command in ("status", "budget"):
        return asyncio.run(_live(args))
    if not args.input.exists():
        print(f"ballast slo: {args.input} does not exist", file=sys.stderr)
        return 2
    if args.slo_command == "generate" and args.input.is_dir() and args.out is None:
        print("ballast slo: a directory input needs --out DIR", file=sys.stderr)
        return 2
    try:
        by_file, errors, from_facts = _generate(args)
    except (InvalidSpec, MissingAlertWindows) as error:  # the windows directory, or none for the default period
        print(f"ballast slo: {error}", file=sys.stderr)
        return 1
    for problem in errors:
        print(problem, file=sys.stderr)
    if errors:
        return 1
    if args.slo_command == "validate":
        count = sum(len(document.groups) for documents in by_file.values() for document in documents)
        files = len({*by_file, *(group.file for group in from_facts)})
        facts = f"; {len(from_facts)} measured from the cluster's facts, without rules" if from_facts else ""
        print(f"{args.input}: valid ({files} files, {count} rule groups{facts})")
        return 0
    for group in from_facts:
        names = ", ".join(slo.name for slo in group.slos)
        print(
            f"{group.file}: document {group.document}: {names}: no rules (webAppAvailability is measured from the "
            "cluster's facts by the slo-engine)",
            file=sys.stderr,
        )
    _write(args, by_file)
    return 0


# --- status and budget: the slo-engine's live figures over svc.slo.status -------------------------------------------


async def _ask(args: argparse.Namespace, request: SloStatusRequest) -> SloStatusResponse:
    # Imported here: generate and validate run without NATS and should not pay for its client.
    from prometheus_client import CollectorRegistry

    from ballast.bus import Bus
    from ballast.events.contracts.slo import SLO_STATUS
    from ballast.telemetry.metrics import BusMetrics

    bus = await Bus.connect(args.nats_url, name="ballast-cli", metrics=BusMetrics(CollectorRegistry()))
    try:
        response = await bus.request(SLO_STATUS, request, timeout=args.timeout)
    finally:
        await bus.close()
    assert isinstance(response, SloStatusResponse)
    return response


def _duration(duration: timedelta | None) -> str | None:
    """Whole seconds (the figure moves every evaluation: milliseconds are noise); None below one second."""
    if duration is None or duration < timedelta(seconds=1):
        return None
    return format_duration(timedelta(seconds=int(duration.total_seconds())))


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.2f}%"


def _status_table(states: tuple[SloState, ...]) -> str:
    rows = [("NAMESPACE", "NAME", "SERVICE", "OBJECTIVE", "BUDGET", "BURN 1H", "FIRING", "EXHAUSTED IN")]
    for state in states:
        one_hour = next((r.burn_rate for r in state.burn_rates if r.window == timedelta(hours=1)), None)
        rows.append(
            (
                state.slo.namespace,
                state.slo.name,
                state.slo.service,
                f"{state.objective:g}",
                _percent(state.budget_remaining),
                f"{one_hour:.2f}" if one_hour is not None else "-",
                ",".join(state.firing) or "-",
                _duration(state.time_to_exhaustion) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _budget_text(state: SloState) -> str:
    lines = [
        f"SLO {state.slo.namespace}/{state.slo.name} (service {state.slo.service}): {state.objective:g}% over "
        f"{format_duration(state.period)}",
        f"  budget left:   {_percent(state.budget_remaining)}" + ("  (exhausted)" if state.budget_exhausted else ""),
        f"  exhausted in:  {_duration(state.time_to_exhaustion) or '- (not burning)'}",
        f"  firing:        {', '.join(state.firing) or 'none'}",
        f"  evaluated at:  {state.evaluated_at.isoformat()}",
        "  burn rate per window:",
        *(f"    {format_duration(rate.window):>4}  {rate.burn_rate:.3f}" for rate in state.burn_rates),
    ]
    if state.consumption:
        lines.append("  budget consumed by cause (consumption during several causes counts for each):")
        for part in state.consumption:
            refs = f"  ({', '.join(part.refs)})" if part.refs else ""
            excluded = "  [excluded from the budget]" if part.excluded else ""
            lines.append(f"    {part.cause:<12} {_percent(part.budget_consumed):>8}{excluded}{refs}")
    return "\n".join(lines)


async def _live(args: argparse.Namespace) -> int:
    import nats.errors

    from ballast.bus import EndpointCallError

    if args.slo_command == "budget":
        namespace, name = args.slo
        request = SloStatusRequest(namespace=namespace, name=name)
    else:
        request = SloStatusRequest(namespace=args.namespace, service=args.service, burning_only=args.burning)
    try:
        response = await _ask(args, request)
    except (EndpointCallError, ConnectionError, TimeoutError, nats.errors.Error) as error:
        # No responders (no engine running), a timeout, or the engine's own answer (503 while it loads).
        print(f"ballast slo {args.slo_command}: the slo-engine did not answer: {error!r}", file=sys.stderr)
        return 2
    if args.slo_command == "budget" and not response.slos:
        print(f"ballast slo budget: no evaluated SLO {namespace}/{name}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(response.model_dump(mode="json")["slos"], indent=2))
    elif args.slo_command == "budget":
        print(_budget_text(response.slos[0]))
    else:
        print(_status_table(response.slos))
    return 0
