"""An SLO object's Prometheus rules, where Prometheus reads them: a PrometheusRule in the cluster when the
prometheus-operator's CRD is installed, and a rule file in a directory a Prometheus loads (the local platform's).

The rules are the library's Sloth-compatible ones (`ballast.slo.slo_rule_groups`) with one label more on every
recorded series (and so on the alerts, which keep their series' labels), `namespace`: Sloth identifies an SLO by
service and name only, which two namespaces may share, and the live evaluator reads all SLOs' recorded series in one
query and tells them apart by it. An SLO with a minimum request rate gets one group more, recording its request
rates (`request_rates`).

`desired_prometheus_rule` and `rule_file_text` are pure; `RuleSync` writes and deletes. A PrometheusRule is named
after its SLO, labelled as managed by the slo-engine and owned by the SLO (a controller ownerReference), so the
garbage collector deletes it with the SLO even while the engine is down; `remove` deletes it (and the file) at once,
and `prune` sweeps what an SLO deleted while the engine was away left behind. An SLO Prometheus rules cannot express
(an availability SLI, a calendar window, a period without alert windows) has no rules: an old set is removed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ballast.kube.apply import apply, delete, get
from ballast.kube.errors import NotFound
from ballast.kube.informer import ObjectKey
from ballast.kube.resource import CUSTOM_RESOURCE_DEFINITION, Resource
from ballast.kube.rest import KubeApi, send_json
from ballast.slo import (
    RollingWindow,
    RuleGroup,
    RuleOptions,
    ServiceLevelObjective,
    SpecFormat,
    UnsupportedSlo,
    slo_rule_groups,
)
from ballast.slo.crd import API_VERSION, KIND
from ballast.slo.group import KubernetesObject
from ballast.slo.rendering import prometheus_rule, render_rule_files
from ballast.slo.rules import RuleDocument, object_options
from ballast.slo_engine.request_rates import request_rate_group

log = logging.getLogger(__name__)

PROMETHEUS_RULE = Resource("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule")
FIELD_MANAGER = "ballast-slo-engine"
MANAGED_BY = "ballast-slo-engine"
_MANAGED = {"app.kubernetes.io/component": "SLO", "app.kubernetes.io/managed-by": MANAGED_BY}


def slo_rules(namespace: str, objective: ServiceLevelObjective, options: RuleOptions) -> list[RuleGroup]:
    """The SLO's rule groups, `namespace` on every recording; raises UnsupportedSlo when rules cannot express it."""
    labelled = object_options(options, namespace)
    groups = slo_rule_groups(objective, SpecFormat.BALLAST, labelled)
    if labelled.recordings and isinstance(objective.window, RollingWindow):
        # Sloth's groups as they are, and the engine's own after them: the minimum request rate's series.
        windows = labelled.windows.for_period(objective.window.length)  # found already, or Sloth's groups raised
        ids = {"sloth_id": objective.id, "sloth_service": objective.service, "sloth_slo": objective.name}
        labels = dict(sorted((objective.labels | labelled.extra_labels | ids).items()))
        extra = request_rate_group(objective, windows, labels)
        if extra is not None:
            groups.append(extra)
    return groups


def owner_reference(slo_object: dict[str, Any]) -> dict[str, Any]:
    metadata = slo_object["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        # False: where the OwnerReferencesPermissionEnforcement admission plugin runs, blocking the SLO's foreground
        # deletion needs update rights on its finalizers, which a least-privilege engine lacks; the garbage
        # collector deletes the rule either way.
        "blockOwnerDeletion": False,
    }


def desired_prometheus_rule(slo_object: dict[str, Any], groups: list[RuleGroup]) -> dict[str, Any]:
    """The PrometheusRule holding `groups` for the SLO object (which must have been read from the cluster: its uid
    makes the ownerReference)."""
    metadata = slo_object["metadata"]
    origin = KubernetesObject(name=metadata["name"], namespace=metadata["namespace"], labels=_MANAGED, annotations={})
    rule = prometheus_rule(RuleDocument(groups, origin))
    rule["metadata"]["ownerReferences"] = [owner_reference(slo_object)]
    return rule


def rule_file_name(namespace: str, name: str) -> str:
    # Kubernetes names never hold "_", so the pair maps to one file and back.
    return f"{namespace}_{name}.yaml"


