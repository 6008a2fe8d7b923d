"""W3C trace context across NATS: the publisher injects `traceparent`, the consumer continues the trace from it."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

_INSTRUMENTATION = "ballast.bus"


def configure_tracing(service_name: str, processors: list[SpanProcessor] | None = None) -> TracerProvider:
    """Installs a tracer provider for this process (once; later calls only add processors).

    Exporters are the deployer's choice (an OTLP processor in production); without one, spans still carry ids so
    that trace context propagates and logs can be correlated.
    """
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        trace.set_tracer_provider(provider)
    for processor in processors or []:
        provider.add_span_processor(processor)
    return provider


def tracer() -> trace.Tracer:
    return trace.get_tracer(_INSTRUMENTATION)


def inject_context(headers: MutableMapping[str, str]) -> None:
    propagate.inject(headers)


def extract_context(headers: Mapping[str, str] | None) -> Context:
    # NATS preserves header case; the propagator looks keys up as written by the W3C spec (lower case).
    return propagate.extract({k.lower(): v for k, v in (headers or {}).items()})
