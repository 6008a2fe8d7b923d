"""`ballast events`: the flight recorder's command line (see docs/replay.md).

    ballast events tail [--stream S] [filters] [--json]              follow events as they are stored (Ctrl-C ends)
    ballast events export --stream S [filters] [-o FILE[.gz]]         JSONL of structured CloudEvents (.gz: gzip)
    ballast events import FILE [--on-error stop|skip] [--execute]     publish an export back (checked first)
    ballast events replay (--stream S [filters] | --file F) [--into shadow|live] [--pace instant|original|10x]
    ballast events shadow policy --policy DIR [window]                what a candidate policy set would change
    ballast events shadow slo --slo FILE [--windows DIR] [window]     the alerts a candidate SLO would fire or miss
    ballast events shadow incident --escalation FILE [window]         who a candidate escalation policy would page
    ballast events dlq list|show SEQ|redrive SEQ...                   dead letters of the bus's consumers

Filters: --subject (repeatable), --type and --source (globs, repeatable), --since/--until (RFC 3339, or a duration
before now such as 2h), --from-seq/--to-seq. Anything that publishes or deletes is a dry run that says what it would
do unless --execute. What publishes (import, replay, redrive) records its start and its end on evt.replay
(`ballast.events.contracts.replay`), and does not publish if its start cannot be recorded. Long runs show progress with
rate and ETA on stderr; Ctrl-C stops at the next message and says where to resume. Exit status: 0 done, 1 stopped
before the end, 2 refused (bad input, unknown stream or subject).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ballast.events.catalogue import CATALOGUE, DEAD_LETTERS
from ballast.replay.pacing import Pacing, PacingError
from ballast.replay.selection import Selection, SelectionError, parse_time, stream_of
from ballast.slo.durations import parse_duration

if TYPE_CHECKING:
    from ballast.replay.audit import Audit
    from ballast.replay.publishing import Tally

EXIT_STOPPED = 1
EXIT_REFUSED = 2
DEFAULT_URL = "nats://127.0.0.1:4222"


def _time(text: str) -> Any:
    try:
        return parse_time(text)
    except SelectionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _pacing(text: str) -> Pacing:
    try:
        return Pacing.parse(text)
    except PacingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not 1 or more")
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--nats-url", default=os.environ.get("BALLAST_NATS_URL", DEFAULT_URL), help="default BALLAST_NATS_URL"
    )
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--subject", action="append", default=[], help="subject filter, wildcards allowed")
    filters.add_argument("--type", action="append", default=[], help="ce-type glob, e.g. 'io.k8s.deployment.*'")
    filters.add_argument("--source", action="append", default=[], help="ce-source glob")
    window = argparse.ArgumentParser(add_help=False)
    window.add_argument("--since", type=_time, help="RFC 3339 time, or a duration before now (2h, 30m, 1d)")
    window.add_argument("--until", type=_time, help="RFC 3339 time, or a duration before now")
    window.add_argument("--from-seq", type=_positive, help="first stream sequence")
    window.add_argument("--to-seq", type=_positive, help="last stream sequence")
    execute = argparse.ArgumentParser(add_help=False)
    execute.add_argument("--execute", action="store_true", help="do it (without: a dry run saying what it would do)")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress line")

    events = commands.add_parser("events", help="tail, export, import, replay recorded events; shadow runs; DLQ")
    jobs = events.add_subparsers(dest="events_command", required=True)

    tail = jobs.add_parser("tail", parents=[connection, filters, window], help="follow events as they are stored")
    tail.add_argument("--stream", action="append", default=[], help="default: the stream(s) of --subject, else all")
    tail.add_argument("--json", action="store_true", help="JSONL lines (the export format) instead of summaries")
    tail.add_argument("--limit", type=_positive, help="stop after this many events")

    export = jobs.add_parser("export", parents=[connection, filters, window, quiet], help="write JSONL")
    export.add_argument("--stream", help="default: the stream holding --subject")
    export.add_argument("-o", "--out", type=Path, help="file to write, gzip if it ends in .gz (default stdout)")
    export.add_argument("--append", action="store_true", help="add to --out rather than replace it (a resumed export)")

    imp = jobs.add_parser("import", parents=[connection, execute, quiet], help="publish an export back")
    imp.add_argument("file", type=Path, help="an export, plain or gzip")
    imp.add_argument("--on-error", choices=["stop", "skip"], default="stop", help="on a malformed line (stop)")
    imp.add_argument("--from-line", type=_positive, default=1, help="resume an import from this line")

    replay = jobs.add_parser(
        "replay", parents=[connection, filters, window, execute, quiet], help="publish recorded events again"
    )
    origin = replay.add_mutually_exclusive_group(required=True)
    origin.add_argument("--stream", help="replay from this stream (with the filters)")
    origin.add_argument("--file", type=Path, help="replay an export file (plain or gzip)")
    replay.add_argument("--into", choices=["shadow", "live"], default="shadow", help="SHADOW_<run> or live subjects")
    replay.add_argument("--run", help="run id (default: a new one); a replay run again with it stores nothing twice")
    replay.add_argument("--pace", type=_pacing, default=Pacing(None), help="instant (default), original, or 10x")
    replay.add_argument("--on-error", choices=["stop", "skip"], default="stop", help="for --file (stop)")

    shadow = jobs.add_parser("shadow", help="run a candidate policy, SLO or escalation policy over a recorded window")
    kinds = shadow.add_subparsers(dest="shadow_kind", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run", help="run id (default: a new one); the copy is SHADOW_<run>")
    common.add_argument("--keep", action="store_true", help="keep SHADOW_<run> after the run (it ages out in 24h)")
    common.add_argument("--output", "-o", choices=["text", "json"], default="text")
    common.add_argument("--cluster", help="only this cluster's recorded events (default: every cluster's)")
    sp = kinds.add_parser(
        "policy", parents=[connection, window, common], help="decisions a candidate policy set would change"
    )
    sp.add_argument("--policy", action="append", required=True, type=Path, help="templates and constraints")
    sp.add_argument("--opa", help="the opa binary (default: BALLAST_OPA_BINARY, else the one make tools built)")
    ss = kinds.add_parser(
        "slo", parents=[connection, window, common], help="tier alerts a candidate SLO would fire or miss"
    )
    ss.add_argument("--slo", required=True, type=Path, help="the candidate SLO spec (any format ballast slo reads)")
    ss.add_argument("--name", help="the SLO's name, when the spec holds several")
    ss.add_argument("--namespace", help="the SLO's namespace (default: the spec's, else the WebApp's)")
    ss.add_argument("--windows", type=Path, help="a directory of AlertWindows files (a candidate window set)")
    ss.add_argument("--default-slo-period", type=_duration, default=timedelta(days=30), metavar="DURATION")
    ss.add_argument("--step", type=_duration, default=timedelta(minutes=1), help="evaluation interval (1m)")
    si = kinds.add_parser(
        "incident", parents=[connection, window, common], help="who a candidate escalation policy would page"
    )
    si.add_argument("--escalation", required=True, type=Path, help="the candidate escalation policies (YAML/JSON)")
    si.add_argument(
        "--tolerance", type=_duration, default=timedelta(minutes=1), help="same page when this close in time (1m)"
    )

    dlq = jobs.add_parser("dlq", help="dead letters of the bus's consumers")
    dlq_jobs = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_jobs.add_parser("list", parents=[connection], help="every dead letter, oldest first")
    dlq_list.add_argument("--consumer", help="only this consumer's")
    dlq_list.add_argument("--output", "-o", choices=["text", "json"], default="text")
    dlq_show = dlq_jobs.add_parser("show", parents=[connection], help="one dead letter with its original message")
    dlq_show.add_argument("sequence", type=_positive)
    redrive = dlq_jobs.add_parser("redrive", parents=[connection, execute], help="publish originals again")
    redrive.add_argument("sequences", nargs="*", type=_positive, metavar="SEQ")
    redrive.add_argument("--consumer", help="every dead letter of this consumer")
    events.set_defaults(events_main=run)


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        subjects=tuple(getattr(args, "subject", [])),
        types=tuple(getattr(args, "type", [])),
        sources=tuple(getattr(args, "source", [])),
        since=args.since,
        until=args.until,
        from_seq=args.from_seq,
        to_seq=args.to_seq,
    )


def _err(text: str) -> None:
    print(f"ballast events: {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Runs the parsed `ballast events ...` command; returns the exit status."""
    from ballast.bus.publisher import PublishError

    try:
        return asyncio.run(_dispatch(args))
    except (SelectionError, PublishError, ConnectionError, LookupError, ValueError) as exc:
        _err(str(exc))
        return EXIT_REFUSED


