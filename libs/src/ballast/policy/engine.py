"""The policy engine: ConstraintTemplates compiled by the real OPA, constraints matched here, verdicts as Gatekeeper's.

Each (review, matching constraint) pair is a check; all the checks of one call go to OPA in one request, each
evaluating its template's `violation` with `input = {"review", "parameters"}` as Gatekeeper's hook does (or, with
`split_at`, a call with many checks in two requests at once). If a request fails (an evaluation error in one
template), its checks are asked again one by one, and a check that fails on its own becomes a violation whose
message is the error, as in Gatekeeper (fail closed per constraint).

The request asks a rule of the engine's own module (`ENTRYPOINT`, loaded beside the templates) through OPA's data API,
not an ad hoc query: OPA keeps the prepared query of a data path until the policies change, where an ad hoc query is
parsed and compiled on every call (about half of OPA's time per decision with the general library loaded).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ballast.events.contracts.policy import EnforcementAction
from ballast.policy.constraints import Constraint, ConstraintError, MatchError, group_version_kind
from ballast.policy.expansion import ExpansionError, ExpansionTemplate
from ballast.policy.opa import OpaClient, OpaUnavailable, RegoError
from ballast.policy.review import Review, review_object
from ballast.policy.templates import ROOT, ConstraintTemplate, TemplateError

log = logging.getLogger(__name__)

# The values given to `with` are plain variables: OPA 1.22 reads a ref such as `check.parameters` there after input has
# been replaced (the local is rewritten to `input.checks[i]`), which finds nothing.
_CHECK = (
    "check := input.checks[i]; review := input.reviews[check.review]; parameters := check.parameters; "
    f"data.{ROOT}[check.kind].main.violation[v] "
    'with input as {"review": review, "parameters": parameters}'
)
_RESTORED = "ballast_engine/restored"  # a mark beside the policies: an OPA without it has forgotten them
ENTRYPOINT = "ballast/engine"  # the module (and data path) of the rules below
_ENTRYPOINT_MODULE = f"""package {ENTRYPOINT.replace("/", ".")}

violations := [[i, v] | {_CHECK}]

