"""pytest fixtures for Ballast's suites (loaded with `-p ballast.testing.plugin`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from ballast.bus.connection import Bus
from ballast.local.nats_server import NatsServer
from ballast.telemetry.metrics import BusMetrics
from ballast.testing.kube import control_plane, kube_api, kubeconfig_path, namespace  # noqa: F401  (fixtures)
from ballast.testing.policy import managed_opa, opa_binary, policy_engine  # noqa: F401  (fixtures)
from ballast.testing.service_process import ServiceProcess


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One server for the run; tests isolate themselves with unique stream, consumer and subject names."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def fresh_nats_server() -> Iterator[NatsServer]:
    """A server of the test's own, for tests that kill, restart or pause it."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def services() -> Iterator[Callable[..., ServiceProcess]]:
    """Starts service processes (`services("ballast.reconciler", nats_url=...)`) and kills leftovers at the end."""
    started: list[ServiceProcess] = []

    def start(target: str, *, nats_url: str, **env: str) -> ServiceProcess:
        args = [target] if target.endswith(".py") else ["-m", target]
        process = ServiceProcess(args, nats_url=nats_url, **env).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def unique() -> Callable[[str], str]:
    token = uuid.uuid4().hex[:8]
    return lambda prefix: f"{prefix}{token}"


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    connected = await Bus.connect(nats_server.url, name="test", metrics=BusMetrics(CollectorRegistry()))
    yield connected
    await connected.close()