async def _dispatch(args: argparse.Namespace) -> int:
    command = args.events_command
    if command == "import":
        return await _import(args)
    if command == "shadow" and args.shadow_kind == "slo":
        return await _shadow_slo(args)
    if command == "shadow" and args.shadow_kind == "incident":
        return await _shadow_incident(args)
    handlers: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
        "tail": _tail,
        "export": _export,
        "replay": _replay,
        "shadow": _shadow_policy,
        "dlq": _dlq,
    }
    return await handlers[command](args)


async def _connect(url: str) -> Any:
    from prometheus_client import CollectorRegistry

    from ballast.bus import Bus
    from ballast.telemetry.metrics import BusMetrics

    return await Bus.connect(url, name="ballast-events", metrics=BusMetrics(CollectorRegistry()))


async def _record_start(audit: Audit) -> None:
    """The run's start on evt.replay, before it publishes anything; a start that cannot be recorded stops it."""
    from ballast.bus.publisher import PublishError

    try:
        await audit.started()
    except (PublishError, ConnectionError, TimeoutError) as exc:
        raise PublishError(f"could not record run {audit.run} on evt.replay ({exc}): nothing was published") from exc
    print(f"run {audit.run} recorded on evt.replay ({audit.operation}, by {audit.actor})", file=sys.stderr)


