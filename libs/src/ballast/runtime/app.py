"""The one place a service wires its handlers, and the process lifecycle around them.

app = ServiceApp("reconciler", settings)
api = app.lifespan("kubernetes", open_api, close_api)   # api.value once started
app.consume(INCIDENT_SIGNALS, on_signal)
app.serve(INCIDENT_STATUS, status)
app.https(routes)                                        # inbound webhooks over TLS
app.lead(lambda: LeaderElector(api.value, ...), operate) # only while this replica leads
run_service(...)  # health server, NATS, streams, resources, consumers, endpoints; SIGTERM drains and exits 0
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

import nats.errors
import nats.js.errors
import uvloop
from prometheus_client import CollectorRegistry

from ballast.bus.batch import BatchConsumer, BatchHandler
from ballast.bus.connection import Bus
from ballast.bus.consumer import Consumer, Handler
from ballast.bus.endpoints import EndpointHandler
from ballast.events.catalogue import CATALOGUE, Catalogue, ConsumerSpec
from ballast.events.registry import EndpointSpec
from ballast.runtime import collector
from ballast.runtime.config import ConfigError, HttpsSettings, ServiceSettings, load_settings
from ballast.runtime.http import HealthServer, ReadinessCheck
from ballast.telemetry.logs import configure_logging
from ballast.telemetry.metrics import BusMetrics
from ballast.telemetry.tracing import configure_tracing

if TYPE_CHECKING:
    from aiohttp.web import AbstractRouteDef

    from ballast.runtime.https import HttpsServer

log = logging.getLogger(__name__)

_TRANSIENT = (
    TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.js.errors.ServiceUnavailableError,
)

BackgroundTask = Callable[[Bus, asyncio.Event], Coroutine[Any, Any, None]]  # runs until the stop event is set
LeaderTask = Callable[[Bus, asyncio.Event], Coroutine[Any, Any, None]]  # runs until the lost event is set
T = TypeVar("T")


class Election(Protocol):
    """Leader election among a service's replicas (`ballast.kube.leader.LeaderElector` is one)."""

    async def run(self, lead: Callable[[asyncio.Event], Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
        """Campaigns until `stop`; while leading runs `lead(lost)`, setting `lost` when leadership ends."""
        ...


class Resource(Generic[T]):
    """Something a service opens once at start and closes at exit (an API client, say); see `ServiceApp.lifespan`."""

    def __init__(
        self, name: str, open: Callable[[Bus], Awaitable[T]], close: Callable[[T], Awaitable[None]] | None
    ) -> None:
        self.name = name
        self._open = open
        self._close = close
        self._value: T | None = None
        self.is_open = False

    @property
    def value(self) -> T:
        if not self.is_open:
            raise RuntimeError(f"{self.name} not open yet")
        return cast(T, self._value)

    def readiness(self) -> str | None:
        return None if self.is_open else f"{self.name} not open yet"

    async def open(self, bus: Bus) -> None:
        self._value = await self._open(bus)
        self.is_open = True

    async def close(self) -> None:
        self.is_open = False
        if self._close is not None:
            await self._close(cast(T, self._value))


@dataclass(frozen=True)
class _Subscription:
    spec: ConsumerSpec
    handler: Handler
    concurrency: int
    batch: int


@dataclass(frozen=True)
class _BatchSubscription:
    spec: ConsumerSpec
    handler: BatchHandler
    concurrency: int
    max_batch: int
    parallel: int


class ServiceApp:
    def __init__(self, name: str, settings: ServiceSettings, catalogue: Catalogue = CATALOGUE) -> None:
        self.name = name
        self.settings = settings
        self.catalogue = catalogue
        self.registry = CollectorRegistry()
        self.metrics = BusMetrics(self.registry)
        self.bus: Bus | None = None
        self.health: HealthServer | None = None
        self.ready = asyncio.Event()
        self._subscriptions: list[_Subscription | _BatchSubscription] = []
        self._endpoints: list[tuple[EndpointSpec, EndpointHandler]] = []
        self._background: list[BackgroundTask] = []
        self._resources: list[Resource[Any]] = []
        self._https: HttpsServer | None = None
        self._checks: dict[str, ReadinessCheck] = {"nats": self._nats_ready}
        # The collector's thresholds once started (`collector.BUSY_SERVICE` for a busy one); None keeps Python's.
        self.gc_threshold: tuple[int, int, int] | None = None

    def consume(self, spec: ConsumerSpec, handler: Handler, *, concurrency: int = 32, batch: int = 32) -> None:
        self._subscriptions.append(_Subscription(spec, handler, concurrency, batch))

    def consume_batches(
        self,
        spec: ConsumerSpec,
        handler: BatchHandler,
        *,
        concurrency: int = 256,
        max_batch: int = 256,
        parallel: int = 2,
    ) -> None:
        """As `consume`, the handler taking the messages that arrived together at once (`ballast.bus.batch`)."""
        self._subscriptions.append(_BatchSubscription(spec, handler, concurrency, max_batch, parallel))

    def serve(self, spec: EndpointSpec, handler: EndpointHandler) -> None:
        self._endpoints.append((spec, handler))

    def background(self, task: BackgroundTask) -> None:
        self._background.append(task)

    def readiness(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    def lifespan(
        self, name: str, open: Callable[[Bus], Awaitable[T]], close: Callable[[T], Awaitable[None]] | None = None
    ) -> Resource[T]:
        """A resource opened once connected to NATS, before endpoints, consumers and background tasks start; closed
        after they end, in reverse order. Its `value` is there for handlers and tasks; readiness waits for it."""
        resource = Resource(name, open, close)
        self._resources.append(resource)
        self.readiness(name, resource.readiness)
        return resource

    def lead(self, election: Callable[[], Election], task: LeaderTask) -> None:
        """Runs `task(bus, lost)` only while this replica leads; `election` is made once resources are open."""

        async def campaign(bus: Bus, stop: asyncio.Event) -> None:
            async def leading(lost: asyncio.Event) -> None:
                await task(bus, lost)

            await election().run(leading, stop)

        self.background(campaign)

    def https(self, routes: Iterable[AbstractRouteDef]) -> HttpsServer:
        """Serves `routes` over TLS for inbound webhooks, from start-up until the drain's end (callers that still
        route to a stopping replica are answered). Needs settings derived from `HttpsSettings`."""
        from ballast.runtime.https import HttpsServer, TlsFiles  # its cryptography costs memory only where used

        settings = self.settings
        if not isinstance(settings, HttpsSettings):
            raise TypeError(f"{self.name}: serving HTTPS needs settings derived from HttpsSettings")
        if self._https is not None:
            raise RuntimeError(f"{self.name}: HTTPS is wired once; give all its routes in one call")
        cert, key = settings.tls_cert_file, settings.tls_key_file
        server = HttpsServer(
            routes,
            self.registry,
            host=settings.http_host,
            port=settings.https_port,
            tls=TlsFiles(cert, key) if cert is not None and key is not None else None,
            dns_names=settings.tls_dns_names,
            max_body=settings.https_max_body,
            shutdown_grace=settings.shutdown_grace,
        )
        self._https = server
        self.readiness("https", lambda: None if server.serving else "not serving webhooks yet")
        return server

    def _nats_ready(self) -> str | None:
        if self.bus is None:
            return "not connected yet"
        if not self.bus.is_connected:
            return "disconnected; reconnecting"
        return None if self.ready.is_set() else "setting up streams, consumers and endpoints"

    async def _set_up(self, bus: Bus) -> list[Consumer]:
        if self.settings.ensure_streams:
            await bus.ensure_streams()
            await bus.ensure_buckets()
        consumers: list[Consumer] = []
        for sub in self._subscriptions:
            await bus.ensure_consumer(sub.spec)
            if isinstance(sub, _BatchSubscription):
                consumers.append(
                    BatchConsumer(
                        bus.js,
                        sub.spec,
                        sub.handler,
                        registry=self.catalogue.registry,
                        metrics=self.metrics,
                        concurrency=sub.concurrency,
                        max_batch=sub.max_batch,
                        parallel=sub.parallel,
                    )
                )
                continue
            consumers.append(
                Consumer(
                    bus.js,
                    sub.spec,
                    sub.handler,
                    registry=self.catalogue.registry,
                    metrics=self.metrics,
                    concurrency=sub.concurrency,
                    batch=sub.batch,
                )
            )
        return consumers

    async def _set_up_until_done(self, bus: Bus) -> list[Consumer]:
        """Stream and consumer set-up are idempotent: a NATS hiccup during start-up means try again, not crash."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.connect_wait
        while True:
            try:
                return await self._set_up(bus)
            except _TRANSIENT as exc:
                if loop.time() >= deadline:
                    raise
                log.warning("set-up interrupted (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _start(self) -> list[Consumer]:
        settings = self.settings
        self.bus = await Bus.connect(
            settings.nats_url,
            name=self.name,
            metrics=self.metrics,
            catalogue=self.catalogue,
            wait_connected=settings.connect_wait,
        )
        consumers = await self._set_up_until_done(self.bus)
        for resource in self._resources:
            await resource.open(self.bus)
        for spec, handler in self._endpoints:
            await self.bus.serve(spec, handler)
        if self._https is not None:
            await self._https.start()
        return consumers

    async def _close(self) -> None:
        """HTTPS first (its handlers may use the resources), then the resources in reverse order, then NATS."""
        if self._https is not None:
            await self._https.stop()
        for resource in reversed(self._resources):
            if not resource.is_open:
                continue
            try:
                await resource.close()
            except Exception:  # the others must still be closed
                log.exception("closing %s failed", resource.name)
        if self.bus is not None:
            await self.bus.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until `stop` is set, then drains: no new fetches, in-flight work finishes or is handed back."""
        settings = self.settings
        self.health = HealthServer(self.registry, self._checks, settings.http_host, settings.http_port)
        await self.health.start()
        log.info("serving health and metrics", extra={"url": f"http://{settings.http_host}:{self.health.port}"})
        try:
            # Start-up may wait long for NATS; a SIGTERM meanwhile must still stop the process promptly.
            starting = asyncio.ensure_future(self._start())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
                log.info("stopped before start-up finished")
                return
            consumers = starting.result()
            collector.settle(self.gc_threshold)
            bus = self.bus
            assert bus is not None  # _start connected it
            self.ready.set()
            log.info(
                "started",
                extra={
                    "consumers": [c.spec.durable for c in consumers],
                    "endpoints": [s.subject for s, _ in self._endpoints],
                },
            )
            async with asyncio.TaskGroup() as tasks:
                for consumer in consumers:
                    tasks.create_task(consumer.run(grace=settings.shutdown_grace))
                for task in self._background:
                    tasks.create_task(task(bus, stop))
                await stop.wait()
                log.info("stopping: draining in-flight work", extra={"grace_s": settings.shutdown_grace})
                for consumer in consumers:
                    consumer.stop()
        finally:
            await self._close()
            await self.health.stop()
        log.info("stopped")


S = TypeVar("S", bound=ServiceSettings)


def run_service(name: str, settings_type: type[S], build: Callable[[S], ServiceApp]) -> None:
    """The `python -m ballast.<service>` entry point: exits 2 on bad configuration, 0 after a clean drain."""
    try:
        settings = load_settings(settings_type)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(name, settings.log_level)
    configure_tracing(name)
    log.info("configuration", extra={"settings": json.loads(json.dumps(settings.masked(), default=str))})

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await build(settings).run(stop)

    # uvloop: the event loop, its transports and TLS in C. A service's own work is small next to moving bytes
    # (watch streams, API requests, bus messages), and the standard loop spends more CPU on that than on the work.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
