"""`ballast slo generate|validate` with Sloth's flags, run in-process on Sloth's conformance inputs (read from
`../shared/conformance/sloth` or `$BALLAST_CONFORMANCE/sloth`: see slo_conformance.py) and on files of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from slo_conformance import SLOTH, conformance_file, rule_groups, sloth_golden

from ballast.cli.main import main

SEVEN_DAYS = """
apiVersion: sloth.slok.dev/v1
kind: AlertWindows
spec:
  sloPeriod: 7d
  page: {quick: {errorBudgetPercent: 8, shortWindow: 5m, longWindow: 1h},
         slow: {errorBudgetPercent: 12.5, shortWindow: 30m, longWindow: 6h}}
  ticket: {quick: {errorBudgetPercent: 20, shortWindow: 2h, longWindow: 1d},
           slow: {errorBudgetPercent: 42, shortWindow: 6h, longWindow: 3d}}
"""


def parsed(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def records(documents: list[Any]) -> list[dict[str, Any]]:
    return [rule for d in documents for g in d["groups"] for rule in g["rules"] if "record" in rule]


def test_generate_writes_sloths_rules_to_the_out_file(tmp_path: Path) -> None:
    out = tmp_path / "rules.yaml"
    assert main(["slo", "generate", "-i", str(conformance_file(SLOTH / "in-multifile.yaml")), "-o", str(out)]) == 0
    assert rule_groups(out.read_text()) == [group for d in sloth_golden("multifile") for group in d["groups"]]


def test_generate_without_out_prints_the_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slo", "generate", "--input", str(conformance_file(SLOTH / "in-base.yaml"))]) == 0
    assert rule_groups(capsys.readouterr().out) == sloth_golden("base")[0]["groups"]


def test_generate_a_directory_mirrors_it_file_by_file(tmp_path: Path) -> None:
    good = conformance_file(SLOTH / "validate" / "good")
    assert main(["slo", "generate", "-i", str(good), "-o", str(tmp_path / "out")]) == 0
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.yaml"))
    assert written == sorted(p.name for p in good.glob("*.yaml"))
    assert len(parsed(tmp_path / "out" / "good-multi-k8s.yaml")) == 2  # one rule document per spec document


def test_sloths_generate_flags(tmp_path: Path) -> None:
    spec = conformance_file(SLOTH / "in-base.yaml")
    out = tmp_path / "rules.yaml"
    flags = ["-l", "cmd=gen", "--extra-labels", "env=prod", "--disable-alerts", "--default-slo-period", "28d"]
    assert main(["slo", "generate", "-i", str(spec), "-o", str(out), *flags]) == 0
    documents = parsed(out)
    assert not [g for d in documents for g in d["groups"] if "alerts" in g["name"]]
    assert all(r["labels"]["cmd"] == "gen" and r["labels"]["env"] == "prod" for r in records(documents))
    assert "slo:sli_error:ratio_rate4w" in {r["record"] for r in records(documents)}

    assert main(["slo", "generate", "-i", str(spec), "-o", str(out), "--disable-recordings"]) == 0
    assert records(parsed(out)) == []

    (tmp_path / "windows").mkdir()
    (tmp_path / "windows" / "7d.yaml").write_text(SEVEN_DAYS)
    custom = ["--slo-period-windows-path", str(tmp_path / "windows"), "--default-slo-period", "7d"]
    assert main(["slo", "generate", "-i", str(spec), "-o", str(out), *custom]) == 0
    alerts = [r for d in parsed(out) for g in d["groups"] for r in g["rules"] if "alert" in r]
    assert "(13.44 * 0.0009999999999999432)" in alerts[0]["expr"]


def test_validate_exit_codes_and_errors_naming_file_document_and_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slo", "validate", "-i", str(conformance_file(SLOTH / "validate" / "good"))]) == 0
    assert "valid (7 files" in capsys.readouterr().out

    bad = SLOTH / "validate" / "bad"
    assert main(["slo", "validate", "-i", str(bad)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert f"{bad / 'bad-multi.yaml'}: document 2: slos[1].sli: exactly one SLI type" in "\n".join(lines)
    assert len(lines) == 7  # one error per bad file


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slo", "validate", "-i", str(tmp_path / "missing.yaml")]) == 2
    assert main(["slo", "generate", "-i", str(tmp_path)]) == 2
    assert "a directory input needs --out DIR" in capsys.readouterr().err
    spec = str(conformance_file(SLOTH / "in-base.yaml"))
    assert main(["slo", "validate", "-i", spec, "--default-slo-period", "7d"]) == 1
    assert "no alert windows for a 1w period (have 4w, 30d)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["slo", "generate", "-i", spec, "-l", "not a label"])
    assert exit_info.value.code == 2


def test_a_prometheus_service_level_becomes_a_prometheus_rule_with_sloths_rules(tmp_path: Path) -> None:
    out = tmp_path / "rules.yaml"
    assert (
        main(
            [
                "slo",
                "generate",
                "-i",
                str(conformance_file(SLOTH / "validate" / "good" / "good-k8s.yaml")),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    (rule,) = parsed(out)
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"] == {
        "name": "svc",
        "namespace": "test-ns",
        "labels": {"app.kubernetes.io/component": "SLO", "app.kubernetes.io/managed-by": "sloth"},
    }
    # the same SLOs as in-base.yaml: the same rules, with the spec format Sloth's info series names
    (golden,) = sloth_golden("base")
    for group in golden["groups"]:
        for rule_ in group["rules"]:
            if rule_.get("record") == "sloth_slo_info":
                rule_["labels"] |= {"sloth_mode": "cli-gen-k8s", "sloth_spec": "sloth.slok.dev/v1"}
    assert rule["spec"]["groups"] == golden["groups"]


def test_a_document_left_without_rules_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = conformance_file(SLOTH / "in-base.yaml")
    flags = ["--disable-alerts", "--disable-recordings"]
    assert main(["slo", "generate", "-i", str(spec), "-o", str(tmp_path / "rules.yaml"), *flags]) == 1
    assert "document 1: no rules: every alert and recording is disabled" in capsys.readouterr().err