async def _record_end(
    audit: Audit, tally: Tally, *, stopped: bool = False, error: str | None = None, resume: str | None = None
) -> None:
    """The run's end on evt.replay; what was published stays published if this fails, which is said."""
    from ballast.bus.publisher import PublishError

    try:
        await audit.ended(tally, stopped=stopped, error=error, resume=resume)
    except (PublishError, ConnectionError, TimeoutError) as exc:
        _err(f"could not record the end of run {audit.run} on evt.replay: {exc}")


# --- tail, export ----------------------------------------------------------------------------------------------------


async def _tail(args: argparse.Namespace) -> int:
    from ballast.bus import StoredEvent
    from ballast.replay.progress import Stop
    from ballast.replay.records import NotAnEvent, export_line
    from ballast.replay.tailing import summary, tail

    selection = _selection(args)
    if args.stream:
        streams = [stream_of(CATALOGUE, s, selection.subjects) for s in args.stream]
    elif selection.subjects:
        streams = [stream_of(CATALOGUE, None, selection.subjects)]
    else:
        streams = [s.name for s in CATALOGUE.streams if s.name != DEAD_LETTERS.name]
    out = sys.stdout

    def show(stream: str, stored: StoredEvent) -> None:
        if args.json:
            try:
                line = export_line(stream, stored.sequence, stored.time, stored.subject, stored.headers, stored.data)
            except NotAnEvent as exc:
                _err(f"{stream}#{stored.sequence} is not a CloudEvent ({exc}): not shown")
                return
            out.write(line.decode())
        else:
            out.write(summary(stream, stored) + "\n")
        out.flush()

    bus = await _connect(args.nats_url)
    try:
        stop = Stop()
        with stop.catching():
            print(f"tailing {', '.join(streams)} ({selection.describe()}); Ctrl-C ends", file=sys.stderr)
            count = await tail(bus, streams, selection, show, stop, limit=args.limit)
        print(f"{count} events", file=sys.stderr)
    finally:
        await bus.close()
    return 0


