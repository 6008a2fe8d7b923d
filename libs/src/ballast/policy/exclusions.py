"""Namespaces left out of the policies, per process, as Gatekeeper's `Config.spec.match` says:

    spec:
      match:
        - excludedNamespaces: ["kube-*", "monitoring"]
          processes: ["audit", "webhook"]     # or "*"; also "sync" (data.inventory) and "mutation-webhook"

An object in an excluded namespace is not judged by the constraints at admission or on the bus ("webhook"), not
audited ("audit") and not kept in `data.inventory` ("sync"). A Namespace object counts as in the namespace it names.
A pattern is a name, or a name with `*` at its start or its end (a suffix or prefix), as in Gatekeeper.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ballast.policy.documents import DocumentError

PROCESSES = frozenset(("audit", "webhook", "sync", "mutation-webhook", "*"))


@dataclass(frozen=True)
class Exclusion:
    processes: frozenset[str]
    namespaces: tuple[str, ...]  # exact names and `prefix*` / `*suffix` patterns

    def excludes(self, process: str, namespace: str) -> bool:
        if process not in self.processes and "*" not in self.processes:
            return False
        return any(_matches(pattern, namespace) for pattern in self.namespaces)


def _matches(pattern: str, namespace: str) -> bool:
    if pattern.endswith("*"):
        return namespace.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return namespace.endswith(pattern[1:])
    return namespace == pattern


def config_exclusions(config: dict[str, Any]) -> list[Exclusion]:
    """The exclusions of a Gatekeeper `Config` (`spec.match`); DocumentError naming the entry for a bad one."""
    entries = (config.get("spec") or {}).get("match") or []
    if not isinstance(entries, list):
        raise DocumentError("Config spec.match must be a list of {excludedNamespaces, processes}")
    found = []
    for index, entry in enumerate(entries):
        where = f"Config spec.match[{index}]"
        if not isinstance(entry, dict):
            raise DocumentError(f"{where} must be a mapping of excludedNamespaces and processes")
        namespaces, processes = entry.get("excludedNamespaces") or [], entry.get("processes") or []
        if not isinstance(namespaces, list) or not all(isinstance(n, str) and n for n in namespaces):
            raise DocumentError(f"{where}.excludedNamespaces must be a list of namespace names or patterns")
        for pattern in namespaces:
            if "*" in pattern.strip("*") or pattern == "*" or pattern.count("*") > 1:
                raise DocumentError(
                    f"{where}.excludedNamespaces: {pattern!r}: a wildcard only at the start or the end of a name"
                )
        if not isinstance(processes, list) or not processes:
            raise DocumentError(f"{where}.processes must name at least one of {', '.join(sorted(PROCESSES))}")
        unknown = [p for p in processes if p not in PROCESSES]
        if unknown:
            raise DocumentError(f"{where}.processes: {unknown!r}: not one of {', '.join(sorted(PROCESSES))}")
        found.append(Exclusion(frozenset(processes), tuple(namespaces)))
    return found


@dataclass(frozen=True)
class Exclusions:
    """Every exclusion of the policy files' Configs."""

    entries: tuple[Exclusion, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[Exclusion]) -> Exclusions:
        return cls(tuple(entries))

    def excludes(self, process: str, obj: dict[str, Any], namespace: str | None = None) -> bool:
        """Whether `obj` (or `namespace`, where the object names none) is left out of `process`."""
        if not self.entries:
            return False
        name = object_namespace(obj) or namespace or None
        return name is not None and any(entry.excludes(process, name) for entry in self.entries)


def object_namespace(obj: dict[str, Any]) -> str | None:
    """The namespace an object is in; for a Namespace, the one it is."""
    metadata = obj.get("metadata") or {}
    if obj.get("kind") == "Namespace" and obj.get("apiVersion") == "v1":
        return metadata.get("name") or None
    return metadata.get("namespace") or None
