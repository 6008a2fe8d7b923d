"""The NATS connection every Ballast service holds, tuned to notice a dead server in seconds and never give up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import BaseModel

from ballast.bus import endpoints, streams
from ballast.bus.headers import BusClient
from ballast.bus.kv import KeyValue, open_bucket
from ballast.bus.publisher import Publisher
from ballast.bus.reader import StreamReader
from ballast.events.catalogue import CATALOGUE, BucketSpec, Catalogue, ConsumerSpec, StreamSpec
from ballast.events.registry import EndpointSpec
from ballast.telemetry.metrics import BusMetrics

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class BusOptions:
    # nats-py defaults give up after 60 attempts and notice a dead peer after 4 minutes; services must do neither.
    ping_interval: int = 2
    max_outstanding_pings: int = 2
    reconnect_time_wait: float = 0.5
    connect_timeout: int = 2
    drain_timeout: int = 10
    request_timeout: float = 5.0
    publish_window: int = 4000  # outstanding async publishes before publishers wait


class Bus:
    """A connected client: JetStream context, publisher, consumers and endpoints share it."""

    def __init__(
        self,
        url: str,
        nc: Client,
        js: JetStreamContext,
        metrics: BusMetrics,
        catalogue: Catalogue,
        options: BusOptions,
    ) -> None:
        self.url = url
        self.nc = nc
        self.js = js
        self.metrics = metrics
        self.catalogue = catalogue
        self.options = options
        self.publisher = Publisher(js, metrics, catalogue, options.request_timeout)
        self._services: list[endpoints.MicroService] = []
        self._closing = asyncio.Event()  # set by close(): the disconnect that follows is expected

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        name: str,
        metrics: BusMetrics,
        catalogue: Catalogue = CATALOGUE,
        options: BusOptions = BusOptions(),
        wait_connected: float | None = None,
    ) -> Bus:
        """Connects, retrying until `wait_connected` seconds have passed (None: try once, then fail).

        Once connected, the client reconnects forever after any loss.
        """

        closing = asyncio.Event()

        async def disconnected() -> None:
            metrics.connected.set(0)
            if not closing.is_set():
                log.warning("disconnected from NATS")

        async def reconnected() -> None:
            metrics.connected.set(1)
            metrics.reconnects.inc()
            log.info("reconnected to NATS")

        async def error(exc: Exception) -> None:
            log.debug("NATS client error: %s", exc)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + (wait_connected or 0.0)
        while True:
            nc = BusClient()
            try:
                # With unlimited reconnects nats-py also retries the first connect forever: the deadline is ours.
                async with asyncio.timeout(max(deadline - loop.time(), options.connect_timeout)):
                    await nc.connect(
                        servers=[url],
                        name=name,
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=options.reconnect_time_wait,  # type: ignore[arg-type]  # any number works
                        ping_interval=options.ping_interval,
                        max_outstanding_pings=options.max_outstanding_pings,
                        connect_timeout=options.connect_timeout,
                        drain_timeout=options.drain_timeout,
                        allow_reconnect=True,
                        disconnected_cb=disconnected,
                        reconnected_cb=reconnected,
                        error_cb=error,
                    )
                break
            except (nats.errors.NoServersError, OSError, TimeoutError) as exc:
                with contextlib.suppress(Exception):
                    await nc.close()
                # A service started before NATS waits for it (up to wait_connected) instead of crash-looping.
                if loop.time() >= deadline:
                    raise ConnectionError(f"cannot connect to NATS at {url}: {exc}") from exc
                log.info("NATS at %s not reachable yet (%s); retrying", url, exc)
                await asyncio.sleep(options.reconnect_time_wait)
        metrics.connected.set(1 if nc.is_connected else 0)
        js = nc.jetstream(timeout=options.request_timeout, publish_async_max_pending=options.publish_window)
        bus = cls(url, nc, js, metrics, catalogue, options)
        bus._closing = closing
        return bus

    @property
    def is_connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def ensure_streams(self, specs: Sequence[StreamSpec] | None = None) -> None:
        for spec in specs if specs is not None else self.catalogue.streams:
            await streams.ensure_stream(self.js, spec)

    async def ensure_buckets(self, specs: Sequence[BucketSpec] | None = None) -> None:
        for spec in specs if specs is not None else self.catalogue.buckets:
            await streams.ensure_bucket(self.js, spec)

    async def kv(self, spec: BucketSpec, model: type[M]) -> KeyValue[M]:
        """The bucket `spec` with values of type `model`; raises LookupError if it was not created."""
        return await open_bucket(self.js, spec, model)

    def read(
        self,
        stream: str,
        *,
        subjects: Sequence[str] = (),
        from_sequence: int | None = None,
        from_time: datetime | None = None,
        until: int | Literal["last"] | None = None,
    ) -> StreamReader:
        """Reads `stream` in order without acknowledging (see `StreamReader`); use with `async with`."""
        return StreamReader(
            self.js,
            self.catalogue.registry,
            stream,
            subjects=subjects,
            from_sequence=from_sequence,
            from_time=from_time,
            until=until,
        )

    async def ensure_consumer(self, spec: ConsumerSpec) -> None:
        await streams.ensure_consumer(self.js, spec)

    async def serve(self, spec: EndpointSpec, handler: endpoints.EndpointHandler) -> None:
        """Serves `spec` with a NATS micro service (discoverable with `$SRV.PING`, stats, queue-group balanced)."""
        self._services.append(await endpoints.serve(self.nc, spec, handler, self.metrics))

    async def request(self, spec: EndpointSpec, body: BaseModel, timeout: float | None = None) -> BaseModel:
        return await endpoints.call(self.nc, spec, body, timeout or self.options.request_timeout)

    async def close(self) -> None:
        """Stops endpoints, flushes pending publishes and drains the connection, bounded by the drain timeout."""
        self._closing.set()
        for service in self._services:
            await service.stop()
        self._services.clear()
        if self.nc.is_closed:
            return
        try:
            async with asyncio.timeout(self.options.drain_timeout):
                await self.publisher.flush()
                await self.nc.drain()
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("drain did not finish cleanly (%s); closing", exc)
            await self.nc.close()
        self.metrics.connected.set(0)
