"""One `Resource` type names a kind everywhere: apply, informers, events and RBAC-facing code take it, so a kind's
group, version, plural and scope are written once.

Ballast knows the kinds it reads and writes up front (no discovery round trips); a manifest is matched to its
`Resource` by apiVersion and kind through `resource_for`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def type_key(self) -> tuple[str, str]:
        """(apiVersion, kind), as a manifest names its type."""
        return self.api_version, self.kind

    @property
    def name(self) -> str:
        """`plural.group`, as a CRD and RBAC name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def _prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection(self, namespace: str | None = None) -> str:
        """The list path: in one namespace, or across all of them (also for cluster-scoped kinds: `namespace`
        None)."""
        if self.namespaced and namespace:
            return f"{self._prefix()}/namespaces/{namespace}/{self.plural}"
        return f"{self._prefix()}/{self.plural}"

    def path(self, namespace: str | None, name: str, subresource: str = "") -> str:
        """One object's path (and a subresource of it: `status`, `scale`)."""
        if self.namespaced and not namespace:
            raise ValueError(f"{self.kind} is namespaced: {name} needs a namespace")
        base = f"{self.collection(namespace if self.namespaced else None)}/{name}"
        return f"{base}/{subresource}" if subresource else base

    def object_path(self, obj: Mapping[str, Any], subresource: str = "") -> str:
        metadata = obj["metadata"]
        return self.path(metadata.get("namespace"), metadata["name"], subresource)


# --- kinds Ballast reads or writes ---------------------------------------------------------------------------------

NAMESPACE = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SERVICE_ACCOUNT = Resource("", "v1", "serviceaccounts", "ServiceAccount")
SERVICE = Resource("", "v1", "services", "Service")
POD = Resource("", "v1", "pods", "Pod")
RESOURCE_QUOTA = Resource("", "v1", "resourcequotas", "ResourceQuota")
LIMIT_RANGE = Resource("", "v1", "limitranges", "LimitRange")
DEPLOYMENT = Resource("apps", "v1", "deployments", "Deployment")
HORIZONTAL_POD_AUTOSCALER = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
POD_DISRUPTION_BUDGET = Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
NETWORK_POLICY = Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")
LEASE = Resource("coordination.k8s.io", "v1", "leases", "Lease")
EVENT = Resource("events.k8s.io", "v1", "events", "Event")
CUSTOM_RESOURCE_DEFINITION = Resource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False
)
CLUSTER_ROLE = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False)
CLUSTER_ROLE_BINDING = Resource(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
)
ROLE = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDING = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
SERVICE_MONITOR = Resource("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor")
# The platform's own API (deploy/crds): every service and the CLI name WebApps and Tenants.
WEBAPP = Resource("platform.example.com", "v1", "webapps", "WebApp")
TENANT = Resource("platform.example.com", "v1", "tenants", "Tenant", namespaced=False)

KNOWN: tuple[Resource, ...] = (
    NAMESPACE,
    SERVICE_ACCOUNT,
    SERVICE,
    POD,
    RESOURCE_QUOTA,
    LIMIT_RANGE,
    DEPLOYMENT,
    HORIZONTAL_POD_AUTOSCALER,
    POD_DISRUPTION_BUDGET,
    NETWORK_POLICY,
    LEASE,
    EVENT,
    CUSTOM_RESOURCE_DEFINITION,
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    ROLE,
    ROLE_BINDING,
    SERVICE_MONITOR,
    WEBAPP,
    TENANT,
)
_BY_TYPE = {resource.type_key: resource for resource in KNOWN}


def resource_for(manifest: Mapping[str, Any], extra: Iterable[Resource] = ()) -> Resource:
    """The resource a manifest's apiVersion and kind name, among the known ones and `extra`."""
    key = (manifest.get("apiVersion", ""), manifest.get("kind", ""))
    resource = _BY_TYPE.get(key) or next((r for r in extra if r.type_key == key), None)
    if resource is None:
        raise ValueError(f"{key[0]} {key[1]} is not a kind Ballast knows (pass its Resource)")
    return resource
