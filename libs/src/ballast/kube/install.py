"""Installing the API Ballast defines, CRDs and admission policies, from manifests.

Each object is created, or replaced when it exists (so a changed manifest takes effect on the next install); then
every CRD is waited for until it is Established and its resource answers requests. Used by the chart's install job
and by the test fixtures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

Manifest = Mapping[str, Any]

CRD_KIND = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
POLICY_KIND = ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy")
BINDING_KIND = ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding")
SUPPORTED_KINDS = (CRD_KIND, POLICY_KIND, BINDING_KIND)

POLL_INTERVAL = 0.1
# Replaces that lose a race with another writer (409 Conflict) before giving up.
REPLACE_ATTEMPTS = 5


class InstallError(Exception):
    """A manifest could not be installed, or a CRD did not become ready in time; the message says which and why."""


def load_manifests(*paths: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of the files, in order."""
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


async def install(api: client.ApiClient, manifests: Iterable[Manifest], *, timeout: float = 60.0) -> None:
    """Creates or replaces the objects, CRDs first, and returns once every CRD is Established and served.

    Policies are applied in the order given (a binding after its policy). Admission policies take effect a moment
    after they are stored, when the API server has loaded them; nothing in the API reports that moment.
    """
    manifests = list(manifests)
    unsupported = sorted({kind for m in manifests if (kind := _kind(m)) not in SUPPORTED_KINDS})
    if unsupported:
        # Checked before anything is written: half an install is worse than none.
        names = ", ".join(f"{kind} ({api_version})" for api_version, kind in unsupported)
        raise InstallError(f"cannot install {names}: only CustomResourceDefinitions and ValidatingAdmissionPolicies")
    deadline = asyncio.get_running_loop().time() + timeout
    crds = [m for m in manifests if _kind(m) == CRD_KIND]
    await asyncio.gather(*(_create_or_replace(api, m, deadline) for m in crds))
    await asyncio.gather(*(_wait_ready(api, m, deadline) for m in crds))
    for manifest in manifests:
        if _kind(manifest) != CRD_KIND:
            await _create_or_replace(api, manifest, deadline)


def _kind(manifest: Manifest) -> tuple[str, str]:
    return (str(manifest.get("apiVersion", "")), str(manifest.get("kind", "")))


def _endpoints(api: client.ApiClient, manifest: Manifest) -> tuple[Callable[..., Awaitable[Any]], ...]:
    """The create, read and replace calls for the manifest's kind."""
    kind = _kind(manifest)
    if kind == CRD_KIND:
        extensions = client.ApiextensionsV1Api(api)
        return (
            extensions.create_custom_resource_definition,
            extensions.read_custom_resource_definition,
            extensions.replace_custom_resource_definition,
        )
    admission = client.AdmissionregistrationV1Api(api)
    if kind == POLICY_KIND:
        return (
            admission.create_validating_admission_policy,
            admission.read_validating_admission_policy,
            admission.replace_validating_admission_policy,
        )
    return (
        admission.create_validating_admission_policy_binding,
        admission.read_validating_admission_policy_binding,
        admission.replace_validating_admission_policy_binding,
    )


async def _create_or_replace(api: client.ApiClient, manifest: Manifest, deadline: float) -> None:
    create, read, replace = _endpoints(api, manifest)
    name: str = manifest["metadata"]["name"]
    what = f"{manifest['kind']} {name}"
    loop = asyncio.get_running_loop()
    conflicts = 0
    while True:
        try:
            await create(dict(manifest))
            return
        except ApiException as exc:
            if exc.status != 409:
                raise InstallError(f"creating {what} failed: {exc.status} {_message(exc)}") from exc
        try:
            existing = await read(name)
        except ApiException as exc:
            if exc.status == 404:  # deleted since: create it again
                continue
            raise InstallError(f"reading {what} failed: {exc.status} {_message(exc)}") from exc
        if existing.metadata.deletion_timestamp is not None:
            # Being deleted (a CRD first removes its objects): a replace would be lost with it, so wait it out.
            if loop.time() >= deadline:
                raise InstallError(f"{what} is still being deleted; cannot install it again yet")
            await asyncio.sleep(POLL_INTERVAL)
            continue
        body = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": existing.metadata.resource_version}}
        try:
            await replace(name, body)
            return
        except ApiException as exc:
            if exc.status == 409:
                conflicts += 1
                if conflicts >= REPLACE_ATTEMPTS:
                    raise InstallError(f"replacing {what} failed: it kept changing ({conflicts} conflicts)") from exc
            elif exc.status != 404:
                raise InstallError(f"replacing {what} failed: {exc.status} {_message(exc)}") from exc


async def _wait_ready(api: client.ApiClient, manifest: Manifest, deadline: float) -> None:
    name: str = manifest["metadata"]["name"]
    extensions = client.ApiextensionsV1Api(api)
    loop = asyncio.get_running_loop()
    conditions: dict[str, Any] = {}
    while True:
        crd = await extensions.read_custom_resource_definition(name)
        conditions = {c.type: c for c in (crd.status.conditions if crd.status else None) or []}
        names = conditions.get("NamesAccepted")
        if names is not None and names.status == "False":
            # Permanent until someone changes a CRD: waiting would only delay the same answer.
            raise InstallError(f"CRD {name} is not accepted: {names.reason}: {names.message}")
        established = conditions.get("Established")
        if established is not None and established.status == "True":
            break
        if loop.time() >= deadline:
            raise InstallError(f"CRD {name} not Established in time: {_describe(conditions)}")
        await asyncio.sleep(POLL_INTERVAL)
    # Established precedes the resource's handler and storage by a moment (404, then 429 "storage is
    # (re)initializing"): a caller creating objects right away would fail without this.
    spec = manifest["spec"]
    version = next(v["name"] for v in spec["versions"] if v.get("served", True))
    custom = client.CustomObjectsApi(api)
    while True:
        try:
            await custom.list_cluster_custom_object(spec["group"], version, spec["names"]["plural"], limit=1)
            return
        except ApiException as exc:
            if exc.status not in (404, 429, 503):
                raise InstallError(f"CRD {name} is Established but its resource fails: {_message(exc)}") from exc
        if loop.time() >= deadline:
            raise InstallError(f"CRD {name} is Established but its resource is not served in time")
        await asyncio.sleep(POLL_INTERVAL)


def _describe(conditions: Mapping[str, Any]) -> str:
    if not conditions:
        return "no conditions yet"
    return "; ".join(f"{c.type}={c.status} ({c.reason}: {c.message})" for c in conditions.values())


def _message(exc: ApiException) -> str:
    """The API server's own explanation (the Status message), falling back to the HTTP reason."""
    try:
        return str(json.loads(exc.body or b"{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)
