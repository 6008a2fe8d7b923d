"""A validating admission webhook served from the test process, for making the real API server answer the way a test
needs (a 409 Conflict, a 500) to requests a component under test sends.

    async with AdmissionWebhook(kube_api, tmp_path, namespace, rules, decide) as hook: ...

`decide(review_request) -> Verdict` runs for each admission request (a coroutine function may hold the request
until the test lets it go, within `timeout_seconds`, the API server's wait for the webhook); the webhook is
registered for one namespace only (its `kubernetes.io/metadata.name` label), served over TLS on 127.0.0.1 with a CA
made for the test, and removed on exit.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from ballast.kube.rest import send_json

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = webhook
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign
[serving]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool = True
    code: int = 200
    message: str = ""


def certificates(directory: Path) -> tuple[Path, Path, bytes]:
    """A CA and a serving certificate for 127.0.0.1 in `directory`: (cert, key, CA PEM)."""
    (directory / "openssl.cnf").write_text(_OPENSSL_CONFIG)
    base = ["openssl", "req", "-x509", "-config", "openssl.cnf", "-nodes", "-days", "1"]
    base += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    for step in (
        [*base, "-extensions", "ca", "-subj", "/CN=webhook-ca", "-keyout", "ca.key", "-out", "ca.crt"],
        [*base, "-extensions", "serving", "-subj", "/CN=webhook", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-keyout", "serving.key", "-out", "serving.crt"],
    ):  # fmt: skip
        subprocess.run(step, cwd=directory, check=True, capture_output=True)
    return directory / "serving.crt", directory / "serving.key", (directory / "ca.crt").read_bytes()


class AdmissionWebhook:
    def __init__(
        self,
        api: Any,  # kubernetes_asyncio ApiClient (admin)
        directory: Path,
        namespace: str,
        rules: list[dict[str, Any]],
        decide: Callable[[dict[str, Any]], Verdict | Awaitable[Verdict]],
        *,
        timeout_seconds: int = 5,
    ) -> None:
        self._api = api
        self._directory = directory
        self._namespace = namespace
        self._rules = rules
        self._decide = decide
        self._timeout_seconds = timeout_seconds
        self.name = f"test-{uuid.uuid4().hex[:8]}.ballast.io"
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None

    async def _review(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.requests.append(review["request"])
        decided = self._decide(review["request"])
        verdict = await decided if inspect.isawaitable(decided) else decided
        response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": verdict.allowed}
        if not verdict.allowed:
            response["status"] = {"code": verdict.code, "message": verdict.message}
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})

    async def __aenter__(self) -> AdmissionWebhook:
        import base64

        cert, key, ca = await asyncio.to_thread(certificates, self._directory)  # openssl, off the event loop
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        app = web.Application()
        app.router.add_post("/validate", self._review)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = self._runner.addresses[0][1]
        configuration = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.name},
            "webhooks": [
                {
                    "name": self.name,
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{port}/validate",
                        "caBundle": base64.b64encode(ca).decode(),
                    },
                    "rules": self._rules,
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self._namespace}},
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "timeoutSeconds": self._timeout_seconds,
                }
            ],
        }
        await send_json(
            self._api, "POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
            body=configuration,
        )  # fmt: skip
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        try:
            await send_json(
                self._api,
                "DELETE",
                f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{self.name}",
            )
        finally:
            if self._runner is not None:
                await self._runner.cleanup()
