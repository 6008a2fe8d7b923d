"""The webhook HTTPS server for real: TLS handshakes a verifying client accepts, certificate files rotated under a
running server, bad replacements refused, the request size limit, and its place beside the plain-HTTP health server.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from prometheus_client import CollectorRegistry

from ballast.runtime import ConfigError, HttpsSettings, ServiceApp, load_settings
from ballast.runtime.certificates import SelfSigned, self_signed
from ballast.runtime.https import HttpsServer, TlsError, TlsFiles
from ballast.testing import NatsServer, eventually

routes = web.RouteTableDef()


@routes.post("/review")
async def review(request: web.Request) -> web.Response:
    return web.json_response({"received": len(await request.read())})


@asynccontextmanager
async def serving(**options: object) -> AsyncIterator[tuple[HttpsServer, CollectorRegistry]]:
    registry = CollectorRegistry()
    server = HttpsServer(routes, registry, host="127.0.0.1", port=0, **options)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server, registry
    finally:
        await server.stop()


def trusting(*cas: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata="".join(ca.decode() for ca in cas))


async def served(port: int, client: ssl.SSLContext) -> x509.Certificate:
    """The certificate a new connection is shown (each call is a new handshake)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    try:
        return shown(writer)
    finally:
        writer.close()
        await writer.wait_closed()


def shown(writer: asyncio.StreamWriter) -> x509.Certificate:
    return x509.load_der_x509_certificate(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))


async def served_serial(port: int, client: ssl.SSLContext) -> int:
    return (await served(port, client)).serial_number


def serial(made: SelfSigned) -> int:
    return x509.load_pem_x509_certificate(made.cert_pem).serial_number


def replace(path: Path, content: bytes) -> None:
    """As a mounted Secret or cert-manager changes a file: the new one appears whole, under the same name."""
    path.with_suffix(".new").write_bytes(content)
    os.replace(path.with_suffix(".new"), path)


def install(directory: Path, made: SelfSigned) -> TlsFiles:
    tls = TlsFiles(directory / "tls.crt", directory / "tls.key")
    replace(tls.cert, made.cert_pem)
    replace(tls.key, made.key_pem)
    return tls


def reloads(registry: CollectorRegistry, outcome: str) -> float:
    return registry.get_sample_value("ballast_https_certificate_reloads_total", {"outcome": outcome}) or 0.0


async def post(port: int, client: ssl.SSLContext, body: bytes, *, chunked: bool = False) -> tuple[int, str]:
    async def chunks() -> AsyncIterator[bytes]:
        yield body

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"https://127.0.0.1:{port}/review", data=chunks() if chunked else body, ssl=client) as response,
    ):
        return response.status, await response.text()


async def test_self_signed_certificate_verifies_against_the_exposed_ca() -> None:
    async with serving(dns_names=("webhook.example.internal",)) as (server, _):
        assert server.ca_pem is not None
        assert await post(server.port, trusting(server.ca_pem), b"{}") == (200, '{"received": 2}')
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await post(server.port, ssl.create_default_context(), b"{}")  # the system's CAs do not know it
        certificate = await served(server.port, trusting(server.ca_pem))
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"localhost", "webhook.example.internal"} <= set(san.get_values_for_type(x509.DNSName))


async def test_tls_below_1_2_is_refused() -> None:
    async with serving() as (server, _):
        assert server.ca_pem is not None
        old = trusting(server.ca_pem)
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client would do TLS 1.1 with a server that allows it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await served_serial(server.port, old)


async def test_certificate_files_are_served_and_a_rotation_is_picked_up_without_restart(tmp_path: Path) -> None:
    first, second = self_signed("webhook"), self_signed("webhook")
    client = trusting(first.ca_pem, second.ca_pem)
    tls = install(tmp_path, first)
    async with serving(tls=tls) as (server, registry):
        assert server.ca_pem is None  # the files' CA is whoever issued them
        assert await served_serial(server.port, client) == serial(first)
        _, open_writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=client)
        install(tmp_path, second)

        async def rotated() -> bool:
            return await served_serial(server.port, client) == serial(second)

        await eventually(rotated, timeout=10, what="new connections shown the rotated certificate")
        assert reloads(registry, "loaded") >= 1
        assert await post(server.port, client, b"{}") == (200, '{"received": 2}')
        # The connection made before the rotation keeps the certificate it was shown.
        assert shown(open_writer).serial_number == serial(first)
        open_writer.close()


