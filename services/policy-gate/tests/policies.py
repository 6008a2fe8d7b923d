"""Policy files for the gate's tests: a required-labels template with deny, warn and dryrun constraints, a pod-level
template (so that Deployments are judged as their pods), and a template OPA refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REQUIRED_LABELS = """package k8srequiredlabels

violation[{"msg": msg}] {
  provided := {label | input.review.object.metadata.labels[label]}
  required := {label | label := input.parameters.labels[_]}
  missing := required - provided
  count(missing) > 0
  msg := sprintf("you must provide labels: %v", [missing])
}
"""

NO_PRIVILEGED = """package k8snoprivileged

violation[{"msg": msg}] {
  c := input.review.object.spec.containers[_]
  c.securityContext.privileged
  msg := sprintf("privileged container %v", [c.name])
}
"""

BROKEN = """package k8sbroken

violation[{"msg": msg}] {
  msg := no_such_function(input.review)
}
"""


def template(kind: str, rego: str) -> dict[str, Any]:
    return {
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {"name": kind.lower()},
        "spec": {
            "crd": {"spec": {"names": {"kind": kind}}},
            "targets": [{"target": "admission.k8s.gatekeeper.sh", "rego": rego}],
        },
    }


def constraint(kind: str, name: str, action: str, match: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    return {
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"enforcementAction": action, "match": match, "parameters": parameters},
    }


def gatekeeper_config(*match: dict[str, Any], sync: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A Gatekeeper `Config`: namespaces left out per process (`spec.match`) and the kinds synced (`syncOnly`)."""
    spec: dict[str, Any] = {"match": list(match)}
    if sync is not None:
        spec["sync"] = {"syncOnly": sync}
    return {
        "apiVersion": "config.gatekeeper.sh/v1alpha1",
        "kind": "Config",
        "metadata": {"name": "config", "namespace": "gatekeeper-system"},
        "spec": spec,
    }


DEPLOYMENTS = {"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]}
PODS = {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}


def write_policies(directory: Path) -> Path:
    """The policy directory: templates in one file, constraints in another (as a policy repository keeps them)."""
    directory.mkdir(parents=True, exist_ok=True)
    templates = [
        template("K8sRequiredLabels", REQUIRED_LABELS),
        template("K8sNoPrivileged", NO_PRIVILEGED),
        template("K8sBroken", BROKEN),
    ]
    constraints = [
        constraint("K8sRequiredLabels", "must-have-owner", "deny", DEPLOYMENTS, labels=["owner"]),
        constraint("K8sRequiredLabels", "should-have-team", "warn", DEPLOYMENTS, labels=["team"]),
        constraint("K8sRequiredLabels", "cost-center-trial", "dryrun", DEPLOYMENTS, labels=["cost-center"]),
        constraint("K8sNoPrivileged", "no-privileged", "deny", PODS),
        constraint("K8sBroken", "broken", "deny", PODS),
    ]
    (directory / "templates.yaml").write_text(yaml.safe_dump_all(templates))
    (directory / "constraints").mkdir(exist_ok=True)
    (directory / "constraints" / "all.yaml").write_text(yaml.safe_dump_all(constraints))
    return directory


def deployment(name: str, labels: dict[str, str], *, privileged: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "web", "image": "nginx"}
    if privileged:
        container["securityContext"] = {"privileged": True}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }
