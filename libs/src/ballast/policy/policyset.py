"""Policies from files: a directory (or files) of ConstraintTemplates, constraints and ExpansionTemplates, loaded
into an engine one by one, so that one broken template costs only itself and its constraints."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ballast.policy.constraints import API_GROUP as CONSTRAINTS_GROUP
from ballast.policy.constraints import Constraint, ConstraintError
from ballast.policy.documents import DocumentError, load_documents
from ballast.policy.engine import PolicyEngine
from ballast.policy.exclusions import Exclusion, config_exclusions
from ballast.policy.expansion import ExpansionError, ExpansionTemplate
from ballast.policy.templates import ConstraintTemplate, TemplateError

SUFFIXES = (".yaml", ".yml", ".json")
CONFIG_GROUP = "config.gatekeeper.sh"


def sync_only(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The kinds Gatekeeper's `Config` syncs into `data.inventory` (`spec.sync.syncOnly`), as (apiVersion, kind)."""
    entries = (((config.get("spec") or {}).get("sync") or {}).get("syncOnly")) or []
    kinds = []
    for index, entry in enumerate(entries):
        version, kind = (entry or {}).get("version"), (entry or {}).get("kind")
        if not version or not kind:
            raise DocumentError(f"Config spec.sync.syncOnly[{index}] needs a version and a kind")
        group = (entry or {}).get("group") or ""
        kinds.append((f"{group}/{version}" if group else str(version), str(kind)))
    return kinds


@dataclass
class PolicySet:
    templates: list[ConstraintTemplate] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    expansions: list[ExpansionTemplate] = field(default_factory=list)
    sync: list[tuple[str, str]] = field(default_factory=list)  # (apiVersion, kind) a Config's syncOnly names
    exclusions: list[Exclusion] = field(default_factory=list)  # a Config's spec.match
    problems: list[str] = field(default_factory=list)  # what could not be read or loaded, one line each


def policy_files(paths: Iterable[Path]) -> list[Path]:
    """The YAML/JSON files under each path (a file stands for itself), in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise DocumentError(f"{path}: no such file or directory")
    return found


def read_policies(paths: Iterable[Path]) -> PolicySet:
    policies = PolicySet()
    for path in policy_files(paths):
        try:
            documents = load_documents(path)
        except DocumentError as exc:
            policies.problems.append(str(exc))
            continue
        for document in documents:
            kind = document.get("kind")
            group = str(document.get("apiVersion", "")).split("/")[0]
            try:
                if kind == "ConstraintTemplate":
                    policies.templates.append(ConstraintTemplate.from_manifest(document))
                elif kind == "ExpansionTemplate":
                    policies.expansions.append(ExpansionTemplate.from_manifest(document))
                elif kind == "Config" and group == CONFIG_GROUP:
                    policies.sync.extend(sync_only(document))
                    policies.exclusions.extend(config_exclusions(document))
                elif group == CONSTRAINTS_GROUP:
                    policies.constraints.append(Constraint.from_manifest(document))
                else:
                    raise DocumentError(
                        f"{document.get('apiVersion')} {kind} is not a ConstraintTemplate, "
                        "constraint, ExpansionTemplate or Config"
                    )
            except (DocumentError, TemplateError, ConstraintError, ExpansionError) as exc:
                policies.problems.append(f"{path}: {exc}")
    return policies


async def load_policies(engine: PolicyEngine, policies: PolicySet) -> list[str]:
    """Loads what can be loaded; the problems (the set's own and the refusals, with OPA's messages) are returned."""
    problems = list(policies.problems)
    for template in policies.templates:
        try:
            await engine.add_template(template)
        except TemplateError as exc:
            problems.append(str(exc))
    for constraint in policies.constraints:
        try:
            engine.add_constraint(constraint)
        except ConstraintError as exc:
            problems.append(str(exc))
    for expansion in policies.expansions:
        engine.add_expansion(expansion)
    return problems