# gator gives every case an inventory of its own: the case's objects, or none.
violations_with_inventory := [[i, v] |
\tinventory := input.inventories[input.checks[i].review]
\t{_CHECK} with data.inventory as inventory
]
"""
VIOLATIONS = f"{ENTRYPOINT}/violations"
# `split_at`: from this many checks a decision's checks go to OPA as two requests at once, every other check in each.
# OPA evaluates one request on one core, and a Pod that ten of the general library's constraints match takes 2-3 ms;
# two requests can use two idle cores, at the cost of a second request's CPU. Off by default: on the shared 2-core
# machine it was measured (load 5-7) to gain nothing; it is for a quiet or bigger machine to measure.
_VIOLATIONS_WITH_INVENTORY = f"{ENTRYPOINT}/violations_with_inventory"


@dataclass(frozen=True)
class Violation:
    constraint: Constraint
    message: str
    enforcement_action: EnforcementAction
    details: Any = None
    expansion: str | None = None  # the ExpansionTemplate whose generated resource violated it


@dataclass(frozen=True)
class _Check:
    review: int  # index into the reviews sent
    owner: int  # index of the review the verdict belongs to (a generated resource's belongs to its workload)
    constraint: Constraint
    expansion: ExpansionTemplate | None


def inventory_document(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """`data.inventory` as Gatekeeper's sync lays it out: cluster[apiVersion][kind][name] and
    namespace[ns][apiVersion][kind][name]."""
    inventory: dict[str, Any] = {"cluster": {}, "namespace": {}}
    for obj in objects:
        metadata = obj.get("metadata") or {}
        api_version, kind, name = str(obj.get("apiVersion", "")), str(obj.get("kind", "")), str(metadata.get("name"))
        namespace = metadata.get("namespace")
        scope = inventory["namespace"].setdefault(namespace, {}) if namespace else inventory["cluster"]
        scope.setdefault(api_version, {}).setdefault(kind, {})[name] = obj
    return inventory


class PolicyEngine:
    """Templates, constraints and expansion templates, evaluated on an OPA (`client`); see the module docstring."""

    def __init__(
        self, client: OpaClient, expansions: Iterable[ExpansionTemplate] = (), *, split_at: int | None = None
    ) -> None:
        self.client = client
        self.split_at = split_at
        self.templates: dict[str, ConstraintTemplate] = {}
        self.constraints: dict[str, dict[str, Constraint]] = {}
        self.expansions: dict[str, ExpansionTemplate] = {e.name: e for e in expansions}
        self._inventory: dict[str, Any] | None = None
        self._entrypoint_loaded = False
        # (API group, kind) -> the constraints whose match.kinds take it: most constraints name a few kinds, and
        # testing every constraint's full match on every object was most of the gate's own time per decision.
        self._by_kind: dict[tuple[str, str], list[Constraint]] = {}

    async def _load_entrypoint(self) -> None:
        if not self._entrypoint_loaded:
            await self.client.put_policy(ENTRYPOINT, _ENTRYPOINT_MODULE)
            self._entrypoint_loaded = True

    # -- what is loaded ----------------------------------------------------------------------------------------------

    async def add_template(self, template: ConstraintTemplate) -> None:
        """Compiles the template's Rego in OPA; `TemplateError` with the compiler's message, and nothing changed, if
        OPA refuses it. A template of the same kind is replaced."""
        previous = self.templates.get(template.kind)
        try:
            await self._load_modules(template)
        except TemplateError:
            if previous is not None:
                await self._load_modules(previous)  # what was there before is what stays
            raise
        if previous is not None:  # a replaced template may have had more libs
            kept = {m.module_id for m in template.modules()}
            await self._unload([m.module_id for m in previous.modules() if m.module_id not in kept])
        self.templates[template.kind] = template
        self.constraints.setdefault(template.kind, {})
        self._by_kind.clear()

    async def _load_modules(self, template: ConstraintTemplate) -> None:
        modules = template.modules()
        pending = list(modules)
        loaded: list[str] = []
        last_error: RegoError | None = None
        # Libs may import one another in any order: load what compiles, then retry the rest while that helps.
        while pending:
            failed = []
            for module in pending:
                try:
                    await self.client.put_policy(module.module_id, module.source)
                    loaded.append(module.module_id)
                except RegoError as exc:
                    failed.append(module)
                    inserted = module.inserted_row
                    last_error = exc if inserted is None else exc.without_row(module.module_id, inserted)
            if len(failed) == len(pending):
                await self._unload(loaded)
                raise TemplateError(f"ConstraintTemplate {template.name!r}: {last_error}")
            pending = failed
        problem = await self._check_compiled(template, [m.module_id for m in modules])
        if problem is not None:
            await self._unload(loaded)
            raise TemplateError(f"ConstraintTemplate {template.name!r}: {problem}")

    async def _check_compiled(self, template: ConstraintTemplate, module_ids: list[str]) -> str | None:
        """Gatekeeper's own rules on compiled templates: the entry module defines `violation`, and the only data a
        template reads is `data.inventory` and its own libs."""
        own = ["ballast", "templates", template.kind]
        outside: set[str] = set()
        rules: set[str] = set()
        for module_id in module_ids:
            ast = await self.client.policy_ast(module_id)
            if module_id == module_ids[-1]:
                rules = {_rule_name(r.get("head", {})) for r in ast.get("rules", [])}
            for path in _data_refs(ast.get("rules", [])):
                if path[:1] != ["inventory"] and path[:3] != own:
                    outside.add("data." + ".".join(path))
        if "violation" not in rules:
            return "its Rego does not define violation"
        if outside:
            return (
                f"invalid data references (only data.inventory and the template's libs): {', '.join(sorted(outside))}"
            )
        return None

    async def _unload(self, module_ids: Iterable[str]) -> None:
        for module_id in module_ids:
            await self.client.delete_policy(module_id)

    async def remove_template(self, kind: str) -> None:
        template = self.templates.pop(kind, None)
        self.constraints.pop(kind, None)
        self._by_kind.clear()
        if template is not None:
            await self._unload(reversed([m.module_id for m in template.modules()]))

    def add_constraint(self, constraint: Constraint) -> None:
        if constraint.kind not in self.templates:
            raise ConstraintError(f"{constraint.key}: no ConstraintTemplate is loaded for kind {constraint.kind}")
        self.constraints[constraint.kind][constraint.name] = constraint
        self._by_kind.clear()

    def remove_constraint(self, kind: str, name: str) -> None:
        self.constraints.get(kind, {}).pop(name, None)
        self._by_kind.clear()

    def clear_constraints(self) -> None:
        self.constraints = {kind: {} for kind in self.templates}
        self._by_kind.clear()

    def _constraints_for(self, obj: dict[str, Any]) -> list[Constraint]:
        """The constraints whose match.kinds take `obj`'s group and kind, in the order they were loaded."""
        group, _, kind = group_version_kind(obj)
        found = self._by_kind.get((group, kind))
        if found is None:
            found = [
                c
                for constraints in self.constraints.values()
                for c in constraints.values()
                if c.match.kinds_match(group, kind)
            ]
            self._by_kind[(group, kind)] = found
        return found

    def add_expansion(self, expansion: ExpansionTemplate) -> None:
        self.expansions[expansion.name] = expansion

    async def set_inventory(self, objects: Iterable[dict[str, Any]]) -> None:
        """Replaces `data.inventory` (the objects referential templates look up)."""
        self._inventory = inventory_document(objects)
        await self.client.put_data("inventory", self._inventory)

    async def restore(self, client: OpaClient) -> None:
        """Loads everything into an OPA that knows nothing (a restarted one) before it is used, and marks it."""
        self.client = client
        self._entrypoint_loaded = False
        await self._load_entrypoint()
        for template in self.templates.values():
            await self._load_modules(template)
        if self._inventory is not None:
            await client.put_data("inventory", self._inventory)
        await client.put_data(_RESTORED, True)

    async def opa_lost_state(self) -> bool:
        """Whether the OPA no longer holds what `restore` gave it (an OPA run by someone else restarted)."""
        return not await self.client.query(f"data.{_RESTORED.replace('/', '.')} == true", {})

    # -- verdicts ----------------------------------------------------------------------------------------------------

    async def evaluate(
        self,
        objects: Sequence[dict[str, Any]],
        *,
        operation: str = "",
        namespaces: dict[str, dict[str, Any]] | None = None,
    ) -> list[list[Violation]]:
        """The violations of each object, with the pods its workloads create; `namespaces` by name, when known."""
        known = namespaces or {}
        reviews = [
            review_object(o, operation=operation, namespace=known.get((o.get("metadata") or {}).get("namespace", "")))
            for o in objects
        ]
        return await self.review(reviews)

    async def review(
        self,
        reviews: Sequence[Review],
        *,
        inventories: Sequence[dict[str, Any]] | None = None,
        expand: bool = True,
    ) -> list[list[Violation]]:
        """The violations of each review, in order. `inventories` (one per review) stand in for `data.inventory`.
        `expand=False` judges the objects alone (an audit, which finds the pods a workload made in the cluster)."""
        verdicts: list[list[Violation]] = [[] for _ in reviews]
        all_reviews, review_inventories, checks = self._plan(reviews, inventories, expand, verdicts)
        if checks:
            for check, result in zip(checks, await self._run(checks, all_reviews, review_inventories), strict=True):
                for found in result:
                    verdicts[check.owner].append(_violation(check, found))
        return verdicts

    def prepared_query(self, reviews: Sequence[Review]) -> list[tuple[str, dict[str, Any]]]:
        """The requests (data path, input) `review` sends OPA for these reviews, at once (none when no constraint
        matches): what a benchmark sends OPA straight to compare with the gate's own path."""
        verdicts: list[list[Violation]] = [[] for _ in reviews]
        all_reviews, _, checks = self._plan(reviews, None, True, verdicts)
        if not checks:
            return []
        parts = [checks] if self.split_at is None or len(checks) < self.split_at else _halves(checks)
        return [(VIOLATIONS, self._body(part, all_reviews, None)) for part in parts]

    def _plan(
        self,
        reviews: Sequence[Review],
        inventories: Sequence[dict[str, Any]] | None,
        expand: bool,
        verdicts: list[list[Violation]],
    ) -> tuple[list[Review], list[dict[str, Any]] | None, list[_Check]]:
        """The reviews with the resources their workloads generate, their inventories, and the (review, matching
        constraint) checks; a match that cannot be decided goes to `verdicts` as a violation."""
        all_reviews = list(reviews)
        review_inventories = list(inventories) if inventories is not None else None
        checks: list[_Check] = []
        for owner, review in enumerate(reviews):
            self._checks_for(owner, owner, review, None, checks, verdicts)
            for expansion in self.expansions.values() if expand else ():
                if review.object is None or not expansion.applies_to(review.object):
                    continue
                try:
                    generated = expansion.expand(review.object)
                except ExpansionError as exc:
                    log.warning("not expanded: %s", exc)
                    continue
                all_reviews.append(
                    review_object(
                        generated,
                        namespace=review.namespace,
                        operation=str(review.request.get("operation", "")),
                        source="Generated",
                    )
                )
                if review_inventories is not None:
                    review_inventories.append(review_inventories[owner])
                self._checks_for(len(all_reviews) - 1, owner, all_reviews[-1], expansion, checks, verdicts)
        return all_reviews, review_inventories, checks

    def _checks_for(
        self,
        index: int,
        owner: int,
        review: Review,
        expansion: ExpansionTemplate | None,
        checks: list[_Check],
        verdicts: list[list[Violation]],
    ) -> None:
        candidates = [o for o in (review.object, review.old_object) if o is not None]
        # The constraints that may take either object by kind, each once, in the order they were loaded (an update's
        # old and new objects are almost always of one kind, and then share one cached list).
        lists = [self._constraints_for(o) for o in candidates]
        possible = lists[0]
        if len(lists) > 1 and lists[1] is not lists[0]:
            either = {id(c) for found in lists for c in found}
            possible = [c for cs in self.constraints.values() for c in cs.values() if id(c) in either]
        for constraint in possible:
            try:
                # As Gatekeeper: the new or the old object in scope puts the request in scope.
                matched = any(constraint.match.matches(c, review.namespace, review.source) for c in candidates)
            except MatchError as exc:
                verdicts[owner].append(_violation(_Check(index, owner, constraint, expansion), {"msg": str(exc)}))
                continue
            if matched:
                checks.append(_Check(index, owner, constraint, expansion))

    async def _run(
        self, checks: list[_Check], reviews: list[Review], inventories: list[dict[str, Any]] | None
    ) -> list[list[dict[str, Any]]]:
        if self.split_at is None or len(checks) < self.split_at:
            return await self._run_part(checks, reviews, inventories, alone=len(checks) == 1)
        answers = await asyncio.gather(
            *(self._run_part(part, reviews, inventories, alone=False) for part in _halves(checks)),
            return_exceptions=True,
        )
        results: list[list[dict[str, Any]]] = [[] for _ in checks]
        for offset, answer in enumerate(answers):
            if isinstance(answer, BaseException):
                raise answer
            results[offset::2] = answer
        return results

    async def _run_part(
        self, checks: list[_Check], reviews: list[Review], inventories: list[dict[str, Any]] | None, *, alone: bool
    ) -> list[list[dict[str, Any]]]:
        try:
            return await self._query(checks, reviews, inventories)
        except OpaUnavailable:
            raise
        except RegoError:
            if alone:
                raise
        results = []
        for check in checks:
            try:
                results.append((await self._query([check], reviews, inventories))[0])
            except RegoError as exc:
                results.append([{"msg": str(exc)}])
        return results

    async def _query(
        self, checks: list[_Check], reviews: list[Review], inventories: list[dict[str, Any]] | None
    ) -> list[list[dict[str, Any]]]:
        body = self._body(checks, reviews, inventories)
        await self._load_entrypoint()
        found_all = await self.client.evaluate(VIOLATIONS if inventories is None else _VIOLATIONS_WITH_INVENTORY, body)
        results: list[list[dict[str, Any]]] = [[] for _ in checks]
        for index, found in found_all or []:
            if isinstance(found, dict) and "msg" in found:  # Gatekeeper's hook drops results without a msg
                results[index].append(found)
        return results

    @staticmethod
    def _body(checks: list[_Check], reviews: list[Review], inventories: list[dict[str, Any]] | None) -> dict[str, Any]:
        used = sorted({c.review for c in checks})
        position = {r: i for i, r in enumerate(used)}
        body: dict[str, Any] = {
            "reviews": [reviews[r].with_namespace() for r in used],
            "checks": [
                {"review": position[c.review], "kind": c.constraint.kind, "parameters": c.constraint.parameters}
                for c in checks
            ],
        }
        if inventories is not None:
            body["inventories"] = [inventories[r] for r in used]
        return body


