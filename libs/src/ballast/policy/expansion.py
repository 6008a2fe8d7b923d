"""Gatekeeper's ExpansionTemplate (`expansion.gatekeeper.sh/v1alpha1`): a workload is also judged as what it creates.

A Deployment's `spec.template` becomes the Pod it will create (kind from `generatedGVK`, namespace the workload's,
name `<workload>-<kind>` in lowercase, as Gatekeeper's mock resources are named), reviewed with source `Generated`.
Its violations are reported on the workload, prefixed `[Implied by <template>]`, with the template's
`enforcementAction` instead of the constraint's when it sets one. Mutators on generated resources are not applied.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ballast.events.contracts.policy import EnforcementAction
from ballast.policy.constraints import group_version_kind

API_GROUP = "expansion.gatekeeper.sh"


class ExpansionError(ValueError):
    """A malformed ExpansionTemplate, or a workload without the field a template expands."""


@dataclass(frozen=True)
class ExpansionTemplate:
    name: str
    apply_to: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...]  # (groups, kinds, versions)
    template_source: str
    generated: tuple[str, str, str]  # (group, version, kind)
    enforcement_action: EnforcementAction | None = None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> ExpansionTemplate:
        name = str((manifest.get("metadata") or {}).get("name") or "")
        if str(manifest.get("apiVersion", "")).split("/")[0] != API_GROUP or manifest.get("kind") != (
            "ExpansionTemplate"
        ):
            raise ExpansionError(f"not an ExpansionTemplate: {manifest.get('apiVersion')} {manifest.get('kind')}")
        spec = manifest.get("spec") or {}
        source = str(spec.get("templateSource") or "")
        gvk = spec.get("generatedGVK") or {}
        generated = (str(gvk.get("group") or ""), str(gvk.get("version") or ""), str(gvk.get("kind") or ""))
        if not name or not source or generated == ("", "", ""):
            raise ExpansionError(f"ExpansionTemplate {name!r} needs a name, templateSource and generatedGVK")
        apply_to = tuple(
            (
                tuple(str(g) for g in entry.get("groups") or []),
                tuple(str(k) for k in entry.get("kinds") or []),
                tuple(str(v) for v in entry.get("versions") or []),
            )
            for entry in spec.get("applyTo") or []
        )
        action = spec.get("enforcementAction")
        try:
            enforcement = EnforcementAction(action) if action else None
        except ValueError:
            raise ExpansionError(f"ExpansionTemplate {name!r}: enforcementAction {action!r} is unknown") from None
        return cls(name, apply_to, source, generated, enforcement)

    def applies_to(self, obj: dict[str, Any]) -> bool:
        group, version, kind = group_version_kind(obj)
        return any(group in g and kind in k and version in v for g, k, v in self.apply_to)

    def expand(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The resource `obj` will create."""
        source: Any = obj
        for part in self.template_source.split("."):
            source = source.get(part) if isinstance(source, dict) else None
        if not isinstance(source, dict):
            raise ExpansionError(f"could not find source field {self.template_source!r} in {obj.get('kind')}")
        group, version, kind = self.generated
        resource = copy.deepcopy(source)
        resource["apiVersion"] = f"{group}/{version}" if group else version
        resource["kind"] = kind
        metadata = dict(resource.get("metadata") or {})
        parent = obj.get("metadata") or {}
        if parent.get("namespace"):
            metadata["namespace"] = parent["namespace"]
        metadata["name"] = f"{parent.get('name', '')}-{kind}".lower()
        resource["metadata"] = metadata
        return resource


def _workloads(name: str, source: str, kinds: list[dict[str, Any]]) -> ExpansionTemplate:
    return ExpansionTemplate.from_manifest(
        {
            "apiVersion": f"{API_GROUP}/v1alpha1",
            "kind": "ExpansionTemplate",
            "metadata": {"name": name},
            "spec": {"applyTo": kinds, "templateSource": source, "generatedGVK": {"kind": "Pod", "version": "v1"}},
        }
    )


# The pod-creating workloads, as Gatekeeper's documented ExpansionTemplates list them; the gate applies them unless
# the policy files define templates of the same name.
WORKLOAD_EXPANSIONS = (
    _workloads(
        "expand-workloads",
        "spec.template",
        [
            {"groups": ["apps"], "kinds": ["DaemonSet", "Deployment", "ReplicaSet", "StatefulSet"], "versions": ["v1"]},
            {"groups": [""], "kinds": ["ReplicationController"], "versions": ["v1"]},
            {"groups": ["batch"], "kinds": ["Job"], "versions": ["v1"]},
        ],
    ),
    _workloads(
        "expand-cronjobs",
        "spec.jobTemplate.spec.template",
        [{"groups": ["batch"], "kinds": ["CronJob"], "versions": ["v1"]}],
    ),
)