async def _export(args: argparse.Namespace) -> int:
    from ballast.replay.exporting import export
    from ballast.replay.files import open_for_writing
    from ballast.replay.progress import Progress, Stop
    from ballast.replay.reading import count_selected

    if args.append and args.out is None:
        raise ValueError("--append needs --out (on stdout, append with the shell: >>)")
    selection = _selection(args)
    stream = stream_of(CATALOGUE, args.stream, selection.subjects)
    bus = await _connect(args.nats_url)
    try:
        total = await count_selected(bus, stream, selection)
        progress = Progress(f"export {stream}", total, enabled=not args.quiet)
        stop = Stop()
        out = open_for_writing(args.out, append=args.append) if args.out else sys.stdout.buffer
        try:
            with stop.catching():
                result = await export(bus, stream, selection, out, progress=progress, stop=stop)
        finally:
            if args.out:
                out.close()
        progress.finish()
    finally:
        await bus.close()
    where = str(args.out) if args.out else "stdout"
    span = f" (sequences {result.first_seq}..{result.last_seq})" if result.first_seq else ""
    print(f"exported {result.written} events from {stream}{span} to {where}", file=sys.stderr)
    if result.not_events:
        shown = ", ".join(f"#{seq}" for seq, _ in result.not_events[:20])
        print(
            f"{len(result.not_events)} messages are not CloudEvents and were not written: {shown}"
            f"{' ...' if len(result.not_events) > 20 else ''} (first: {result.not_events[0][1]})",
            file=sys.stderr,
        )
    if result.stopped:
        again = f"--append -o {args.out}" if args.out else "and append to what you kept (>>)"
        print(f"stopped; resume with --from-seq {result.resume_from} {again}", file=sys.stderr)
        return EXIT_STOPPED
    return 0


# --- import, replay --------------------------------------------------------------------------------------------------


def _report_malformed(malformed: list[Any], limit: int = 20) -> None:
    for problem in malformed[:limit]:
        _err(str(problem))
    if len(malformed) > limit:
        _err(f"... and {len(malformed) - limit} more malformed lines")


async def _import(args: argparse.Namespace) -> int:
    from ballast.events.contracts.replay import ReplayOperation
    from ballast.replay import importing
    from ballast.replay.audit import Audit
    from ballast.replay.progress import Progress, Stop
    from ballast.replay.selection import SHADOW_PREFIX
    from ballast.replay.shadow import new_run_id

    if not args.file.is_file():
        raise SelectionError(f"{args.file}: no such file")
    plan = importing.check(args.file, CATALOGUE, from_line=args.from_line)
    _report_malformed(plan.malformed)
    lines = f"lines {plan.first_line}..{plan.last_line}" if plan.first_line else "no lines"
    streams = ", ".join(f"{name} {count}" for name, count in sorted(plan.streams.items())) or "none"
    if plan.malformed and args.on_error == "stop":
        _err(f"{len(plan.malformed)} malformed line(s): nothing published (--on-error skip publishes the rest)")
        return EXIT_REFUSED
    skipped = f", skipping {len(plan.malformed)} malformed" if plan.malformed else ""
    if not args.execute:
        print(
            f"dry run: would publish {plan.events} events ({lines}{skipped}) to their recorded subjects; "
            f"streams: {streams}; each with Nats-Msg-Id <ce-source>/<ce-id>, so events already stored within the "
            "duplicate window are not stored again"
            + ("; the malformed lines would be kept as dead letters (dlq.events-import)" if plan.malformed else "")
            + ". Pass --execute to publish."
        )
        return 0
    bus = await _connect(args.nats_url)
    try:
        for name in await importing.create_missing_streams(bus, plan, CATALOGUE):
            print(f"created stream {name} (the server had none of that name), as the catalogue declares it")
        audit = Audit(
            bus,
            new_run_id(),
            ReplayOperation.IMPORT,
            source=f"file {args.file} ({lines}{skipped})",
            target="the recorded subjects",
            live=any(not name.startswith(SHADOW_PREFIX) for name in plan.streams),
            planned=plan.events,
        )
        await _record_start(audit)
        progress = Progress(f"import {args.file}", plan.events, enabled=not args.quiet)
        stop = Stop()
        with stop.catching():
            result = await importing.publish(bus, plan, from_line=args.from_line, progress=progress, stop=stop)
        progress.finish()
        kept = await importing.dead_letter(bus, plan)
        await _record_end(
            audit, result.tally, stopped=result.stopped, error=result.error, resume=f"--from-line {result.resume_from}"
        )
    finally:
        await bus.close()
    print(
        f"imported {result.tally.stored} events, {result.tally.duplicates} already stored (duplicates){skipped}; "
        f"through line {result.published_through}"
    )
    if plan.malformed:
        print(
            f"{len(plan.malformed)} malformed line(s) kept as dead letters on dlq.events-import with their reasons "
            f"({kept} new): ballast events dlq list --consumer events-import"
        )
    if result.error or result.stopped:
        why = f"failed: {result.error}" if result.error else "stopped"
        _err(f"{why}; every line before {result.resume_from} is stored: resume with --from-line {result.resume_from}")
        return EXIT_REFUSED if result.error else EXIT_STOPPED
    return 0


