"""The kinds a WebApp's children come in, declared once: rendered, watched for drift, pruned, reported.

Each child kind is watched across namespaces by the label every child carries, and cached slim: the reconciler reads
a child's version, generation and status (and of a Deployment its replicas and image), never the rest of its spec,
which is compared by generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ballast.kube.informer import Transform, strip_managed_fields
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


def _slim(obj: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata", {})
    metadata.pop("managedFields", None)
    slim = {"metadata": metadata, "spec": spec, "status": obj.get("status", {})}
    slim.update({key: obj[key] for key in ("apiVersion", "kind") if key in obj})
    return slim


def _images(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": c.get("name"), "image": c.get("image")} for c in pod_spec.get("containers", [])]


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What status and pod events read of a pod: its metadata, status and container images. Pods are the largest
    part of the cache (one per replica), and most of a pod is spec nobody here reads."""
    spec = pod.get("spec", {})
    return _slim(pod, {"containers": _images(spec), "nodeName": spec.get("nodeName")})


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
    slim: Transform = strip_managed_fields
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
