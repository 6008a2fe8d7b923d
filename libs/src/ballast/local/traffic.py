"""Synthetic HTTP traffic for the WebApps of the local platform (kwok pods serve nothing), as Prometheus metrics.

SYNTHETIC, LOCAL PLATFORM ONLY: no request is ever made. Each WebApp whose Deployment the cluster reports "serves"
a steady request rate, and the exporter counts what those requests would have met:

- a share of them fails for every replica that is desired but not ready (a deleted pod costs errors, code 503,
  until the ReplicaSet has replaced it and it is ready again: read from the Deployment's spec and status);
- of the rest, the error rate set for the WebApp fails (code 500), the others succeed (code 200);
- every request takes the latency set for the WebApp (50 ms unless set), into a duration histogram.

The counters are integrated exactly over time (fractions of a request included): between two changes the error
ratio of any window is exactly what was set, so an SLO's burn rate reads back what was injected.

Metrics (labels `namespace`, `webapp`): `http_requests_total{code}` and `http_request_duration_seconds` (histogram),
so an event-ratio SLI reads `sum(rate(http_requests_total{namespace="shop",webapp="web",code=~"5.."}[{{.window}}]))`
over `sum(rate(http_requests_total{namespace="shop",webapp="web"}[{{.window}}]))`.

Control (127.0.0.1 only), which `ballast traffic` speaks:
    GET /webapps                         every WebApp's replicas, faults and counters (JSON)
    PUT /webapps/<namespace>/<name>      {"errorRate": 0.1, "latencyMs": 300, "requestsPerSecond": 20}
    DELETE /webapps/<namespace>/<name>   back to no injected errors and the default latency and rate
    GET /metrics, GET /healthz

    python -m ballast.local.traffic --kubeconfig PATH --port 9464
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ballast.kube.informer import Informer, WatchEvent
from ballast.kube.resource import DEPLOYMENT, WEBAPP

log = logging.getLogger(__name__)

WebAppKey = tuple[str, str]  # (namespace, name)
DEFAULT_PORT = 9464
DEFAULT_REQUESTS_PER_SECOND = 10.0
DEFAULT_LATENCY_MS = 50.0
# Seconds; Prometheus's client defaults, so latency SLIs can pick the usual thresholds (0.1, 0.25, 0.5, 1).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
CODES = ("200", "500", "503")


class Faults(BaseModel):
    """What is injected into one WebApp's traffic; each field left out keeps its current value."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    error_rate: float = Field(default=0.0, ge=0, le=1, alias="errorRate", description="share of requests failing")
    latency_ms: float = Field(default=DEFAULT_LATENCY_MS, ge=0, alias="latencyMs", description="every request's")
    requests_per_second: float = Field(default=DEFAULT_REQUESTS_PER_SECOND, ge=0, alias="requestsPerSecond")


@dataclass
class WebAppTraffic:
    desired: int = 0
    ready: int = 0
    seen: bool = False  # whether the cluster reported its Deployment (faults may be set before)
    faults: Faults = field(default_factory=Faults)
    requests: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CODES, 0.0))
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS))
    duration_count: float = 0.0  # the +Inf bucket, kept apart so that it equals the buckets' count exactly
    duration_sum: float = 0.0

    def shares(self) -> dict[str, float]:
        """The share of requests ending in each code now: missing replicas fail first, then the injected rate."""
        if self.desired <= 0:
            return dict.fromkeys(CODES, 0.0)
        serving = min(self.ready, self.desired) / self.desired
        return {
            "503": 1 - serving,
            "500": serving * self.faults.error_rate,
            "200": serving * (1 - self.faults.error_rate),
        }

    def serve(self, seconds: float) -> None:
        """Counts `seconds` of traffic at the current replicas and faults."""
        if self.desired <= 0 or seconds <= 0:
            return  # scaled to zero: nothing serves, nothing is asked
        count = self.faults.requests_per_second * seconds
        for code, share in self.shares().items():
            self.requests[code] += count * share
        latency = self.faults.latency_ms / 1000
        for index, bound in enumerate(BUCKETS):
            if latency <= bound:
                self.buckets[index] += count
        self.duration_count += count
        self.duration_sum += count * latency

    def describe(self, key: WebAppKey) -> dict[str, Any]:
        return {
            "namespace": key[0],
            "webapp": key[1],
            "desiredReplicas": self.desired,
            "readyReplicas": self.ready,
            "inCluster": self.seen,
            **self.faults.model_dump(by_alias=True),
            "requests": dict(self.requests),
        }