async def _replay(args: argparse.Namespace) -> int:
    import contextlib

    from ballast.events.contracts.replay import ReplayOperation
    from ballast.replay import importing, replaying
    from ballast.replay.audit import Audit
    from ballast.replay.progress import Progress, Stop
    from ballast.replay.reading import count_selected, read_selection
    from ballast.replay.shadow import check_run_id, new_run_id, shadow_stream

    run_id = check_run_id(args.run or new_run_id())
    into = replaying.Into(args.into)
    selection = _selection(args)
    stream = stream_of(CATALOGUE, args.stream, selection.subjects) if args.stream else None
    plan = None
    if args.file is not None:
        if not args.file.is_file():
            raise SelectionError(f"{args.file}: no such file")
        plan = importing.check(args.file, CATALOGUE)
        _report_malformed(plan.malformed)
        if plan.malformed and args.on_error == "stop":
            _err(f"{len(plan.malformed)} malformed line(s): nothing replayed (--on-error skip replays the rest)")
            return EXIT_REFUSED
    bus = await _connect(args.nats_url)
    skipped: list[int] = []

    def items() -> Any:
        if plan is not None:
            return replaying.from_file(importing.good_lines(plan, 1))
        assert stream is not None
        return replaying.from_stream(read_selection(bus, stream, selection), skipped)

    target = (
        f"stream {shadow_stream(run_id)} (subjects shadow.{run_id}.<subject>)"
        if into is replaying.Into.SHADOW
        else ("the LIVE subjects: the services consume them again")
    )
    source = f"stream {stream} ({selection.describe()})" if stream else f"file {args.file}"
    try:
        if not args.execute:
            async with contextlib.aclosing(items()) as found:
                summary = await replaying.plan(found)
            span = ""
            if summary.first and summary.last:
                span = (
                    f" (positions {summary.first.position}..{summary.last.position}, stored "
                    f"{summary.first.stored.isoformat()} .. {summary.last.stored.isoformat()}, "
                    f"{args.pace.duration(summary.first.stored, summary.last.stored):.1f}s at {args.pace.describe()})"
                )
            print(f"dry run: would replay {summary.count} events from {source}{span} into {target}, run {run_id}")
            for subject, count in sorted(summary.subjects.items())[:20]:
                print(f"  {subject}: {count}")
            if skipped:
                print(f"  {len(skipped)} messages are not CloudEvents and would be skipped")
            print("Pass --execute to replay.")
            return 0
        total = plan.events if plan is not None else await count_selected(bus, stream or "", selection)
        audit = Audit(
            bus, run_id, ReplayOperation.REPLAY, source, target, live=into is replaying.Into.LIVE, planned=total
        )
        await _record_start(audit)
        progress = Progress(f"replay {run_id}", total, enabled=not args.quiet)
        stop = Stop()
        print(f"replaying {source} into {target}, run {run_id}, {args.pace.describe()}", file=sys.stderr)
        with stop.catching():
            async with contextlib.aclosing(items()) as found:
                result = await replaying.replay(
                    bus, found, run=run_id, into=into, pacing=args.pace, progress=progress, stop=stop
                )
        progress.finish()
        flag = "--from-line" if plan is not None else "--from-seq"
        resume = f"{flag} {(result.replayed_through or 0) + 1} --run {run_id}"
        await _record_end(audit, result.tally, stopped=result.stopped, error=result.error, resume=resume)
    finally:
        await bus.close()
    print(
        f"replayed {result.tally.stored} events into {result.target}, {result.tally.duplicates} already there "
        f"(same run id), run {run_id}"
    )
    if skipped:
        print(f"{len(skipped)} messages were not CloudEvents and were skipped: " + ", ".join(map(str, skipped[:20])))
    if result.error or result.stopped:
        why = f"failed: {result.error}" if result.error else "stopped"
        _err(f"{why}; resume with {resume}")
        return EXIT_REFUSED if result.error else EXIT_STOPPED
    return 0


# --- shadow runs -----------------------------------------------------------------------------------------------------


