"""W3C trace context across NATS: the publisher injects `traceparent`, the consumer continues the trace from it."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

_INSTRUMENTATION = "ballast.bus"


class ExportAwareSampler(Sampler):
    """Records spans only once something exports them; until then spans are ids only.

    Recording a span costs several times more than a small handler; with no exporter nobody would see it. Trace
    context still flows (non-recording spans keep their ids), so logs keep their trace ids either way.
    """

    def __init__(self) -> None:
        self.exporting = False
        self._record = ParentBased(ALWAYS_ON)
        self._drop = ParentBased(ALWAYS_OFF)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        sampler = self._record if self.exporting else self._drop
        return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"ExportAwareSampler(exporting={self.exporting})"


def configure_tracing(service_name: str, processors: list[SpanProcessor] | None = None) -> TracerProvider:
    """Installs a tracer provider for this process (once; later calls only add processors).

    Exporters are the deployer's choice (an OTLP processor in production); without one, spans still carry ids so
    that trace context propagates and logs can be correlated.
    """
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}), sampler=ExportAwareSampler()
        )
        trace.set_tracer_provider(provider)
    for processor in processors or []:
        provider.add_span_processor(processor)
    if processors and isinstance(provider.sampler, ExportAwareSampler):
        provider.sampler.exporting = True
    return provider


def recording() -> bool:
    """Whether spans are recorded (an exporter is configured, or tracing is set up by someone else).

    When they are not, hot paths skip creating spans of their own and only carry the caller's trace context on.
    """
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider) and isinstance(provider.sampler, ExportAwareSampler):
        return provider.sampler.exporting
    return isinstance(provider, TracerProvider)


def tracer() -> trace.Tracer:
    # A proxy tracer: cheap to keep, and it follows a provider installed after this call.
    return _TRACER


_TRACER = trace.get_tracer(_INSTRUMENTATION)


def inject_context(headers: MutableMapping[str, str]) -> None:
    if context.get_current():  # an empty context (no span, no baggage) has nothing to carry: skip the propagators
        propagate.inject(headers)


def extract_context(headers: Mapping[str, str] | None) -> Context:
    # NATS preserves header case; the propagator looks keys up as written by the W3C spec (lower case).
    return propagate.extract({k.lower(): v for k, v in (headers or {}).items()})