def rule_file_text(groups: list[RuleGroup], version: str) -> str:
    return render_rule_files([RuleDocument(groups)], version)


@dataclass(frozen=True)
class Synced:
    """What a sync did: whether a PrometheusRule and a rule file hold the SLO's rules, or why it has none."""

    prometheus_rule: bool
    rule_file: Path | None
    unsupported: str | None = None


class RuleSync:
    """Keeps PrometheusRules (with `api`, when the CRD is there) and rule files (with `rules_dir`) in step."""

    def __init__(self, api: KubeApi | None, rules_dir: Path | None, options: RuleOptions) -> None:
        self._api = api
        self._rules_dir = rules_dir
        self._options = options

    async def crd_installed(self) -> bool:
        if self._api is None:
            return False
        return await get(self._api, CUSTOM_RESOURCE_DEFINITION, None, PROMETHEUS_RULE.name) is not None

    async def sync(self, slo_object: dict[str, Any], objective: ServiceLevelObjective | None) -> Synced:
        """Writes the SLO's rules (`objective` None: the spec was refused, so it has none). An unchanged rule file
        is not rewritten and an unchanged PrometheusRule applies as a no-op, so a sync per spec change (or a resync)
        costs one request; one deleted by hand comes back."""
        metadata = slo_object["metadata"]
        key: ObjectKey = (metadata["namespace"], metadata["name"])
        if objective is None:
            await self.remove(*key)
            return Synced(False, None, "the spec was refused")
        try:
            groups = slo_rules(key[0], objective, self._options)
        except UnsupportedSlo as error:
            await self.remove(*key)
            return Synced(False, None, str(error))
        written = self._write_file(key, groups)
        applied = False
        if self._api is not None:
            applied = await self._apply(key, desired_prometheus_rule(slo_object, groups))
        return Synced(applied, written)

    async def _apply(self, key: ObjectKey, rule: dict[str, Any]) -> bool:
        assert self._api is not None
        try:
            await apply(self._api, rule, field_manager=FIELD_MANAGER, resource=PROMETHEUS_RULE)
        except NotFound:
            if await self.crd_installed():
                raise  # the namespace went, say: the caller retries
            log.debug("no PrometheusRule CRD: the rules of %s/%s go to files only", *key)
            return False
        return True

    def _write_file(self, key: ObjectKey, groups: list[RuleGroup]) -> Path | None:
        if self._rules_dir is None:
            return None
        path = self._rules_dir / rule_file_name(*key)
        text = rule_file_text(groups, self._options.version)
        if path.is_file() and path.read_text() == text:
            return path  # unchanged: no reload for Prometheus to do
        self._rules_dir.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.name}.tmp")  # matches no rule-file pattern; the rename is atomic
        staged.write_text(text)
        os.replace(staged, path)
        return path

    async def remove(self, namespace: str, name: str) -> None:
        """Deletes the SLO's PrometheusRule (ours only) and rule file, whichever exist."""
        if self._rules_dir is not None:
            (self._rules_dir / rule_file_name(namespace, name)).unlink(missing_ok=True)
        if self._api is None:
            return
        existing = await get(self._api, PROMETHEUS_RULE, namespace, name)  # None also when the CRD is not installed
        if (
            existing is not None
            and existing["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == MANAGED_BY
        ):
            await delete(self._api, PROMETHEUS_RULE, namespace, name)

    async def prune(self, live: Iterable[ObjectKey]) -> list[ObjectKey]:
        """Removes the rules of every SLO not in `live` (deleted while nobody watched); returns whose."""
        keep = set(live)
        gone: set[ObjectKey] = set()
        if self._rules_dir is not None and self._rules_dir.is_dir():
            for path in self._rules_dir.glob("*_*.yaml"):
                namespace, _, name = path.stem.partition("_")
                if (namespace, name) not in keep:
                    gone.add((namespace, name))
        if self._api is not None and await self.crd_installed():
            selector = f"app.kubernetes.io/managed-by={MANAGED_BY}"
            listed = await send_json(
                self._api, "GET", PROMETHEUS_RULE.collection(), query=[("labelSelector", selector)]
            )
            for item in listed.get("items", []):
                key = (item["metadata"]["namespace"], item["metadata"]["name"])
                if key not in keep:
                    gone.add(key)
        for key in sorted(gone):
            await self.remove(*key)
        return sorted(gone)