def _print_report(output: str, header: dict[str, Any], body: dict[str, Any], lines: list[str]) -> None:
    if output == "json":
        print(json.dumps(header | body, indent=2))
        return
    print(
        f"shadow run {header['run']}: copied {header['copied']} events into {header['stream']} in "
        f"{header['copy_seconds']:.2f}s ({header['copy_per_s']:,.0f}/s)" + ("; kept" if header["kept"] else "; removed")
    )
    for line in lines:
        print(line)


async def _shadow_policy(args: argparse.Namespace) -> int:
    from ballast.cli.policy import opa_binary
    from ballast.policy import WORKLOAD_EXPANSIONS, ManagedOpa, PolicyEngine, load_policies, read_policies
    from ballast.replay import shadowing
    from ballast.replay.shadow import check_run_id, new_run_id

    run_id = check_run_id(args.run or new_run_id())
    selection = _selection(args)
    policies = read_policies(args.policy)
    binary = opa_binary(args.opa)
    opa = ManagedOpa(binary, lambda client: engine.restore(client))
    engine = PolicyEngine(opa.client, WORKLOAD_EXPANSIONS)
    async with opa:
        problems = await load_policies(engine, policies)
        if problems:
            for problem in problems:
                _err(problem)
            _err("the candidate policies do not all load: no shadow run")
            return EXIT_REFUSED
        bus = await _connect(args.nats_url)
        try:
            copy, diff = await shadowing.policy(bus, engine, run_id, selection, cluster=args.cluster, keep=args.keep)
        finally:
            await bus.close()
    header = _shadow_header(run_id, copy, args.keep, "policy", selection)
    _print_report(args.output, header, diff.as_json(), diff.text())
    return 0


def _shadow_header(run_id: str, copy: Any, kept: bool, kind: str, selection: Selection) -> dict[str, Any]:
    return {
        "run": run_id,
        "kind": kind,
        "window": selection.describe(),
        "stream": copy.stream,
        "copied": copy.copied,
        "copy_seconds": copy.seconds,
        "copy_per_s": copy.rate,
        "kept": kept,
    }


async def _shadow_slo(args: argparse.Namespace) -> int:
    from ballast.replay import shadowing
    from ballast.replay.shadow import check_run_id, new_run_id
    from ballast.replay.shadow_slo import Candidate
    from ballast.slo import RollingWindow, WindowCatalogue, load_paths, workbook_windows
    from ballast.slo.periods import period_at

    run_id = check_run_id(args.run or new_run_id())
    loaded = load_paths([args.slo], args.default_slo_period)
    if loaded.errors:
        for error in loaded.errors:
            _err(str(error))
        return EXIT_REFUSED
    found = [(group, slo) for group in loaded.groups for slo in group.slos if args.name in (None, slo.name)]
    if len(found) != 1:
        names = ", ".join(slo.name for group in loaded.groups for slo in group.slos)
        raise SelectionError(f"{args.slo}: {len(found)} SLOs match (have {names or 'none'}): name one with --name")
    group, slo = found[0]
    namespace = args.namespace or (group.kubernetes.namespace if group.kubernetes else None)
    namespace = namespace or getattr(slo.sli, "namespace", None)
    if not namespace:
        raise SelectionError(f"SLO {slo.name}: no namespace in the spec: pass --namespace")
    if args.windows is not None:
        catalogue = WindowCatalogue.from_directory(args.windows)
        length = slo.window.length if isinstance(slo.window, RollingWindow) else period_at(slo.window, _now()).length
        windows = catalogue.for_period(length)
    elif isinstance(slo.window, RollingWindow):
        windows = WindowCatalogue.builtin().for_period(slo.window.length)
    else:
        windows = workbook_windows(period_at(slo.window, _now()).length)
    candidate = Candidate(slo, namespace, "shadow", windows)
    bus = await _connect(args.nats_url)
    try:
        copy, diff = await shadowing.slo(
            bus, candidate, run_id, _selection(args), step=args.step, cluster=args.cluster, keep=args.keep
        )
    finally:
        await bus.close()
    header = _shadow_header(run_id, copy, args.keep, "slo", _selection(args))
    _print_report(args.output, header, diff.as_json(), diff.text())
    return 0


