"""The admission webhook at the real kube-apiserver: the shipped ValidatingWebhookConfiguration registered with the
gate's CA and url, the gatekeeper-library's K8sRequiredLabels loaded. A violating Deployment is refused with the
constraint's message, warn comes back as a `Warning` header, dryrun admits; a certificate rewritten under the running
gate is served without a restart; a gate that hangs or is killed leaves the configured failure policy in charge and
no create waiting past the timeout."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from gate_webhook import GateWebhook, start_gate
from policies import DEPLOYMENTS, constraint

from ballast.kube.errors import ApiError
from ballast.kube.rest import send
from ballast.local.policy_webhook import local_configuration, register, unregister
from ballast.runtime.certificates import self_signed
from ballast.testing import NatsServer, ServiceProcess, eventually

pytestmark = pytest.mark.cluster

REPOSITORY = Path(__file__).resolve().parents[3]
SHIPPED_WEBHOOK = REPOSITORY / "deploy" / "webhooks" / "policy-gate.yaml"
CONFORMANCE = Path(os.environ.get("BALLAST_CONFORMANCE") or REPOSITORY.parent / "shared" / "conformance")
REQUIRED_LABELS = CONFORMANCE / "gatekeeper-library" / "library" / "general" / "requiredlabels" / "template.yaml"
MARGIN = 3.0  # seconds past the webhook's timeout that the API server may take to answer on its own


def policies(directory: Path, namespace: str) -> Path:
    if not REQUIRED_LABELS.is_file():
        pytest.fail(f"{REQUIRED_LABELS} is missing: set BALLAST_CONFORMANCE to the conformance directory")
    directory.mkdir()
    (directory / "template.yaml").write_text(REQUIRED_LABELS.read_text())
    match = DEPLOYMENTS | {"namespaces": [namespace]}
    constraints = [
        constraint("K8sRequiredLabels", "must-have-owner", "deny", match, labels=[{"key": "owner"}]),
        constraint("K8sRequiredLabels", "should-have-team", "warn", match, labels=[{"key": "team"}]),
        constraint("K8sRequiredLabels", "cost-center-trial", "dryrun", match, labels=[{"key": "cost-center"}]),
    ]
    (directory / "constraints.yaml").write_text(yaml.safe_dump_all(constraints))
    return directory


def deployment(name: str, labels: dict[str, str]) -> dict[str, Any]:
    pod = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}}, "template": pod},
    }


async def create(kube_api: Any, namespace: str, obj: dict[str, Any], *, dry_run: bool = False) -> list[str]:
    """Creates a Deployment; the API server's `Warning` headers (raises `ApiError` when refused)."""
    query = [("dryRun", "All")] if dry_run else None
    response = await send(kube_api, "POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=obj, query=query)
    response.release()
    return list(response.headers.getall("Warning", []))


class Registration:
    """The shipped webhook, pointed at the test's gate and narrowed to the test's namespace."""

    def __init__(self, kube_api: Any, gate: GateWebhook, namespace: str) -> None:
        self.api = kube_api
        self.config = local_configuration(SHIPPED_WEBHOOK, gate.url, gate.ca_pem)
        self.config["metadata"]["name"] = f"policy-gate-{uuid.uuid4().hex[:8]}"
        (hook,) = self.config["webhooks"]
        # Everything else as shipped (the NotIn on system namespaces stays): other tests share the API server.
        hook["namespaceSelector"]["matchLabels"] = {"kubernetes.io/metadata.name": namespace}
        self.hook: dict[str, Any] = hook

    async def apply(self, **changes: Any) -> None:
        """Registers the webhook with `changes`; the API server uses it a moment later, not at once."""
        self.hook.update(changes)
        await register(self.api, self.config)

    async def delete(self) -> None:
        await unregister(self.api, self.config["metadata"]["name"])


async def refusal(kube_api: Any, namespace: str, obj: dict[str, Any], **options: bool) -> ApiError | None:
    try:
        await create(kube_api, namespace, obj, **options)
    except ApiError as exc:
        return exc
    return None


@pytest.fixture
async def gate(
    nats_server: NatsServer,
    services: Callable[..., ServiceProcess],
    opa_binary: Path,
    tmp_path: Path,
    namespace: str,
) -> GateWebhook:
    webhook = start_gate(
        services,
        tmp_path / "tls",
        nats_url=nats_server.url,
        BALLAST_OPA_BINARY=str(opa_binary),
        BALLAST_POLICY_DIR=str(policies(tmp_path / "policies", namespace)),
    )
    await webhook.process.wait_status("/readyz", 200)
    return webhook


@pytest.fixture
async def registered(kube_api: Any, gate: GateWebhook, namespace: str) -> AsyncIterator[Registration]:
    registration = Registration(kube_api, gate, namespace)
    await registration.apply()

    async def called() -> bool:  # the API server picks new webhook configurations up asynchronously
        return await refusal(kube_api, namespace, deployment("probe", {}), dry_run=True) is not None

    await eventually(called, timeout=30, what="the API server calling the policy-gate webhook")
    yield registration
    await registration.delete()


async def test_the_api_server_refuses_warns_and_admits_as_the_constraints_say(
    kube_api: Any, namespace: str, registered: Registration, gate: GateWebhook, tmp_path: Path
) -> None:
    refused = await refusal(kube_api, namespace, deployment("bare", {}))
    assert refused is not None
    assert refused.status == 403
    assert refused.message == (
        f'admission webhook "{registered.hook["name"]}" denied the request: '
        '[must-have-owner] you must provide labels: {"owner"}'
    )

    warnings = await create(kube_api, namespace, deployment("teamless", {"owner": "me", "cost-center": "42"}))
    assert warnings == ['299 - "[should-have-team] you must provide labels: {\\"team\\"}"']

    # dryrun only records: admitted, no warning.
    assert await create(kube_api, namespace, deployment("trial", {"owner": "me", "team": "shop"})) == []

    # A new certificate (from a new CA, trusted beside the old one) written under the running gate is served at once.
    rotated = self_signed("policy-gate")
    bundle = gate.ca_pem + rotated.ca_pem
    await registered.apply(clientConfig={"url": gate.url, "caBundle": base64.b64encode(bundle).decode()})
    gate.key.write_bytes(rotated.key_pem)
    gate.cert.write_bytes(rotated.cert_pem)

    async def serves_the_new_certificate() -> bool:
        only_new = ssl.create_default_context(cadata=rotated.ca_pem.decode())
        port = int(gate.url.split(":")[2].split("/")[0])
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=only_new)
        except ssl.SSLError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    await eventually(serves_the_new_certificate, timeout=10, what="the rewritten certificate served")

    async def refused_again() -> ApiError | None:  # once the API server uses the new caBundle too
        return await refusal(kube_api, namespace, deployment("bare-again", {}), dry_run=True)

    again = await eventually(refused_again, timeout=30, what="the API server reaching the rotated gate")
    assert "[must-have-owner]" in again.message


