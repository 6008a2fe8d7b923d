"""The Tenant controller: each tenant namespace labelled for Pod Security Admission at the tenant's level, with a
default-deny NetworkPolicy, and the tenant's quota and limits."""

from __future__ import annotations

from ballast.kube.apply import apply
from ballast.kube.controller import Result
from ballast.kube.informer import Informer, ObjectKey
from ballast.kube.resource import NAMESPACE
from ballast.kube.rest import KubeApi
from ballast.reconciler.api import Tenant
from ballast.reconciler.render import MANAGED_BY, namespace_labels, render_tenant_namespace


class TenantReconciler:
    def __init__(self, api: KubeApi, tenants: Informer) -> None:
        self._api = api
        self._tenants = tenants

    async def reconcile(self, key: ObjectKey) -> Result:
        obj = self._tenants.store.get(key)
        if obj is None:
            return Result()  # namespaces outlive their tenant; their guardrails stay until someone decides
        tenant = Tenant.model_validate(obj)
        for namespace in tenant.spec.namespaces:
            labelled = {"apiVersion": NAMESPACE.api_version, "kind": NAMESPACE.kind,
                        "metadata": {"name": namespace, "labels": namespace_labels(tenant)}}  # fmt: skip
            await apply(self._api, labelled, field_manager=MANAGED_BY)
            for manifest in render_tenant_namespace(tenant, namespace):
                await apply(self._api, manifest, field_manager=MANAGED_BY)
        return Result()
