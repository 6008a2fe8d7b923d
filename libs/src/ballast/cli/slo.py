"""`ballast slo generate|validate`: Prometheus rules from SLO specs, with Sloth's `generate` flags.

    ballast slo generate -i slos.yaml [-o rules.yaml]     one file in, one rule file out (stdout without -o)
    ballast slo generate -i specs/ -o rules/              a directory in: one rule file per spec file, same paths
    ballast slo validate -i specs/                        exit 0 when every document would generate, 1 otherwise

Sloth's flags keep their meaning: --default-slo-period (the period of Sloth specs, 30d), --slo-period-windows-path
(a directory of AlertWindows files replacing the built-in 30d and 28d tables), --extra-labels/-l k=v (on every
recorded series), --disable-alerts, --disable-recordings. Errors name the file, the document, the field and the rule.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

from ballast.slo import (
    InvalidSpec,
    RuleOptions,
    SpecError,
    UnsupportedSlo,
    WindowCatalogue,
    document_rules,
    load_paths,
)
from ballast.slo.alert_windows import MissingAlertWindows
from ballast.slo.durations import parse_duration
from ballast.slo.rendering import render_rule_files
from ballast.slo.rules import RuleDocument

_LABEL = re.compile(r"^([a-zA-Z_][a-zA-Z0-9_]*)=(.*)$")


def _period(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _label(text: str) -> tuple[str, str]:
    match = _LABEL.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not name=value with a Prometheus label name")
    return match[1], match[2]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    slo = commands.add_parser("slo", help="SLO specs (Sloth, OpenSLO) into Prometheus rules")
    actions = slo.add_subparsers(dest="slo_command", required=True)
    generate = actions.add_parser("generate", help="write Sloth-compatible recording and alerting rules")
    validate = actions.add_parser("validate", help="check that every document loads and its rules generate")
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


def _generate(args: argparse.Namespace) -> tuple[dict[str, list[RuleDocument]], list[SpecError]]:
    """Rule documents per input file (one per spec document), and every error found."""
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
    for group in loaded.groups:
        try:
            rules = document_rules(group, options)
        except UnsupportedSlo as error:
            errors.append(SpecError(group.file, group.document, "", f"no Prometheus rules: {error}"))
            continue
        if not rules.groups:  # as Sloth: an empty output is more likely a mistake than a wish
            errors.append(SpecError(group.file, group.document, "", "no rules: every alert and recording is disabled"))
            continue
        by_file.setdefault(group.file, []).append(rules)
    return by_file, errors


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
    if not args.input.exists():
        print(f"ballast slo: {args.input} does not exist", file=sys.stderr)
        return 2
    if args.slo_command == "generate" and args.input.is_dir() and args.out is None:
        print("ballast slo: a directory input needs --out DIR", file=sys.stderr)
        return 2
    try:
        by_file, errors = _generate(args)
    except (InvalidSpec, MissingAlertWindows) as error:  # the windows directory, or none for the default period
        print(f"ballast slo: {error}", file=sys.stderr)
        return 1
    for problem in errors:
        print(problem, file=sys.stderr)
    if errors:
        return 1
    if args.slo_command == "validate":
        count = sum(len(document.groups) for documents in by_file.values() for document in documents)
        print(f"{args.input}: valid ({len(by_file)} files, {count} rule groups)")
        return 0
    _write(args, by_file)
    return 0