async def timed_refusal(kube_api: Any, namespace: str) -> tuple[ApiError | None, float]:
    """Creates a violating Deployment: the refusal (None when admitted) and how long the API server took."""
    started = time.monotonic()
    refused = await refusal(kube_api, namespace, deployment(f"d-{uuid.uuid4().hex[:8]}", {}))
    return refused, time.monotonic() - started


async def test_a_hung_or_dead_gate_leaves_the_failure_policy_in_charge_within_the_timeout(
    kube_api: Any, namespace: str, registered: Registration, gate: GateWebhook
) -> None:
    timeout = registered.hook["timeoutSeconds"]
    assert (timeout, registered.hook["failurePolicy"]) == (2, "Ignore"), "as shipped"
    process = gate.process.proc
    assert process is not None

    async def judged_while(policy: str, *, hung: bool) -> tuple[ApiError | None, float] | None:
        """One create under `policy` (None until the API server uses it: it sees a changed configuration later)."""
        if hung:  # stopped, its socket still accepting: the API server waits out the timeout
            os.kill(process.pid, signal.SIGSTOP)
        try:
            refused, took = await timed_refusal(kube_api, namespace)
        finally:
            if hung:
                os.kill(process.pid, signal.SIGCONT)
        assert took <= timeout + MARGIN, f"the create took {took:.1f}s"
        if hung:
            assert took >= timeout - 0.5, f"answered in {took:.1f}s without waiting for the gate"
        return (refused, took) if (refused is not None) == (policy == "Fail") else None

    # Ignore (fail-open): what the gate cannot judge in time is admitted, after the timeout at the latest.
    admitted = await judged_while("Ignore", hung=True)
    assert admitted is not None

    # Fail (fail-closed): refused, saying the webhook failed.
    await registered.apply(failurePolicy="Fail")
    refused, _ = await eventually(lambda: judged_while("Fail", hung=True), timeout=30, what="Fail in use")
    assert refused is not None
    assert "failed calling webhook" in refused.message, refused

    # Killed (nothing listens): the policy answers at once.
    gate.process.kill()
    refused, took = await eventually(lambda: judged_while("Fail", hung=False), what="Fail with the gate dead")
    assert refused is not None
    assert "failed calling webhook" in refused.message, refused
    assert took < timeout, f"a dead gate cost {took:.1f}s"
    await registered.apply(failurePolicy="Ignore")
    await eventually(lambda: judged_while("Ignore", hung=False), timeout=30, what="Ignore with the gate dead")
