"""Typed request/reply over NATS micro: pydantic in, pydantic out, errors as micro error headers.

A handler raises `EndpointError` for an answer the caller should see (code + description); anything else becomes a
generic 500 so that internals never leak to callers. Callers get the typed response or an `EndpointCallError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER, Request
from nats.micro.service import Service
from opentelemetry import trace
from pydantic import BaseModel, ValidationError

from ballast.events.registry import EndpointSpec
from ballast.telemetry.metrics import BusMetrics
from ballast.telemetry.tracing import extract_context, inject_context, tracer

log = logging.getLogger(__name__)

EndpointHandler = Callable[[BaseModel], Awaitable[BaseModel]]
MicroService = Service


class EndpointError(Exception):
    """An error answer for the caller: `code` follows HTTP status semantics (400 bad request, 503 unavailable...)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class EndpointCallError(EndpointError):
    """The endpoint answered with an error."""


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())


async def serve(nc: Client, spec: EndpointSpec, handler: EndpointHandler, metrics: BusMetrics) -> Service:
    async def on_request(request: Request) -> None:
        started = time.perf_counter()
        outcome = "ok"
        with tracer().start_as_current_span(
            f"process {spec.subject}",
            context=extract_context(request.headers),
            kind=trace.SpanKind.SERVER,
            attributes={"messaging.system": "nats", "messaging.destination.name": spec.subject},
        ):
            try:
                body = spec.request.model_validate_json(request.data)
            except ValidationError as exc:
                outcome = "invalid"
                await request.respond_error("400", f"invalid {spec.request.__name__}: {_describe(exc)}")
            else:
                try:
                    response = await handler(body)
                    if not isinstance(response, spec.response):
                        raise TypeError(f"handler returned {type(response).__name__}, not {spec.response.__name__}")
                except EndpointError as exc:
                    outcome = "error"
                    await request.respond_error(str(exc.code), exc.description)
                except Exception:
                    outcome = "error"
                    log.exception("endpoint %s failed", spec.subject)
                    await request.respond_error("500", "internal error")
                else:
                    await request.respond(response.model_dump_json().encode())
        metrics.requests.labels(spec.subject, outcome).inc()
        metrics.request_seconds.labels(spec.subject).observe(time.perf_counter() - started)

    service = await add_service(nc, name=spec.service, version=spec.version, description=spec.description)
    await service.add_endpoint(name=spec.name, subject=spec.subject, handler=on_request)
    return service


async def call(nc: Client, spec: EndpointSpec, body: BaseModel, timeout: float) -> BaseModel:
    headers: dict[str, str] = {}
    inject_context(headers)
    reply = await nc.request(spec.subject, body.model_dump_json().encode(), timeout=timeout, headers=headers)
    reply_headers = reply.headers or {}
    if ERROR_CODE_HEADER in reply_headers:
        code = reply_headers[ERROR_CODE_HEADER]
        raise EndpointCallError(int(code) if code.isdigit() else 500, reply_headers.get(ERROR_HEADER, ""))
    try:
        return spec.response.model_validate_json(reply.data)
    except ValidationError as exc:
        raise EndpointCallError(
            502, f"{spec.subject} answered an invalid {spec.response.__name__}: {_describe(exc)}"
        ) from exc