async def test_a_replacement_that_does_not_load_is_refused_and_the_certificate_in_use_kept(tmp_path: Path) -> None:
    first, second = self_signed("webhook"), self_signed("webhook")
    client = trusting(first.ca_pem, second.ca_pem)
    tls = install(tmp_path, first)
    async with serving(tls=tls) as (server, registry):
        replace(tls.cert, second.cert_pem[: len(second.cert_pem) // 2])  # half written
        await eventually(lambda: reloads(registry, "rejected") >= 1, timeout=10, what="the half-written file refused")
        assert await served_serial(server.port, client) == serial(first)

        replace(tls.cert, second.cert_pem)  # whole, but the key on disk is still the old one's
        await eventually(lambda: reloads(registry, "rejected") >= 2, timeout=10, what="the mismatched pair refused")
        assert await served_serial(server.port, client) == serial(first)
        assert await post(server.port, client, b"{}") == (200, '{"received": 2}')

        replace(tls.key, second.key_pem)  # the pair completed

        async def rotated() -> bool:
            return await served_serial(server.port, client) == serial(second)

        await eventually(rotated, timeout=10, what="the completed pair loaded")


async def test_files_that_do_not_load_at_start_fail_naming_them(tmp_path: Path) -> None:
    tls = install(tmp_path, self_signed("webhook"))
    tls.key.write_bytes(self_signed("other").key_pem)
    with pytest.raises(TlsError, match=r"tls\.crt and key .*tls\.key do not load"):
        async with serving(tls=tls):
            pass


async def test_a_body_over_the_limit_gets_413_saying_the_limit() -> None:
    async with serving(max_body=1024) as (server, registry):
        assert server.ca_pem is not None
        client = trusting(server.ca_pem)
        assert (await post(server.port, client, b"x" * 1024))[0] == 200
        status, text = await post(server.port, client, b"x" * 1025)
        assert status == 413
        assert "1024" in text
        status, text = await post(server.port, client, b"x" * 4096, chunked=True)  # no length declared
        assert status == 413
        assert "1024" in text
        counted = registry.get_sample_value("ballast_https_requests_total", {"route": "/review", "status": "413"})
        assert counted == 2


def test_tls_settings_errors_name_the_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class WebhookSettings(HttpsSettings):
        https_port: int = 8443

    cert = tmp_path / "tls.crt"
    cert.write_text("pem")
    monkeypatch.setenv("BALLAST_TLS_CERT_FILE", str(cert))
    with pytest.raises(ConfigError, match="BALLAST_TLS_CERT_FILE and BALLAST_TLS_KEY_FILE go together"):
        load_settings(WebhookSettings)
    monkeypatch.setenv("BALLAST_TLS_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match="BALLAST_TLS_KEY_FILE"):
        load_settings(WebhookSettings)
    monkeypatch.delenv("BALLAST_TLS_CERT_FILE")
    monkeypatch.delenv("BALLAST_TLS_KEY_FILE")
    monkeypatch.setenv("BALLAST_HTTPS_MAX_BODY", "0")
    with pytest.raises(ConfigError, match="BALLAST_HTTPS_MAX_BODY"):
        load_settings(WebhookSettings)
    monkeypatch.setenv("BALLAST_HTTPS_MAX_BODY", "2048")
    monkeypatch.setenv("BALLAST_TLS_DNS_NAMES", "webhook.shop.svc, webhook.shop.svc.cluster.local")
    settings = load_settings(WebhookSettings)
    assert settings.tls_dns_names == ("webhook.shop.svc", "webhook.shop.svc.cluster.local")
    assert settings.https_max_body == 2048


async def test_service_app_serves_webhooks_over_tls_beside_plain_http_health(nats_server: NatsServer) -> None:
    app = ServiceApp("webhook-test", HttpsSettings(nats_url=nats_server.url, http_port=0, https_port=0))
    server = app.https(routes)
    stop = asyncio.Event()
    running = asyncio.create_task(app.run(stop))
    try:
        await eventually(lambda: app.health is not None and app.health.port != 0, what="health server up")
        assert app.health is not None
        health = f"http://127.0.0.1:{app.health.port}"
        async with aiohttp.ClientSession() as session:

            async def ready() -> str | None:
                async with session.get(f"{health}/readyz") as response:
                    return await response.text() if response.status == 200 else None

            assert '"https"' in await eventually(ready, what="ready, webhooks included")
            assert server.ca_pem is not None
            assert await post(server.port, trusting(server.ca_pem), b"{}") == (200, '{"received": 2}')
            async with session.get(f"{health}/metrics") as response:
                assert 'ballast_https_requests_total{route="/review",status="200"} 1.0' in await response.text()
            with pytest.raises(aiohttp.ClientError):  # the webhook port speaks only TLS
                async with session.post(f"http://127.0.0.1:{server.port}/review", data=b"{}") as response:
                    pass
    finally:
        stop.set()
        await running
    assert not server.serving
