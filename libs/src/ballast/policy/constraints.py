"""Gatekeeper Constraints (`constraints.gatekeeper.sh`): which objects a template judges, with what parameters, and
what a violation does (deny, dryrun, warn).

`spec.match` is evaluated as Gatekeeper's `pkg/mutation/match` does, before any Rego runs: kinds, scope, namespaces,
excludedNamespaces (both with a `*` prefix/suffix glob), labelSelector, namespaceSelector, name and source. An object
matches when every criterion given holds; absent criteria match everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ballast.events.contracts.policy import EnforcementAction

API_GROUP = "constraints.gatekeeper.sh"

Source = Literal["Original", "Generated"]


class ConstraintError(ValueError):
    """A constraint that cannot be used; the message names it and the field."""


class MatchError(ValueError):
    """The match cannot be decided (a namespaceSelector for an object whose Namespace is unknown)."""


def wildcard_matches(pattern: str, candidate: str) -> bool:
    """Gatekeeper's Wildcard: `kube-*` prefix, `*-system` suffix, `*sys*` contains, otherwise exact."""
    if pattern.startswith("*") and pattern.endswith("*") and len(pattern) > 1:
        return pattern[1:-1] in candidate
    if pattern.startswith("*"):
        return candidate.endswith(pattern[1:])
    if pattern.endswith("*"):
        return candidate.startswith(pattern[:-1])
    return pattern == candidate


@dataclass(frozen=True)
class LabelSelector:
    """metav1.LabelSelector: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist), ANDed."""

    match_labels: dict[str, str]
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...]

    @classmethod
    def parse(cls, where: str, raw: Any) -> LabelSelector | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise ConstraintError(f"{where} must be an object")
        labels = raw.get("matchLabels") or {}
        if not isinstance(labels, dict):
            raise ConstraintError(f"{where}.matchLabels must be an object")
        expressions = []
        for index, expression in enumerate(raw.get("matchExpressions") or []):
            key = expression.get("key")
            operator = expression.get("operator")
            values = tuple(str(v) for v in expression.get("values") or [])
            if not key or operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise ConstraintError(f"{where}.matchExpressions[{index}]: {operator!r} is not a selector operator")
            if operator in ("In", "NotIn") and not values:
                raise ConstraintError(f"{where}.matchExpressions[{index}]: {operator} needs values")
            if operator in ("Exists", "DoesNotExist") and values:
                raise ConstraintError(f"{where}.matchExpressions[{index}]: {operator} takes no values")
            expressions.append((str(key), str(operator), values))
        return cls({str(k): str(v) for k, v in labels.items()}, tuple(expressions))

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for key, operator, values in self.expressions:
            present = key in labels
            if operator == "In" and not (present and labels[key] in values):
                return False
            if operator == "NotIn" and present and labels[key] in values:
                return False
            if operator == "Exists" and not present:
                return False
            if operator == "DoesNotExist" and present:
                return False
        return True


