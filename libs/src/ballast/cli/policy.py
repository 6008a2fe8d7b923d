"""`ballast policy`: Gatekeeper policies on the real OPA, from files, for CI.

ballast policy verify SUITE.yaml...             gator verify: every case's assertions; exit 1 if any fails
ballast policy test FILE... --policy DIR       conftest-like: objects judged by the policies in DIR
    --output text|json|junit, --fail-on-warn; exit 0 clean, 1 on denials (with --fail-on-warn: 1 on warnings
    only, 2 on denials), 2 when a policy or input cannot be loaded

OPA is `--opa` (a binary run for the command), else BALLAST_OPA_BINARY, else the one `make tools` built.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ballast.events.contracts.policy import EnforcementAction
from ballast.policy import (
    WORKLOAD_EXPANSIONS,
    ManagedOpa,
    PolicyEngine,
    Violation,
    load_policies,
    read_policies,
)
from ballast.policy.documents import DocumentError, load_documents
from ballast.policy.policyset import policy_files
from ballast.policy.suite import report, run_suites

EXIT_DENIED = 1
EXIT_ERROR = 2


def opa_binary(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("BALLAST_OPA_BINARY"):
        return Path(os.environ["BALLAST_OPA_BINARY"])
    from ballast.local.tools import tool

    return tool("opa")


async def _with_engine(binary: Path, work: Any, *, expansions: bool) -> Any:
    """`work(engine)` on an OPA run for this command only."""
    opa = ManagedOpa(binary, lambda client: engine.restore(client))
    engine = PolicyEngine(opa.client, WORKLOAD_EXPANSIONS if expansions else ())
    async with opa:
        return await work(engine)


def verify(suites: list[str], opa: str | None) -> int:
    paths = [Path(s) for s in suites]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"ballast policy verify: no such suite: {', '.join(missing)}", file=sys.stderr)
        return EXIT_ERROR
    started = time.monotonic()

    async def run(engine: PolicyEngine) -> Any:
        return await run_suites(engine, paths)

    results = asyncio.run(_with_engine(opa_binary(opa), run, expansions=False))
    text, all_passed = report(results, time.monotonic() - started)
    print(text)
    return 0 if all_passed else EXIT_DENIED


@dataclass
class Judged:
    """One object of the input and what the policies said about it."""

    filename: str
    obj: dict[str, Any]
    violations: list[Violation] = field(default_factory=list)

    @property
    def name(self) -> str:
        metadata = self.obj.get("metadata") or {}
        where = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
        return f"{self.obj.get('kind', '?')}/{where}{metadata.get('name', '?')}"

    def by_action(self, action: EnforcementAction) -> list[Violation]:
        return [v for v in self.violations if v.enforcement_action is action]


def _result(v: Violation) -> dict[str, Any]:
    return {
        "msg": v.message,
        "constraint": v.constraint.key,
        "enforcementAction": v.enforcement_action.value,
        "details": v.details,
    }


def _text(judged: list[Judged]) -> str:
    lines = []
    labels = {EnforcementAction.DENY: "FAIL", EnforcementAction.WARN: "WARN", EnforcementAction.DRYRUN: "DRYRUN"}
    for item in judged:
        for v in item.violations:
            label = labels[v.enforcement_action]
            lines.append(f"{label} - {item.filename} - {item.name} - {v.constraint.key}: {v.message}")
    failures = sum(1 for j in judged if j.by_action(EnforcementAction.DENY))
    warnings = sum(1 for j in judged if j.by_action(EnforcementAction.WARN) and not j.by_action(EnforcementAction.DENY))
    passed = len(judged) - failures - warnings
    lines.append(f"\n{len(judged)} objects, {passed} passed, {warnings} warnings, {failures} failures")
    return "\n".join(lines)


def _json(judged: list[Judged]) -> str:
    return json.dumps(
        [
            {
                "filename": j.filename,
                "object": j.name,
                "failures": [_result(v) for v in j.by_action(EnforcementAction.DENY)],
                "warnings": [_result(v) for v in j.by_action(EnforcementAction.WARN)],
                "dryrun": [_result(v) for v in j.by_action(EnforcementAction.DRYRUN)],
            }
            for j in judged
        ],
        indent=2,
        default=str,
    )


def _junit(judged: list[Judged]) -> str:
    failures = sum(1 for j in judged if j.by_action(EnforcementAction.DENY))
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites, "testsuite", name="ballast policy test", tests=str(len(judged)), failures=str(failures), errors="0"
    )
    for item in judged:
        case = ET.SubElement(suite, "testcase", classname=item.filename, name=item.name)
        denied = item.by_action(EnforcementAction.DENY)
        if denied:
            failure = ET.SubElement(case, "failure", message=denied[0].message)
            failure.text = "\n".join(f"{v.constraint.key}: {v.message}" for v in denied)
        warned = item.by_action(EnforcementAction.WARN)
        if warned:
            ET.SubElement(case, "system-out").text = "\n".join(f"WARN {v.constraint.key}: {v.message}" for v in warned)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


FORMATS = {"text": _text, "json": _json, "junit": _junit}


def test(files: list[str], policy: list[str], output: str, fail_on_warn: bool, opa: str | None) -> int:
    try:
        policies = read_policies([Path(p) for p in policy])
        inputs = [(str(f), obj) for f in policy_files([Path(f) for f in files]) for obj in load_documents(f)]
    except DocumentError as exc:
        print(f"ballast policy test: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not policies.templates:
        print(f"ballast policy test: no ConstraintTemplate in {', '.join(policy)}", file=sys.stderr)
        return EXIT_ERROR
    judged = [Judged(filename, obj) for filename, obj in inputs]

    async def run(engine: PolicyEngine) -> list[str]:
        problems = await load_policies(engine, policies)
        if not problems:
            verdicts = await engine.evaluate([j.obj for j in judged])
            for item, violations in zip(judged, verdicts, strict=True):
                item.violations = violations
        return problems

    problems = asyncio.run(_with_engine(opa_binary(opa), run, expansions=True))
    if problems:
        for problem in problems:
            print(f"ballast policy test: {problem}", file=sys.stderr)
        return EXIT_ERROR
    print(FORMATS[output](judged))
    denied = any(j.by_action(EnforcementAction.DENY) for j in judged)
    warned = any(j.by_action(EnforcementAction.WARN) for j in judged)
    if fail_on_warn:
        return EXIT_ERROR if denied else 1 if warned else 0
    return EXIT_DENIED if denied else 0
