"""The ServiceLevelObjective CRD's CEL rules (`x-kubernetes-validations`), checked on an object read from a file.

The API server checks them on every create and update. `ballast slo validate` and `generate` read files no API server
has seen, so each rule is mirrored here in Python as the CRD states it: the schema node it is declared on, the CEL
expression, the message and the field it names. A test holds this table to the CRD (the same nodes, expressions,
messages and fields), so neither changes without the other, and checks that a file and the API server refuse the
same objects naming the same fields.

Each check sees its node as the API server's CEL sees it: after the CRD's defaults (a window is Rolling, budgeting is
Occurrences and a tier is enabled unless they say otherwise); a field set to null counts as absent, as the API server
prunes it. A node of the wrong type is left to the schema check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

# CEL's `matches` finds the pattern anywhere in the string (RE2), as `re.search` does.
_WINDOW_PLACEHOLDER: Final = re.compile(r"\{\{ *\.window *\}\}")
_FIXED_LENGTH: Final = re.compile(r"[mhdw]$")


def _has(node: Mapping[str, Any], name: str) -> bool:
    return node.get(name) is not None


def _text(node: Mapping[str, Any], name: str) -> str | None:
    value = node.get(name)
    return value if isinstance(value, str) else None


def _placeholder(name: str) -> Callable[[Mapping[str, Any]], bool]:
    def holds(node: Mapping[str, Any]) -> bool:
        query = _text(node, name)
        return query is None or _WINDOW_PLACEHOLDER.search(query) is not None

    return holds


def _calendar(window: Mapping[str, Any]) -> bool:
    return bool(window.get("type", "Rolling") == "Calendar")


def _fixed_length(window: Mapping[str, Any]) -> bool:
    duration = _text(window, "duration")
    return _calendar(window) or duration is None or _FIXED_LENGTH.search(duration) is not None


def _one_sli_kind(sli: Mapping[str, Any]) -> bool:
    return sum(_has(sli, kind) for kind in ("eventRatio", "rawErrorRatio", "latency", "webAppAvailability")) == 1


def _tier_named(tier: str) -> Callable[[Mapping[str, Any]], bool]:
    def holds(alerting: Mapping[str, Any]) -> bool:
        own = alerting.get(tier)
        own = own if isinstance(own, Mapping) else {}  # defaulted to {}: enabled
        return _has(alerting, "name") or _has(own, "name") or own.get("enabled", True) is False

    return holds


def _budgeting(spec: Mapping[str, Any]) -> str:
    method = spec.get("budgetingMethod")
    return method if isinstance(method, str) else "Occurrences"


def _has_target(spec: Mapping[str, Any]) -> bool:
    slices = spec.get("timeSlices")
    return _budgeting(spec) != "Timeslices" or not isinstance(slices, Mapping) or _has(slices, "target")


def _rate_has_total(spec: Mapping[str, Any]) -> bool:
    sli = spec.get("sli")
    sli = sli if isinstance(sli, Mapping) else {}
    return not _has(spec, "minRequestRate") or _has(sli, "eventRatio") or _has(sli, "latency")


@dataclass(frozen=True)
class CrdRule:
    node: str  # the schema node the rule is declared on, e.g. "spec.window"
    rule: str  # the CEL expression, as the CRD holds it
    message: str
    field_path: str  # the CRD's fieldPath (".duration"); "" names the node itself
    holds: Callable[[Mapping[str, Any]], bool]  # the rule on the node's value

    @property
    def field(self) -> str:
        """The field a refusal names, as the API server names it."""
        return self.node + self.field_path


_PLACEHOLDER_RULE: Final = "{name}.matches('\\\\{{\\\\{{ *\\\\.window *\\\\}}\\\\}}')"
_PLACEHOLDER: Final = "must contain the {{.window}} placeholder"

RULES: Final[tuple[CrdRule, ...]] = (
    CrdRule(
        "spec",
        "!has(self.minRequestRate) || has(self.sli.eventRatio) || has(self.sli.latency)",
        "needs an SLI with a total request rate (eventRatio or latency)",
        ".minRequestRate",
        _rate_has_total,
    ),
    CrdRule(
        "spec",
        "!has(self.budgetingMethod) || self.budgetingMethod == 'Occurrences' || has(self.timeSlices)",
        "Timeslices and RatioTimeslices budgeting need timeSlices.window",
        ".timeSlices",
        lambda spec: _budgeting(spec) == "Occurrences" or _has(spec, "timeSlices"),
    ),
    CrdRule(
        "spec",
        "!has(self.budgetingMethod) || self.budgetingMethod != 'Timeslices' || !has(self.timeSlices)"
        " || has(self.timeSlices.target)",
        "Timeslices budgeting needs the good ratio a slice must reach",
        ".timeSlices.target",
        _has_target,
    ),
    CrdRule(
        "spec",
        "(has(self.budgetingMethod) && self.budgetingMethod != 'Occurrences') || !has(self.timeSlices)",
        "only Timeslices and RatioTimeslices budgeting count in slices",
        ".timeSlices",
        lambda spec: _budgeting(spec) != "Occurrences" or not _has(spec, "timeSlices"),
    ),
    CrdRule(
        "spec.window",
        "!has(self.type) || self.type == 'Calendar' || self.duration.matches('[mhdw]$')",
        "a rolling window has a fixed length in m, h, d or w; use type Calendar for M, Q or Y",
        ".duration",
        _fixed_length,
    ),
    CrdRule(
        "spec.window",
        "(has(self.type) && self.type == 'Calendar') || !has(self.start)",
        "only a Calendar window has a start",
        ".start",
        lambda window: _calendar(window) or not _has(window, "start"),
    ),
    CrdRule(
        "spec.window",
        "(has(self.type) && self.type == 'Calendar') || !has(self.timeZone)",
        "only a Calendar window has a time zone",
        ".timeZone",
        lambda window: _calendar(window) or not _has(window, "timeZone"),
    ),
    CrdRule(
        "spec.sli",
        "[has(self.eventRatio), has(self.rawErrorRatio), has(self.latency), has(self.webAppAvailability)]"
        ".filter(k, k).size() == 1",
        "exactly one SLI kind is required (eventRatio, rawErrorRatio, latency or webAppAvailability)",
        "",
        _one_sli_kind,
    ),
    CrdRule(
        "spec.sli.eventRatio",
        "has(self.errorQuery) != has(self.goodQuery)",
        "exactly one of errorQuery and goodQuery is required",
        "",
        lambda ratio: _has(ratio, "errorQuery") != _has(ratio, "goodQuery"),
    ),
    CrdRule(
        "spec.sli.eventRatio",
        "!has(self.errorQuery) || " + _PLACEHOLDER_RULE.format(name="self.errorQuery"),
        _PLACEHOLDER,
        ".errorQuery",
        _placeholder("errorQuery"),
    ),
    CrdRule(
        "spec.sli.eventRatio",
        "!has(self.goodQuery) || " + _PLACEHOLDER_RULE.format(name="self.goodQuery"),
        _PLACEHOLDER,
        ".goodQuery",
        _placeholder("goodQuery"),
    ),
    CrdRule(
        "spec.sli.eventRatio",
        _PLACEHOLDER_RULE.format(name="self.totalQuery"),
        _PLACEHOLDER,
        ".totalQuery",
        _placeholder("totalQuery"),
    ),
    CrdRule(
        "spec.sli.eventRatio",
        "!has(self.errorQuery) || self.errorQuery != self.totalQuery",
        "must differ from errorQuery",
        ".totalQuery",
        lambda ratio: not _has(ratio, "errorQuery") or ratio["errorQuery"] != ratio.get("totalQuery"),
    ),
    CrdRule(
        "spec.sli.rawErrorRatio",
        _PLACEHOLDER_RULE.format(name="self.errorRatioQuery"),
        _PLACEHOLDER,
        ".errorRatioQuery",
        _placeholder("errorRatioQuery"),
    ),
    CrdRule(
        "spec.alerting",
        "has(self.name) || (has(self.page) && has(self.page.name))"
        " || (has(self.page) && has(self.page.enabled) && !self.page.enabled)",
        "the page tier is enabled but has no alert name (set alerting.name or alerting.page.name)",
        ".page.name",
        _tier_named("page"),
    ),
    CrdRule(
        "spec.alerting",
        "has(self.name) || (has(self.ticket) && has(self.ticket.name))"
        " || (has(self.ticket) && has(self.ticket.enabled) && !self.ticket.enabled)",
        "the ticket tier is enabled but has no alert name (set alerting.name or alerting.ticket.name)",
        ".ticket.name",
        _tier_named("ticket"),
    ),
)


def _node(obj: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The value at a dotted path when it is an object (a rule on an absent node does not run)."""
    node: Any = obj
    for name in path.split("."):
        node = node.get(name) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else None


def broken_rules(obj: Mapping[str, Any]) -> Iterator[CrdRule]:
    """The rules an object (apiVersion, kind, metadata, spec) breaks, in the CRD's order."""
    for rule in RULES:
        node = _node(obj, rule.node)
        if node is not None and not rule.holds(node):
            yield rule
