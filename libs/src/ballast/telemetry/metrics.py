"""The bus's Prometheus metrics, registered in a registry the owner passes in (one per service process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Handler latency buckets span a fast in-memory handler (sub-millisecond) to a slow Kubernetes apply (tens of s).
HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class BusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.published = Counter(
            "ballast_bus_published_total",
            "Events published to JetStream and acknowledged, by stream and whether the server saw a duplicate.",
            ["stream", "duplicate"],
            registry=registry,
        )
        self.publish_errors = Counter(
            "ballast_bus_publish_errors_total",
            "Publish attempts that failed or timed out (they are retried with the same message id).",
            ["stream"],
            registry=registry,
        )
        self.deliveries = Counter(
            "ballast_bus_deliveries_total",
            "Messages delivered to a handler, by consumer and outcome (ack, retry, dead_letter, nak_shutdown).",
            ["consumer", "outcome"],
            registry=registry,
        )
        self.redeliveries = Counter(
            "ballast_bus_redeliveries_total",
            "Deliveries that were not the message's first (num_delivered > 1).",
            ["consumer"],
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "ballast_bus_handler_seconds",
            "Time a handler took per message (per batch, for a batch consumer).",
            ["consumer"],
            buckets=HANDLER_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "ballast_bus_batch_size",
            "Messages handed to a batch consumer's handler at once.",
            ["consumer"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=registry,
        )
        self.retries = Counter(
            "ballast_bus_retries_total",
            "Messages returned for a delayed retry after a transient failure.",
            ["consumer"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "ballast_bus_dead_letters_total",
            "Messages sent to the dead-letter subject, by consumer and reason.",
            ["consumer", "reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "ballast_bus_in_flight",
            "Messages being handled right now.",
            ["consumer"],
            registry=registry,
        )
        self.requests = Counter(
            "ballast_bus_requests_total",
            "Request/reply calls served, by endpoint and outcome (ok, invalid, error).",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "ballast_bus_request_seconds",
            "Time to serve one request/reply call.",
            ["endpoint"],
            buckets=HANDLER_BUCKETS,
            registry=registry,
        )
        self.connected = Gauge("ballast_bus_connected", "1 while connected to NATS, 0 otherwise.", registry=registry)
        self.reconnects = Counter(
            "ballast_bus_reconnects_total", "Reconnections to NATS after a lost connection.", registry=registry
        )
