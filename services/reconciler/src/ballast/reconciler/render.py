"""Desired state, computed without I/O: a WebApp (and its tenant) in, the manifests of its children out.

Every child carries the WebApp as its controller owner (garbage collection removes it with the WebApp) and the same
labels, so the reconciler can find what it owns. The output is deterministic: rendering twice gives equal manifests,
which is what makes server-side apply a no-op when nothing changed.
"""

from __future__ import annotations

from typing import Any

from ballast.reconciler.api import (
    API_VERSION,
    MAX_POD_SECURITY_LABEL,
    NetworkPolicyMode,
    PodSecurityLevel,
    Tenant,
    WebApp,
)

Manifest = dict[str, Any]

MANAGED_BY = "ballast-reconciler"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
TENANT_LABEL = "platform.example.com/tenant"
PORT_NAME = "http"


def selector_labels(webapp: WebApp) -> dict[str, str]:
    return {NAME_LABEL: webapp.metadata.name, INSTANCE_LABEL: webapp.metadata.name}


def child_labels(webapp: WebApp) -> dict[str, str]:
    return {**selector_labels(webapp), MANAGED_BY_LABEL: MANAGED_BY}


def owner_reference(webapp: WebApp) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WebApp",
        "name": webapp.metadata.name,
        "uid": webapp.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(webapp: WebApp) -> dict[str, Any]:
    return {
        "name": webapp.metadata.name,
        "namespace": webapp.metadata.namespace,
        "labels": child_labels(webapp),
        "ownerReferences": [owner_reference(webapp)],
    }


def pod_security_context(level: PodSecurityLevel) -> dict[str, Any]:
    if level is PodSecurityLevel.PRIVILEGED:
        return {}
    context: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if level is PodSecurityLevel.RESTRICTED:
        context |= {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532}
    return context


def container_security_context(level: PodSecurityLevel) -> dict[str, Any]:
    if level is PodSecurityLevel.PRIVILEGED:
        return {}
    context: dict[str, Any] = {"allowPrivilegeEscalation": False, "privileged": False}
    if level is PodSecurityLevel.RESTRICTED:
        context |= {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    return context


def render_deployment(webapp: WebApp) -> Manifest:
    spec, level = webapp.spec, webapp.spec.security.pod_security_standard
    container: dict[str, Any] = {
        "name": "app",
        "image": spec.image,
        "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": PORT_NAME}, "initialDelaySeconds": 10, "periodSeconds": 10},
        "securityContext": container_security_context(level),
    }
    if spec.env:
        container["env"] = [{"name": e.name, "value": e.value} for e in spec.env]
    if spec.resources is not None:
        container["resources"] = spec.resources.model_dump(mode="json", by_alias=True, exclude_none=True)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": webapp.metadata.name,
        "automountServiceAccountToken": False,  # the app gets no API credentials it did not ask for
        "securityContext": pod_security_context(level),
        "containers": [container],
    }
    if level is PodSecurityLevel.RESTRICTED:
        # A read-only root filesystem still needs somewhere to write temporary files.
        container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
        pod_spec["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(webapp)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        "template": {"metadata": {"labels": child_labels(webapp)}, "spec": pod_spec},
    }
    if not spec.autoscaling.enabled:
        # With autoscaling the HPA owns the replica count; naming it here would fight the HPA on every apply.
        deployment_spec["replicas"] = spec.replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(webapp), "spec": deployment_spec}


def render_service(webapp: WebApp) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(webapp),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(webapp),
            "ports": [{"name": PORT_NAME, "port": webapp.spec.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def render_service_account(webapp: WebApp) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(webapp),
        "automountServiceAccountToken": False,
    }


def max_replicas(webapp: WebApp) -> int:
    autoscaling = webapp.spec.autoscaling
    return autoscaling.max_replicas or max(autoscaling.min_replicas, webapp.spec.replicas)


def render_hpa(webapp: WebApp) -> Manifest:
    autoscaling = webapp.spec.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(webapp),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": webapp.metadata.name},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": max_replicas(webapp),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": autoscaling.target_cpu_utilization},
                    },
                }
            ],
        },
    }


