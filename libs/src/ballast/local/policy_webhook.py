"""The policy-gate's admission webhook for a gate running on this machine (`ballast up`, the tests): the shipped
ValidatingWebhookConfiguration (deploy/webhooks/policy-gate.yaml) pointed at the gate's https://127.0.0.1 url and
trusting a CA made for it, whose serving certificate the gate reads from files.
"""

from __future__ import annotations

import base64
import contextlib
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ballast.kube.errors import NotFound
from ballast.kube.rest import KubeApi, send_json
from ballast.runtime.certificates import self_signed

WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


@dataclass(frozen=True)
class LocalCertificate:
    cert: Path  # BALLAST_TLS_CERT_FILE
    key: Path  # BALLAST_TLS_KEY_FILE
    ca_pem: bytes  # the configuration's caBundle


def write_certificate(directory: Path) -> LocalCertificate:
    """A new CA and serving certificate for 127.0.0.1, the pair written to `directory` (the key readable by us only)."""
    directory.mkdir(parents=True, exist_ok=True)
    made = self_signed("policy-gate")
    cert, key = directory / "tls.crt", directory / "tls.key"
    cert.write_bytes(made.cert_pem)
    key.touch(mode=0o600)
    key.write_bytes(made.key_pem)
    return LocalCertificate(cert, key, made.ca_pem)


def local_configuration(shipped: Path, url: str, ca_pem: bytes) -> dict[str, Any]:
    """The shipped configuration calling `url` (instead of the chart's Service) and trusting `ca_pem`."""
    configuration: dict[str, Any] = yaml.safe_load(shipped.read_text())
    for hook in configuration["webhooks"]:
        hook["clientConfig"] = {"url": url, "caBundle": base64.b64encode(ca_pem).decode()}
    return configuration


async def register(api: KubeApi, configuration: dict[str, Any]) -> None:
    """Creates the configuration, or replaces the one of that name."""
    path = f"{WEBHOOKS}/{configuration['metadata']['name']}"
    try:
        current = await send_json(api, "GET", path)
    except NotFound:
        await send_json(api, "POST", WEBHOOKS, body=configuration)
        return
    replacement = copy.deepcopy(configuration)
    replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    await send_json(api, "PUT", path, body=replacement)


async def unregister(api: KubeApi, name: str) -> None:
    with contextlib.suppress(NotFound):  # gone already
        await send_json(api, "DELETE", f"{WEBHOOKS}/{name}")