async def _shadow_incident(args: argparse.Namespace) -> int:
    from ballast.events.contracts.escalation import load_escalation
    from ballast.replay import shadowing
    from ballast.replay.shadow import check_run_id, new_run_id

    run_id = check_run_id(args.run or new_run_id())
    escalation = load_escalation(args.escalation)  # a bad file is refused naming the field (EscalationConfigError)
    selection = _selection(args)
    bus = await _connect(args.nats_url)
    try:
        copy, diff = await shadowing.incident(
            bus, escalation, run_id, selection, cluster=args.cluster, keep=args.keep, tolerance=args.tolerance
        )
    finally:
        await bus.close()
    header = _shadow_header(run_id, copy, args.keep, "incident", selection)
    _print_report(args.output, header, diff.as_json(), diff.text())
    return 0


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# --- dead letters ----------------------------------------------------------------------------------------------------


async def _dlq(args: argparse.Namespace) -> int:
    from ballast.events.contracts.replay import ReplayOperation
    from ballast.replay import dead_letters
    from ballast.replay.audit import Audit
    from ballast.replay.publishing import Tally
    from ballast.replay.shadow import new_run_id

    bus = await _connect(args.nats_url)
    try:
        if args.dlq_command == "list":
            letters = await dead_letters.list_letters(bus, args.consumer)
            if args.output == "json":
                print(json.dumps([_letter_json(letter) for letter in letters], indent=2))
            for letter in letters if args.output == "text" else ():
                ce = letter.ce
                print(
                    f"#{letter.sequence} {letter.time.isoformat()} {letter.consumer}: {letter.reason} "
                    f"[{letter.stream}#{letter.stream_seq} {letter.subject or ''} {ce.get('type', '')} "
                    f"{ce.get('id', '')}]"
                )
            if args.output == "text":
                print(f"{len(letters)} dead letters", file=sys.stderr)
            return 0
        if args.dlq_command == "show":
            letter = await dead_letters.get_letter(bus, args.sequence)
            print(json.dumps(_letter_json(letter, body=True), indent=2))
            return 0
        sequences = list(args.sequences)
        if args.consumer:
            sequences += [letter.sequence for letter in await dead_letters.list_letters(bus, args.consumer)]
        if not sequences:
            raise SelectionError("name dead letters to redrive (SEQ...) or --consumer")
        if not args.execute:
            for sequence in sequences:
                letter = await dead_letters.get_letter(bus, sequence)
                headers = dead_letters.redrive_headers(letter) if letter.subject else {}
                print(
                    f"dry run: would publish dead letter #{sequence} ({letter.consumer}: {letter.reason}) again on "
                    f"{letter.subject or '(original gone)'} with Nats-Msg-Id {headers.get('Nats-Msg-Id', '-')}, "
                    f"then delete it from {DEAD_LETTERS.name}"
                )
            print("Pass --execute to redrive.")
            return 0
        audit = Audit(
            bus,
            new_run_id(),
            ReplayOperation.REDRIVE,
            source="dead letters " + ", ".join(f"#{sequence}" for sequence in sequences),
            target="their original subjects",
            live=True,
            planned=len(sequences),
        )
        await _record_start(audit)
        try:
            redriven = await dead_letters.redrive(bus, sequences)
        except Exception as exc:
            # The letters redriven before the failure are deleted from the dead letters: listing them shows the rest.
            await _record_end(audit, Tally(), error=str(exc), resume="ballast events dlq list")
            raise
        for done in redriven:
            what = "already there (duplicate)" if done.duplicate else f"stored as {done.stream}#{done.stream_seq}"
            print(f"redrove #{done.letter.sequence} to {done.letter.subject}: {what}; dead letter deleted")
        duplicates = sum(done.duplicate for done in redriven)
        await _record_end(audit, Tally(stored=len(redriven) - duplicates, duplicates=duplicates))
        return 0
    finally:
        await bus.close()


def _letter_json(letter: Any, *, body: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {
        "sequence": letter.sequence,
        "time": letter.time.isoformat(),
        "kind": letter.kind,
        "consumer": letter.consumer,
        "reason": letter.reason,
        "stream": letter.stream,
        "stream_seq": letter.stream_seq,
        "subject": letter.subject,
        "deliveries": letter.deliveries,
        "type": letter.ce.get("type"),
        "id": letter.ce.get("id"),
    }
    if body:
        found["headers"] = dict(letter.headers)
        if letter.body is not None:
            try:
                found["data"] = json.loads(letter.body)
            except ValueError:
                found["data_text"] = letter.body.decode("utf-8", "replace")
    return found
