"""The incident-bot's Prometheus metrics. MTTA and MTTR are the histograms' sum over count (per severity)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# From a minute to a day: an incident acknowledged within seconds is as fast as people get.
RESPONSE_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0)


class IncidentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.opened = Counter(
            "ballast_incidents_opened_total", "Incidents opened, by source and severity.", ["source", "severity"],
            registry=registry,
        )  # fmt: skip
        self.transitions = Counter(
            "ballast_incident_transitions_total", "Lifecycle transitions, by status entered.", ["status"],
            registry=registry,
        )  # fmt: skip
        self.signals = Counter(
            "ballast_incident_signals_total",
            "Signals received, by source and outcome (opened, joined, duplicate, resolving, resolved, ignored).",
            ["source", "outcome"],
            registry=registry,
        )
        self.escalations = Counter(
            "ballast_incident_escalations_total", "Escalation levels notified for unacknowledged incidents.",
            registry=registry,
        )  # fmt: skip
        self.flaps_suppressed = Counter(
            "ballast_incident_flaps_suppressed_total",
            "Alerts that fired again within the resolve hold: the incident stayed open instead of resolving.",
            registry=registry,
        )
        self.time_to_acknowledge = Histogram(
            "ballast_incident_time_to_acknowledge_seconds",
            "From opening to acknowledgement, per incident (MTTA = sum / count).",
            ["severity"],
            buckets=RESPONSE_BUCKETS,
            registry=registry,
        )
        self.time_to_resolve = Histogram(
            "ballast_incident_time_to_resolve_seconds",
            "From opening to resolution, per incident (MTTR = sum / count).",
            ["severity"],
            buckets=RESPONSE_BUCKETS,
            registry=registry,
        )
        self.active = Gauge(
            "ballast_incidents_active", "Incidents not yet resolved, as this replica's view of the bucket sees them.",
            registry=registry,
        )  # fmt: skip