def minimum_replicas(webapp: WebApp) -> int:
    autoscaling = webapp.spec.autoscaling
    return autoscaling.min_replicas if autoscaling.enabled else webapp.spec.replicas


def render_pdb(webapp: WebApp) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(webapp),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(webapp)}},
    }


DNS_EGRESS = {
    "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def render_network_policy(webapp: WebApp) -> Manifest:
    app_port = [{"protocol": "TCP", "port": webapp.spec.port}]
    if webapp.spec.security.network_policy is NetworkPolicyMode.STRICT:
        # Only its own namespace may call it; it may call its own namespace and DNS.
        ingress = [{"from": [{"podSelector": {}}], "ports": app_port}]
        egress: list[dict[str, Any]] = [{"to": [{"podSelector": {}}]}, DNS_EGRESS]
    else:
        ingress = [{"ports": app_port}]  # anyone, on the app's port only
        egress = [{}]  # anywhere
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(webapp),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(webapp)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def render_service_monitor(webapp: WebApp) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(webapp),
        "spec": {
            "selector": {"matchLabels": selector_labels(webapp)},
            "endpoints": [{"port": PORT_NAME, "path": "/metrics", "interval": webapp.spec.monitoring.scrape_interval}],
        },
    }


def render(webapp: WebApp, *, service_monitors: bool) -> list[Manifest]:
    """The children `webapp` should have now. `service_monitors`: whether the ServiceMonitor CRD is installed."""
    children = [render_service_account(webapp), render_deployment(webapp), render_service(webapp)]
    if webapp.spec.autoscaling.enabled:
        children.append(render_hpa(webapp))
    if minimum_replicas(webapp) > 1:
        children.append(render_pdb(webapp))
    if webapp.spec.security.network_policy is not NetworkPolicyMode.NONE:
        children.append(render_network_policy(webapp))
    if webapp.spec.monitoring.enabled and service_monitors:
        children.append(render_service_monitor(webapp))
    return children


# --- tenants --------------------------------------------------------------------------------------------------------


def namespace_labels(tenant: Tenant) -> dict[str, str]:
    """Labels each tenant namespace carries: Pod Security Admission at the tenant's level, and that level for the
    WebApp admission policy (which refuses a WebApp asking for more)."""
    level = tenant.spec.max_pod_security.value
    return {
        TENANT_LABEL: tenant.metadata.name,
        MAX_POD_SECURITY_LABEL: level,
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/enforce-version": "latest",
        # Warn and audit at restricted, so a baseline tenant sees what would not pass the stricter level.
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }


def _tenant_metadata(tenant: Tenant, name: str, namespace: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {TENANT_LABEL: tenant.metadata.name, MANAGED_BY_LABEL: MANAGED_BY},
    }


def render_tenant_namespace(tenant: Tenant, namespace: str) -> list[Manifest]:
    """The guardrails of one tenant namespace: a default-deny NetworkPolicy, and quota and limits if set."""
    children: list[Manifest] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _tenant_metadata(tenant, "default-deny", namespace),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        }
    ]
    if tenant.spec.quota is not None and tenant.spec.quota.hard:
        hard = {key: str(value) for key, value in sorted(tenant.spec.quota.hard.items())}
        children.append(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": _tenant_metadata(tenant, "tenant-quota", namespace),
                "spec": {"hard": hard},
            }
        )
    limits = tenant.spec.limit_range
    if limits is not None and (limits.default is not None or limits.default_request is not None):
        item: dict[str, Any] = {"type": "Container"}
        if limits.default is not None:
            item["default"] = limits.default.model_dump(mode="json", exclude_none=True)
        if limits.default_request is not None:
            item["defaultRequest"] = limits.default_request.model_dump(mode="json", exclude_none=True)
        children.append(
            {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": _tenant_metadata(tenant, "tenant-limits", namespace),
                "spec": {"limits": [item]},
            }
        )
    return children
