"""Conformance: every case of every gatekeeper-library `suite.yaml` gets the verdict gator gives it, on the real OPA.

The library is read from the shared checkout beside the repository, `../shared/conformance/gatekeeper-library`
(Apache-2.0, kept out of this repository), or from the directory `BALLAST_CONFORMANCE` names.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ballast.policy import PolicyEngine
from ballast.policy.suite import report, run_suites

CONFORMANCE = Path(
    os.environ.get("BALLAST_CONFORMANCE") or Path(__file__).resolve().parents[3] / "shared" / "conformance"
)
LIBRARY = CONFORMANCE / "gatekeeper-library" / "library"


@pytest.mark.timeout(600)
async def test_every_gatekeeper_library_case_gets_the_verdict_it_expects(policy_engine: PolicyEngine) -> None:
    suites = sorted(LIBRARY.glob("*/*/suite.yaml"))
    if not suites:
        pytest.fail(f"no suite.yaml under {LIBRARY}: set BALLAST_CONFORMANCE to the conformance directory")
    policy_engine.expansions.clear()  # gator expands only what a test names
    started = time.monotonic()
    results = await run_suites(policy_engine, suites)
    text, _ = report(results, time.monotonic() - started)
    print(text)
    ran = [r for r in results if not r.skipped]
    passed = [r for r in ran if r.passed]
    print(f"gatekeeper-library: {len(passed)}/{len(ran)} cases passed ({len(suites)} suites)")
    failed = [f"{r.name}: {r.error}" for r in ran if not r.passed]
    assert not failed, "\n".join(failed)
