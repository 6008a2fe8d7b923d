"""Every service's ports, defined once: the settings defaults and `ballast up` read them from here.

Health and metrics are plain HTTP on 8081..8085, one per service. Webhook ports (HTTPS, for callers outside the bus:
the API server's admission reviews, Alertmanager, Slack) sit at 8443 and up, for the services that receive them.
Distinct ports let every service run side by side on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServicePorts:
    health: int  # /healthz, /readyz, /metrics
    webhook: int | None = None  # HTTPS for inbound webhooks


PORTS: dict[str, ServicePorts] = {
    "reconciler": ServicePorts(health=8081),
    "slo-engine": ServicePorts(health=8082),
    "policy-gate": ServicePorts(health=8083, webhook=8443),  # admission reviews
    "chaos-runner": ServicePorts(health=8084),
    "incident-bot": ServicePorts(health=8085, webhook=8444),  # Alertmanager and Slack
}
