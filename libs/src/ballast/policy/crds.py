"""The CRD of the constraint kind a ConstraintTemplate creates, as Gatekeeper generates it (frameworks' crd helpers):
`<kind lowercased>.constraints.gatekeeper.sh`, cluster-scoped, v1beta1 stored and v1alpha1 served, categories
`constraint` and `constraints` (`kubectl get constraints` lists every kind), `spec.parameters` checked by the API
server against the template's schema, `spec.match` and `spec.enforcementAction` beside it, a status subresource
(the audit writes violations there).
"""

from __future__ import annotations

import copy
from typing import Any

from ballast.policy.constraints import API_GROUP
from ballast.policy.templates import ConstraintTemplate

STORED_VERSION = "v1beta1"
VERSIONS = (STORED_VERSION, "v1alpha1")
CONSTRAINT_LABEL = "gatekeeper.sh/constraint"

_MATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "which objects the constraint judges (kinds, scope, namespaces, excludedNamespaces, "
    "labelSelector, namespaceSelector, name, source); checked by the policy-gate as Gatekeeper checks it",
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "kinds": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "apiGroups": {"type": "array", "items": {"type": "string"}},
                    "kinds": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "scope": {"type": "string", "enum": ["*", "Cluster", "Namespaced"]},
        "namespaces": {"type": "array", "items": {"type": "string"}},
        "excludedNamespaces": {"type": "array", "items": {"type": "string"}},
        "name": {"type": "string"},
        "source": {"type": "string", "enum": ["All", "Original", "Generated"]},
    },
}


def plural(template: ConstraintTemplate) -> str:
    return template.kind.lower()


def crd_name(template: ConstraintTemplate) -> str:
    return f"{plural(template)}.{API_GROUP}"


def parameters_schema(template: ConstraintTemplate) -> dict[str, Any]:
    """The template's openAPIV3Schema, made structural at its root as Gatekeeper does (an object), or any object."""
    schema = copy.deepcopy(template.parameters_schema) if template.parameters_schema else {}
    if not schema:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema.setdefault("type", "object")
    return schema


def constraint_crd(template: ConstraintTemplate) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 63}},
            },
            "spec": {
                "type": "object",
                "properties": {
                    "match": _MATCH_SCHEMA,
                    "enforcementAction": {"type": "string", "enum": ["deny", "dryrun", "warn"]},
                    "parameters": parameters_schema(template),
                },
            },
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": crd_name(template),
            "labels": {CONSTRAINT_LABEL: "yes"},
            "annotations": {"policy.ballast.io/template": template.name},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Cluster",
            "names": {
                "kind": template.kind,
                "listKind": f"{template.kind}List",
                "plural": plural(template),
                "singular": plural(template),
                "categories": ["constraint", "constraints"],
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": version == STORED_VERSION,
                    "schema": {"openAPIV3Schema": copy.deepcopy(schema)},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "enforcement-action", "type": "string", "jsonPath": ".spec.enforcementAction"},
                        {"name": "total-violations", "type": "integer", "jsonPath": ".status.totalViolations"},
                    ],
                }
                for version in VERSIONS
            ],
        },
    }
