"""gator verify: `suite.yaml` files (`test.gatekeeper.sh/v1alpha1` Suite) run against the engine.

A suite lists tests (a template, a constraint, optionally an expansion template) and their cases (one object, an
optional inventory, assertions). An assertion counts the violations whose message matches its `message` regular
expression (unanchored; every violation when absent) and passes when `violations` is `yes` (at least one), `no`
(none) or exactly the number given. Each test's cases go to OPA in one query, each case with its own inventory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ballast.policy.constraints import Constraint, ConstraintError
from ballast.policy.documents import DocumentError, load_documents, load_yaml
from ballast.policy.engine import PolicyEngine, Violation, inventory_document
from ballast.policy.expansion import ExpansionError, ExpansionTemplate
from ballast.policy.review import ReviewError, review_object
from ballast.policy.templates import ConstraintTemplate, TemplateError


class SuiteError(ValueError):
    """A suite, test or case that cannot be run as written."""


@dataclass
class CaseResult:
    suite: Path
    test: str
    case: str
    error: str | None = None  # why the case failed (an assertion, or the case could not run)
    skipped: bool = False
    messages: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.error is None and not self.skipped

    @property
    def name(self) -> str:
        return f"{self.suite}::{self.test}::{self.case}"


def expected_count(assertion: dict[str, Any]) -> str | int:
    """`violations` as gator reads it: yes, no or a count (YAML 1.1 made bare yes/no booleans)."""
    raw = assertion.get("violations", "yes")
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    if isinstance(raw, int):
        if raw < 0:
            raise SuiteError(f"violations {raw} is negative")
        return raw
    if raw in ("yes", "no"):
        return str(raw)
    raise SuiteError(f"violations {raw!r} is not yes, no or a count")


def check_assertion(assertion: dict[str, Any], messages: list[str]) -> str | None:
    """None when it holds, else what was wanted and what was found."""
    pattern = assertion.get("message")
    try:
        counted = [m for m in messages if pattern is None or re.search(str(pattern), m)]
    except re.error as exc:
        raise SuiteError(f"message {pattern!r} is not a regular expression: {exc}") from exc
    want = expected_count(assertion)
    n = len(counted)
    held = n >= 1 if want == "yes" else n == 0 if want == "no" else n == want
    if held:
        return None
    about = f" matching {pattern!r}" if pattern is not None else ""
    return f"want violations{about}: {want}, got {n}: {messages}"


def _single_object(path: Path) -> dict[str, Any]:
    documents = load_documents(path)
    if len(documents) != 1:
        raise SuiteError(f"{path} defines {len(documents)} objects, not one")
    return documents[0]


async def run_suite(engine: PolicyEngine, path: Path) -> list[CaseResult]:
    """Every case of one suite file; a test that cannot load fails each of its cases with the reason."""
    suite = load_yaml(path)
    if not isinstance(suite, dict) or suite.get("kind") != "Suite":
        raise SuiteError(f"{path}: not a gator Suite")
    if suite.get("skip"):
        return [CaseResult(path, "", "", skipped=True)]
    results: list[CaseResult] = []
    for test in suite.get("tests") or []:
        results.extend(await _run_test(engine, path, test))
    return results


async def _run_test(engine: PolicyEngine, path: Path, test: dict[str, Any]) -> list[CaseResult]:
    name = str(test.get("name", "?"))
    cases = test.get("cases") or []
    base = path.parent
    if test.get("skip"):
        return [CaseResult(path, name, str(c.get("name", "?")), skipped=True) for c in cases]
    try:
        await _load_test(engine, base, test)
    except (SuiteError, DocumentError, TemplateError, ConstraintError, ExpansionError) as exc:
        return [CaseResult(path, name, str(c.get("name", "?")), error=f"test not loaded: {exc}") for c in cases]
    results: list[CaseResult] = []
    runnable: list[tuple[CaseResult, dict[str, Any], Any, dict[str, Any]]] = []
    for case in cases:
        result = CaseResult(path, name, str(case.get("name", "?")))
        results.append(result)
        if case.get("skip"):
            result.skipped = True
            continue
        try:
            if not case.get("assertions"):
                raise SuiteError("assertions must be non-empty")
            if not case.get("object"):
                raise SuiteError("must define object")
            obj = _single_object(base / str(case["object"]))
            inventory = [o for f in case.get("inventory") or [] for o in load_documents(base / str(f))]
            runnable.append((result, case, review_object(obj), inventory_document(inventory)))
        except (SuiteError, DocumentError, ReviewError) as exc:
            result.error = str(exc)
    if runnable:
        verdicts = await engine.review([r[2] for r in runnable], inventories=[r[3] for r in runnable])
        for (result, case, _, _), violations in zip(runnable, verdicts, strict=True):
            _judge(result, case, violations)
    return results


async def _load_test(engine: PolicyEngine, base: Path, test: dict[str, Any]) -> None:
    if not test.get("template") or not test.get("constraint"):
        raise SuiteError("a test needs a template and a constraint")
    if test.get("invalid"):
        raise SuiteError("invalid (constraint schema) tests are not supported: parameters are not schema-checked")
    template = ConstraintTemplate.from_manifest(_single_object(base / str(test["template"])))
    loaded = engine.templates.get(template.kind)
    if loaded is None or loaded.manifest != template.manifest:
        await engine.add_template(template)
    engine.clear_constraints()
    engine.add_constraint(Constraint.from_manifest(_single_object(base / str(test["constraint"]))))
    engine.expansions.clear()
    if test.get("expansion"):
        engine.add_expansion(ExpansionTemplate.from_manifest(_single_object(base / str(test["expansion"]))))


def _judge(result: CaseResult, case: dict[str, Any], violations: list[Violation]) -> None:
    result.messages = [v.message for v in violations]
    for assertion in case["assertions"]:
        try:
            failure = check_assertion(assertion, result.messages)
        except SuiteError as exc:
            failure = str(exc)
        if failure is not None:
            result.error = failure
            return


async def run_suites(engine: PolicyEngine, paths: list[Path]) -> list[CaseResult]:
    results: list[CaseResult] = []
    for path in paths:
        try:
            results.extend(await run_suite(engine, path))
        except (SuiteError, DocumentError) as exc:
            results.append(CaseResult(path, "", "", error=str(exc)))
    return results


def report(results: list[CaseResult], elapsed: float) -> tuple[str, bool]:
    """gator verify's output: a line per suite, the failures, and whether all passed."""
    lines = []
    suites: dict[Path, list[CaseResult]] = {}
    for result in results:
        suites.setdefault(result.suite, []).append(result)
    for suite, cases in suites.items():
        failed = [c for c in cases if c.error is not None]
        for case in failed:
            lines.append(f"    --- FAIL: {case.test}/{case.case}\n        {case.error}")
        lines.append(f"{'FAIL' if failed else 'ok'}\t{suite}")
    passed = sum(1 for r in results if r.passed)
    ran = sum(1 for r in results if not r.skipped)
    lines.append(f"{passed}/{ran} cases passed in {elapsed:.1f}s")
    return "\n".join(lines), passed == ran
