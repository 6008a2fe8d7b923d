"""Sloth conformance: rules generated from Sloth's test inputs equal Sloth's goldens once both are parsed, its
`validate/good` specs load and its `validate/bad` ones are rejected naming the field and the rule.

The material is read from `../shared/conformance/sloth` beside the repository (or `$BALLAST_CONFORMANCE/sloth`):
see slo_conformance.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from slo_conformance import SLOTH, VERSION, conformance_file, rule_groups, sloth_golden

from ballast.slo import RuleOptions, document_rules, load_paths, render_rule_files
from ballast.slo.errors import SpecError

DAYS_30 = timedelta(days=30)


@pytest.mark.parametrize("name", ["base", "multifile"])
def test_generated_rules_equal_sloths_golden_after_parsing(name: str) -> None:
    loaded = load_paths([conformance_file(SLOTH / f"in-{name}.yaml")], DAYS_30)
    assert loaded.errors == []
    rendered = render_rule_files([document_rules(g, RuleOptions(version=VERSION)) for g in loaded.groups], VERSION)
    generated = rule_groups(rendered)
    golden = [group for document in sloth_golden(name) for group in document["groups"]]
    assert [g["name"] for g in generated] == [g["name"] for g in golden]
    assert generated == golden  # names, expressions (to the character), labels, annotations, order


def test_the_rules_of_every_spec_in_a_file_go_into_one_document_prometheus_reads_whole() -> None:
    loaded = load_paths([conformance_file(SLOTH / "in-multifile.yaml")], DAYS_30)
    rendered = render_rule_files([document_rules(g, RuleOptions(version=VERSION)) for g in loaded.groups], VERSION)
    assert len([d for d in yaml.safe_load_all(rendered) if d is not None]) == 1


@pytest.mark.parametrize(
    "file", sorted(p.name for p in (SLOTH / "validate" / "good").glob("*.yaml")) or ["good-aa.yaml"]
)
def test_every_good_spec_loads(file: str) -> None:
    loaded = load_paths([conformance_file(SLOTH / "validate" / "good" / file)], DAYS_30)
    assert loaded.errors == []
    assert loaded.groups
    assert all(len(group.slos) >= 1 for group in loaded.groups)


BAD = {
    # the three Sloth keeps for its directory-walk tests differ only in name
    "bad-aa.yaml": [(1, "slos[1].objective", "less than or equal to 100")],
    "bad-ab.yaml": [(1, "slos[1].objective", "less than or equal to 100")],
    "bad-ba.yaml": [(1, "slos[1].objective", "less than or equal to 100")],
    "bad-k8s.yaml": [(1, "spec.service", "at least 1 character")],
    "bad-multi-k8s.yaml": [
        (1, "spec.slos[0].alerting.name", "required unless both page and ticket alerts are disabled")
    ],
    "bad-multi.yaml": [(2, "slos[1].sli", "exactly one SLI type (events, raw or plugin) is required, found 0")],
    "bad-openslo.yaml": [(1, "spec.timeWindows[0].count", "28 days is not the 30-day SLO period")],
}


@pytest.mark.parametrize("file", sorted(BAD))
def test_every_bad_spec_is_rejected_naming_document_field_and_rule(file: str) -> None:
    path = conformance_file(SLOTH / "validate" / "bad" / file)
    loaded = load_paths([path], DAYS_30)
    found = [(e.document, e.field, e.rule) for e in loaded.errors]
    assert len(found) == len(BAD[file]), found
    for (document, field, rule), (want_document, want_field, want_rule) in zip(found, BAD[file], strict=True):
        assert (document, field) == (want_document, want_field)
        assert want_rule in rule
    assert all(isinstance(e, SpecError) and e.file == str(path) for e in loaded.errors)


def test_the_bad_directory_holds_exactly_the_cases_above() -> None:
    assert sorted(p.name for p in (SLOTH / "validate" / "bad").glob("*.yaml")) == sorted(BAD)


def test_a_bad_document_does_not_hide_the_good_one_beside_it() -> None:
    loaded = load_paths([conformance_file(SLOTH / "validate" / "bad" / "bad-multi-k8s.yaml")], DAYS_30)
    assert [(g.document, [s.id for s in g.slos]) for g in loaded.groups] == [(2, ["svc02-slo1", "svc02-slo02"])]
