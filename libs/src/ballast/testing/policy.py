"""Fixtures for policy tests: the real OPA built by `make tools`, and a policy engine on an OPA of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ballast.local.tools import ToolsMissing, tool
from ballast.policy import WORKLOAD_EXPANSIONS, ManagedOpa, PolicyEngine


@pytest.fixture(scope="session")
def opa_binary() -> Path:
    try:
        return tool("opa")
    except ToolsMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
async def managed_opa(opa_binary: Path) -> AsyncIterator[tuple[ManagedOpa, PolicyEngine]]:
    """A fresh OPA process and an engine on it (with the workload expansions), restored after any restart."""
    opa = ManagedOpa(opa_binary, lambda client: engine.restore(client))
    engine = PolicyEngine(opa.client, WORKLOAD_EXPANSIONS)
    async with opa:
        yield opa, engine


@pytest.fixture
def policy_engine(managed_opa: tuple[ManagedOpa, PolicyEngine]) -> PolicyEngine:
    return managed_opa[1]
