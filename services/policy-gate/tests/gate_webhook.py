"""The gate process with its admission webhook on a known port and a certificate the test made (so that the test,
and the API server through `caBundle`, can trust it), and AdmissionReviews as the API server sends them."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ballast.local.nats_server import free_port
from ballast.local.policy_webhook import write_certificate
from ballast.testing import ServiceProcess


@dataclass(frozen=True)
class GateWebhook:
    process: ServiceProcess
    url: str  # https://127.0.0.1:<port>/validate
    ca_pem: bytes
    cert: Path
    key: Path

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem.decode())

    async def post(self, body: bytes) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body, ssl=self.client(), headers={"Content-Type": "application/json"}) as r,
        ):
            return r.status, await r.text()


def start_gate(services: Callable[..., ServiceProcess], tls_dir: Path, *, nats_url: str, **env: str) -> GateWebhook:
    tls = write_certificate(tls_dir)
    port = free_port()
    process = services(
        "ballast.policy_gate",
        nats_url=nats_url,
        BALLAST_HTTPS_PORT=str(port),
        BALLAST_TLS_CERT_FILE=str(tls.cert),
        BALLAST_TLS_KEY_FILE=str(tls.key),
        **env,
    )
    return GateWebhook(process, f"https://127.0.0.1:{port}/validate", tls.ca_pem, tls.cert, tls.key)


def admission_review(obj: dict[str, Any], *, operation: str = "CREATE", user: str = "alice") -> dict[str, Any]:
    api_version = obj["apiVersion"]
    group, version = api_version.split("/") if "/" in api_version else ("", api_version)
    metadata = obj["metadata"]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": obj["kind"]},
            "resource": {"group": group, "version": version, "resource": obj["kind"].lower() + "s"},
            "name": metadata["name"],
            "namespace": metadata.get("namespace", ""),
            "operation": operation,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
        },
    }