def _halves(checks: list[_Check]) -> list[list[_Check]]:
    """Every other check in each half: a template's checks, and neighbouring costly ones, are spread over both."""
    return [checks[0::2], checks[1::2]]


def _rule_name(head: dict[str, Any]) -> str:
    return str(head.get("name") or (head.get("ref") or [{}])[0].get("value"))


def _data_refs(node: Any) -> Iterable[list[str]]:
    """The `data` paths a compiled AST refers to (a variable key as `[var]`)."""
    if isinstance(node, dict):
        value = node.get("value")
        if (
            node.get("type") == "ref"
            and isinstance(value, list)
            and value
            and value[0] == {"type": "var", "value": "data"}
        ):
            yield [str(t["value"]) if t.get("type") == "string" else "[var]" for t in value[1:]]
        for child in node.values():
            yield from _data_refs(child)
    elif isinstance(node, list):
        for child in node:
            yield from _data_refs(child)


def _violation(check: _Check, found: dict[str, Any]) -> Violation:
    message = found["msg"] if isinstance(found["msg"], str) else str(found["msg"])
    action = check.constraint.enforcement_action
    if check.expansion is not None:
        message = f"[Implied by {check.expansion.name}] {message}"
        action = check.expansion.enforcement_action or action
    return Violation(
        check.constraint, message, action, found.get("details"), check.expansion.name if check.expansion else None
    )


__all__ = ["PolicyEngine", "TemplateError", "Violation", "inventory_document"]