class TrafficModel:
    """The traffic of every WebApp, advanced to a monotonic clock: a change first counts the time before it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()
        self.webapps: dict[WebAppKey, WebAppTraffic] = {}

    def advance(self) -> None:
        now = self._clock()
        elapsed, self._last = now - self._last, now
        for traffic in self.webapps.values():
            traffic.serve(elapsed)

    def replicas(self, key: WebAppKey, desired: int, ready: int) -> None:
        self.advance()
        traffic = self.webapps.setdefault(key, WebAppTraffic())
        traffic.desired, traffic.ready, traffic.seen = desired, ready, True

    def gone(self, key: WebAppKey) -> None:
        """Its Deployment went: it serves nothing any more, but its counters stay (a counter never goes back)."""
        self.advance()
        traffic = self.webapps.get(key)
        if traffic is not None:
            traffic.desired = traffic.ready = 0
            traffic.seen = False

    def set_faults(self, key: WebAppKey, faults: Faults) -> None:
        self.advance()
        self.webapps.setdefault(key, WebAppTraffic()).faults = faults

    def faults(self, key: WebAppKey) -> Faults:
        traffic = self.webapps.get(key)
        return traffic.faults if traffic is not None else Faults()


def webapp_of(deployment: dict[str, Any]) -> WebAppKey | None:
    """The WebApp a Deployment belongs to (its controller owner), or None for any other Deployment."""
    for owner in deployment["metadata"].get("ownerReferences", []):
        if (
            owner.get("controller")
            and owner.get("kind") == WEBAPP.kind
            and owner.get("apiVersion") == WEBAPP.api_version
        ):
            return deployment["metadata"]["namespace"], owner["name"]
    return None


def replicas_of(deployment: dict[str, Any]) -> tuple[int, int]:
    """(desired, ready): the Deployment's spec.replicas (1 when unset, as the API defaults it) and ready pods."""
    desired = deployment.get("spec", {}).get("replicas", 1)
    ready = (deployment.get("status") or {}).get("readyReplicas", 0)
    return int(desired), int(ready)


class _Collector(Collector):
    def __init__(self, model: TrafficModel) -> None:
        self._model = model

    def collect(self) -> Iterator[Metric]:
        self._model.advance()
        requests = CounterMetricFamily(
            "http_requests",
            "SYNTHETIC requests of a WebApp on the local platform (ballast.local.traffic), by status code",
            labels=["namespace", "webapp", "code"],
        )
        durations = HistogramMetricFamily(
            "http_request_duration_seconds",
            "SYNTHETIC request durations of a WebApp on the local platform (ballast.local.traffic)",
            labels=["namespace", "webapp"],
        )
        for (namespace, name), traffic in sorted(self._model.webapps.items()):
            for code, count in traffic.requests.items():
                requests.add_metric([namespace, name, code], count)
            cumulative = [(repr(bound), count) for bound, count in zip(BUCKETS, traffic.buckets, strict=True)]
            buckets = [*cumulative, ("+Inf", traffic.duration_count)]
            durations.add_metric([namespace, name], buckets, traffic.duration_sum)
        yield requests
        yield durations


class TrafficExporter:
    """The model fed by a Deployment informer, served over HTTP on 127.0.0.1."""

    def __init__(self, api: Any, *, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
        self.model = TrafficModel()
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self.model))
        self.deployments = Informer(api, DEPLOYMENT)
        self.deployments.subscribe(self._on_deployment)
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _on_deployment(self, event: WatchEvent, new: dict[str, Any], old: dict[str, Any] | None) -> None:
        key = webapp_of(new)
        if key is None:
            return
        if event == "DELETED":
            self.model.gone(key)
        else:
            self.model.replicas(key, *replicas_of(new))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/webapps", self._list)
        app.router.add_put("/webapps/{namespace}/{name}", self._set)
        app.router.add_delete("/webapps/{namespace}/{name}", self._reset)
        return app

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain", charset="utf-8")

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok" if self.deployments.synced.is_set() else "syncing")

    async def _list(self, _: web.Request) -> web.Response:
        self.model.advance()
        return web.json_response([t.describe(k) for k, t in sorted(self.model.webapps.items())])

    async def _set(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            faults = Faults.model_validate(self.model.faults(key).model_dump(by_alias=True) | changes)
        except (ValueError, ValidationError) as error:  # JSONDecodeError is a ValueError
            return web.json_response({"error": str(error)}, status=400)
        self.model.set_faults(key, faults)
        log.info("traffic of %s/%s: %s", *key, faults.model_dump(by_alias=True))
        return web.json_response(self.model.webapps[key].describe(key))

    async def _reset(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        self.model.set_faults(key, Faults())
        return web.json_response(self.model.webapps[key].describe(key))

    async def run(self, stop: asyncio.Event, started: asyncio.Event | None = None) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
            if started is not None:
                started.set()
            await self.deployments.run(stop)
        finally:
            await runner.cleanup()


async def _serve(kubeconfig: str, port: int) -> None:
    from ballast.kube.client import api_client

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    api = await api_client(kubeconfig)
    async with api:
        exporter = TrafficExporter(api, port=port)
        log.info("synthetic traffic exporter on %s (local platform only)", exporter.url)
        await exporter.run(stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ballast.local.traffic", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.kubeconfig, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
