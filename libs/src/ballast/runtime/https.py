"""HTTPS for inbound webhooks (admission reviews, Alertmanager, Slack): callers outside the bus that speak HTTP.

The certificate comes from files (a Kubernetes Secret mounted by cert-manager, say) and is reloaded when they change:
new handshakes get the new certificate on the same listening socket, connections already open keep theirs. A
replacement that does not load (half written, key not matching) is logged and the pair in use kept. Without files
the server makes a CA and certificate for local use and exposes the CA for a webhook configuration's `caBundle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Histogram

from ballast.runtime.certificates import self_signed
from ballast.runtime.config import DEFAULT_MAX_BODY
from ballast.telemetry.metrics import HANDLER_BUCKETS

log = logging.getLogger(__name__)

RELOAD_INTERVAL = 1.0  # seconds between looks at the certificate files: a mounted Secret changes without events


@dataclass(frozen=True)
class TlsFiles:
    cert: Path  # PEM: the serving certificate, then any intermediates
    key: Path  # PEM: its private key, unencrypted


class TlsError(Exception):
    """The certificate and key do not load; the message says which files and why."""


class HttpsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ballast_https_requests_total",
            "Inbound webhook requests, by route and response status.",
            ["route", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "ballast_https_request_seconds",
            "Time to answer one inbound webhook request.",
            ["route"],
            buckets=HANDLER_BUCKETS,
            registry=registry,
        )
        self.certificate_reloads = Counter(
            "ballast_https_certificate_reloads_total",
            "Changed certificate files seen, by outcome (loaded, rejected: the pair in use was kept).",
            ["outcome"],
            registry=registry,
        )


_Signature = tuple[tuple[int, int, int] | None, ...]  # (inode, mtime, size) of each file, None while it is missing


class HttpsServer:
    def __init__(
        self,
        routes: Iterable[web.AbstractRouteDef],
        registry: CollectorRegistry,
        *,
        host: str,
        port: int,
        tls: TlsFiles | None = None,
        dns_names: Sequence[str] = (),
        max_body: int = DEFAULT_MAX_BODY,
        shutdown_grace: float = 20.0,
    ) -> None:
        self._routes = list(routes)
        self._metrics = HttpsMetrics(registry)
        self._host = host
        self.port = port  # the bound port once started (a free one when 0 was asked for)
        self._tls = tls
        self._dns_names = tuple(dns_names)
        self.max_body = max_body
        self._shutdown_grace = shutdown_grace
        self.ca_pem: bytes | None = None  # the self-signed CA, when no files were given
        self.serving = False
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2  # whatever the system OpenSSL configuration says
        self._signature: _Signature = ()
        self._runner: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._tls is None:
            made = self_signed("ballast-webhook", self._dns_names)
            _load_pair(self._context, made.cert_pem, made.key_pem)
            self.ca_pem = made.ca_pem
        else:
            self._signature = _signature(self._tls)
            try:
                _load_pair(self._context, *_read(self._tls))
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise TlsError(f"TLS certificate {self._tls.cert} and key {self._tls.key} do not load: {exc}") from exc
            self._watcher = asyncio.create_task(self._watch(self._tls))
        app = web.Application(client_max_size=self.max_body, middlewares=[self._observe])
        app.router.add_routes(self._routes)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._shutdown_grace)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self.port, ssl_context=self._context).start()
        self.port = self._runner.addresses[0][1]
        self.serving = True
        log.info(
            "serving webhooks", extra={"url": f"https://{self._host}:{self.port}", "self_signed": self._tls is None}
        )

    async def stop(self) -> None:
        """Stops accepting; requests under way get the shutdown grace to finish."""
        self.serving = False
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._runner is not None:
            await self._runner.cleanup()

    async def _watch(self, tls: TlsFiles) -> None:
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            seen = _signature(tls)
            if seen == self._signature:
                continue
            # Remembered before reading: a file replaced while we read is seen as changed at the next look.
            self._signature = seen
            try:
                cert_pem, key_pem = _read(tls)
                _load_pair(self._context, cert_pem, key_pem)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._metrics.certificate_reloads.labels("rejected").inc()
                log.warning("new TLS certificate does not load; keeping the one in use: %s", exc)
                continue
            self._metrics.certificate_reloads.labels("loaded").inc()
            expires = x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc
            log.info("TLS certificate reloaded", extra={"cert": str(tls.cert), "not_after": expires.isoformat()})

    @web.middleware
    async def _observe(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        status = 500
        try:
            # A declared length over the limit is refused before reading; a chunked body is cut off by aiohttp.
            if request.content_length is not None and request.content_length > self.max_body:
                raise web.HTTPRequestEntityTooLarge(self.max_body, request.content_length)
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self._metrics.requests.labels(route, str(status)).inc()
            self._metrics.request_seconds.labels(route).observe(time.perf_counter() - started)


def _signature(tls: TlsFiles) -> _Signature:
    def one(path: Path) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(path)  # follows symlinks: a mounted Secret swaps the directory they point into
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    return (one(tls.cert), one(tls.key))


def _read(tls: TlsFiles) -> tuple[bytes, bytes]:
    return tls.cert.read_bytes(), tls.key.read_bytes()


def _load_pair(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Loads a pair into `context`, or raises leaving it as it was.

    `load_cert_chain` takes the certificate before checking the key against it, so a bad pair loaded into the live
    context would leave it with a certificate and no key; the pair is tried on a scratch context first. It reads only
    files: the bytes, read once, go through a private temporary directory, so both loads see the same pair.
    """
    with tempfile.TemporaryDirectory(prefix="ballast-tls-") as directory:
        cert, key = Path(directory, "tls.crt"), Path(directory, "tls.key")
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
        context.load_cert_chain(cert, key)
