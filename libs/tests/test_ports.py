"""The services' ports, defined once: no two collide, and `ballast up` starts every service at its own."""

from __future__ import annotations

from ballast.cli.platform import DEFAULT_HTTP_PORT_BASE, SERVICES
from ballast.runtime import PORTS


def test_no_two_services_share_a_port() -> None:
    ports = [port for service in PORTS.values() for port in (service.health, service.webhook) if port is not None]
    assert len(ports) == len(set(ports))


def test_ballast_up_uses_the_table_and_shifts_every_health_port_with_the_base() -> None:
    assert {service.name for service in SERVICES} == set(PORTS)
    for service in SERVICES:
        assert service.health_port(DEFAULT_HTTP_PORT_BASE) == PORTS[service.name].health
    shifted = {service.name: service.health_port(8091) for service in SERVICES}  # `ballast demo` beside `ballast up`
    assert shifted == {"reconciler": 8091, "slo-engine": 8092, "policy-gate": 8093, "chaos-runner": 8094,
                       "incident-bot": 8095}  # fmt: skip


def test_ballast_up_shifts_the_webhook_ports_with_the_base_too() -> None:
    gate = next(service for service in SERVICES if service.name == "policy-gate")
    assert gate.env(DEFAULT_HTTP_PORT_BASE) == {"BALLAST_HTTP_PORT": "8083", "BALLAST_HTTPS_PORT": "8443"}
    assert gate.env(8091) == {"BALLAST_HTTP_PORT": "8093", "BALLAST_HTTPS_PORT": "8453"}
    slo = next(service for service in SERVICES if service.name == "slo-engine")
    assert slo.env(8091) == {"BALLAST_HTTP_PORT": "8092"}
