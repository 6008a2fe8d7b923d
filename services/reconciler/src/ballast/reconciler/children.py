"""The kinds a WebApp's children come in, declared once: rendered, watched for drift, pruned, reported.

Each child kind is watched across namespaces by the label every child carries, and cached slim: the reconciler reads
a child's metadata (its version, generation, owner) and, of a Deployment, its status, replicas and image. The rest is
compared, never read: by generation where the kind has one, else by a digest of its content (Services and
ServiceAccounts carry no generation). A cache of thousands of WebApps' children is most of the reconciler's memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ballast.kube.informer import Transform
from ballast.kube.resource import (
    DEPLOYMENT,
    HORIZONTAL_POD_AUTOSCALER,
    NETWORK_POLICY,
    POD_DISRUPTION_BUDGET,
    SERVICE,
    SERVICE_ACCOUNT,
    SERVICE_MONITOR,
    Resource,
)

ChildType = tuple[str, str]  # (apiVersion, kind), as a manifest names its type


CONTENT_DIGEST = "contentDigest"  # the key under which a slim child keeps the digest of what it was cut down from
_NOT_CONTENT = frozenset({"metadata", "status", "apiVersion", "kind", CONTENT_DIGEST})


def content_digest(obj: Mapping[str, Any]) -> str:
    """A digest of what an object declares beyond its metadata and status (list items carry no apiVersion and kind,
    watch events do: neither counts)."""
    digest = obj.get(CONTENT_DIGEST)
    if isinstance(digest, str):
        return digest
    content = {key: value for key, value in obj.items() if key not in _NOT_CONTENT}
    return hashlib.blake2b(orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def slim_child(obj: dict[str, Any]) -> dict[str, Any]:
    """What the plan reads of a child: its metadata, and the digest of its content where no generation stands for
    it."""
    metadata = obj.get("metadata", {})
    metadata.pop("managedFields", None)
    slim: dict[str, Any] = {"metadata": metadata}
    if "generation" not in metadata:
        slim[CONTENT_DIGEST] = content_digest(obj)
    return slim


def _slim(obj: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata", {})
    metadata.pop("managedFields", None)
    slim = {"metadata": metadata, "spec": spec, "status": obj.get("status", {})}
    slim.update({key: obj[key] for key in ("apiVersion", "kind") if key in obj})
    return slim


def _images(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": c.get("name"), "image": c.get("image")} for c in pod_spec.get("containers", [])]


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What status and pod events read of a pod: its metadata, phase, its containers' images and what the kubelet
    says of each container (state, last state, restarts). Pods are the largest part of the cache (one per replica),
    and most of a pod is spec and status nobody here reads."""
    spec, status = pod.get("spec", {}), pod.get("status") or {}
    slim = _slim(pod, {"containers": _images(spec), "nodeName": spec.get("nodeName")})
    containers = [
        {key: container[key] for key in ("name", "restartCount", "state", "lastState") if key in container}
        for container in status.get("containerStatuses") or []
    ]
    slim["status"] = {"phase": status.get("phase"), "containerStatuses": containers}
    return slim


def slim_deployment(deployment: dict[str, Any]) -> dict[str, Any]:
    """What status, drift detection (by generation) and Deployment events read of a Deployment: the pod template is
    most of it and is compared by generation only."""
    spec = deployment.get("spec", {})
    slim_spec: dict[str, Any] = {
        "template": {"spec": {"containers": _images(spec.get("template", {}).get("spec", {}))}}
    }
    if "replicas" in spec:
        slim_spec["replicas"] = spec["replicas"]
    return _slim(deployment, slim_spec)


@dataclass(frozen=True)
class ChildKind:
    resource: Resource
    slim: Transform = slim_child
    # Served only where its CRD is installed (the prometheus-operator's ServiceMonitor): watched and rendered only
    # while it is.
    optional: bool = False

    @property
    def type(self) -> ChildType:
        return self.resource.type_key


CHILD_KINDS: tuple[ChildKind, ...] = (
    ChildKind(SERVICE_ACCOUNT),
    ChildKind(DEPLOYMENT, slim=slim_deployment),
    ChildKind(SERVICE),
    ChildKind(HORIZONTAL_POD_AUTOSCALER),
    ChildKind(POD_DISRUPTION_BUDGET),
    ChildKind(NETWORK_POLICY),
    ChildKind(SERVICE_MONITOR, optional=True),
)
CHILD_TYPES: frozenset[ChildType] = frozenset(kind.type for kind in CHILD_KINDS)
_SLIM_BY_TYPE = {kind.type: kind.slim for kind in CHILD_KINDS}


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """A child as its kind is cached."""
    return _SLIM_BY_TYPE[(obj["apiVersion"], obj["kind"])](obj)