@dataclass(frozen=True)
class Match:
    kinds: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()  # (apiGroups, kinds)
    scope: str = "*"
    namespaces: tuple[str, ...] = ()
    excluded_namespaces: tuple[str, ...] = ()
    label_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    name: str = ""
    source: str = "All"

    @classmethod
    def parse(cls, where: str, raw: Any) -> Match:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ConstraintError(f"{where} must be an object")
        kinds = []
        for index, entry in enumerate(raw.get("kinds") or []):
            if not isinstance(entry, dict):
                raise ConstraintError(f"{where}.kinds[{index}] must be an object")
            groups = tuple(str(g) for g in entry.get("apiGroups") or [])
            names = tuple(str(k) for k in entry.get("kinds") or [])
            kinds.append((groups, names))
        source = str(raw.get("source") or "All")
        if source not in ("All", "Original", "Generated"):
            raise ConstraintError(f"{where}.source {source!r} is not All, Original or Generated")
        return cls(
            kinds=tuple(kinds),
            scope=str(raw.get("scope") or "*"),
            namespaces=tuple(str(n) for n in raw.get("namespaces") or []),
            excluded_namespaces=tuple(str(n) for n in raw.get("excludedNamespaces") or []),
            label_selector=LabelSelector.parse(f"{where}.labelSelector", raw.get("labelSelector")),
            namespace_selector=LabelSelector.parse(f"{where}.namespaceSelector", raw.get("namespaceSelector")),
            name=str(raw.get("name") or ""),
            source=source,
        )

    def matches(self, obj: dict[str, Any], namespace: dict[str, Any] | None, source: Source = "Original") -> bool:
        """Whether `obj` (in `namespace`, the Namespace object if known) is in scope; `MatchError` if undecidable."""
        metadata = obj.get("metadata") or {}
        group, _, kind = group_version_kind(obj)
        is_namespace = kind == "Namespace" and group == ""
        obj_namespace = str(metadata.get("namespace") or "")
        ns_name = ((namespace or {}).get("metadata") or {}).get("name") or obj_namespace
        return (
            self.kinds_match(group, kind)
            and self._scope_match(is_namespace, bool(obj_namespace) or namespace is not None)
            and self._namespaces_match(str(metadata.get("name") or "") if is_namespace else ns_name)
            and (self.label_selector is None or self.label_selector.matches(_labels(metadata)))
            and self._namespace_selector_match(obj, is_namespace, namespace, obj_namespace)
            and (not self.name or wildcard_matches(self.name, str(metadata.get("name") or "")))
            and (self.source == "All" or self.source == source)
        )

    def kinds_match(self, group: str, kind: str) -> bool:
        """Whether `match.kinds` takes objects of this API group and kind (the cheap test, indexable by kind)."""
        if not self.kinds:
            return True
        for groups, kinds in self.kinds:
            if (not kinds or "*" in kinds or kind in kinds) and (not groups or "*" in groups or group in groups):
                return True
        return False

    def _scope_match(self, is_namespace: bool, has_namespace: bool) -> bool:
        if self.scope == "Cluster":
            return is_namespace or not has_namespace
        if self.scope == "Namespaced":
            return not is_namespace and has_namespace
        return True  # "*" and, as in Gatekeeper, anything unrecognised

    def _namespaces_match(self, namespace: str) -> bool:
        # Without a namespace (a cluster-scoped object other than a Namespace) neither list can rule it out.
        if not namespace:
            return True
        if self.namespaces and not any(wildcard_matches(p, namespace) for p in self.namespaces):
            return False
        return not any(wildcard_matches(p, namespace) for p in self.excluded_namespaces)

    def _namespace_selector_match(
        self, obj: dict[str, Any], is_namespace: bool, namespace: dict[str, Any] | None, obj_namespace: str
    ) -> bool:
        selector = self.namespace_selector
        if selector is None:
            return True
        if is_namespace:
            return selector.matches(_labels(obj.get("metadata") or {}))
        if namespace is None and not obj_namespace:
            return True  # cluster-scoped objects are not ruled out by a namespace selector
        if namespace is None:
            raise MatchError(f"namespaceSelector needs Namespace {obj_namespace!r}, which is not known")
        return selector.matches(_labels(namespace.get("metadata") or {}))


@dataclass(frozen=True)
class Constraint:
    kind: str
    name: str
    match: Match
    parameters: dict[str, Any] = field(default_factory=dict)
    enforcement_action: EnforcementAction = EnforcementAction.DENY
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> Constraint:
        api_version = str(manifest.get("apiVersion", ""))
        kind = str(manifest.get("kind") or "")
        name = str((manifest.get("metadata") or {}).get("name") or "")
        where = f"{kind or '?'}/{name or '?'}"
        if api_version.split("/")[0] != API_GROUP:
            raise ConstraintError(f"{where}: apiVersion {api_version!r} is not {API_GROUP}/<version>")
        if not kind or not name:
            raise ConstraintError(f"{where}: a constraint needs a kind and metadata.name")
        spec = manifest.get("spec") or {}
        if not isinstance(spec, dict):
            raise ConstraintError(f"{where}: spec must be an object")
        action = str(spec.get("enforcementAction") or EnforcementAction.DENY)
        try:
            enforcement = EnforcementAction(action)
        except ValueError:
            raise ConstraintError(f"{where}: enforcementAction {action!r} is not deny, dryrun or warn") from None
        parameters = spec.get("parameters")
        if parameters is None:
            parameters = {}
        match = Match.parse(f"{where}: spec.match", spec.get("match"))
        return cls(kind, name, match, parameters, enforcement, manifest)


def _labels(metadata: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}


def group_version_kind(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(group, version, kind) from apiVersion and kind; the core group is ""."""
    api_version = str(obj.get("apiVersion") or "")
    group, _, version = api_version.rpartition("/")
    return group, version, str(obj.get("kind") or "")
