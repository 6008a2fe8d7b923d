"""Prometheus metrics, OpenTelemetry trace propagation over NATS headers, and JSON logs carrying trace ids."""

from ballast.telemetry.logs import configure_logging
from ballast.telemetry.metrics import BusMetrics
from ballast.telemetry.tracing import configure_tracing, extract_context, inject_context, tracer

__all__ = ["BusMetrics", "configure_logging", "configure_tracing", "extract_context", "inject_context", "tracer"]
