"""promtool on the rules `ballast slo` generates: `promtool check rules` accepts every generated file, and the
`promtool test rules` suites in promtool/ show each tier firing and clearing when the SRE Workbook table predicts.

promtool is the one `make tools` builds. Sloth's conformance inputs are read from `../shared/conformance/sloth`
beside the repository, or from `$BALLAST_CONFORMANCE/sloth`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from ballast.local.tools import ToolsMissing, tool
from ballast.slo import (
    Alerting,
    AlertTier,
    EventRatioSli,
    LatencySli,
    RatioTimeslices,
    RawErrorRatioSli,
    RollingWindow,
    RuleDocument,
    RuleGroup,
    RuleOptions,
    ServiceLevelObjective,
    SpecFormat,
    Timeslices,
    WindowCatalogue,
    document_rules,
    load_paths,
    render_rule_files,
    slo_rule_groups,
)

SUITES = Path(__file__).parent / "promtool"
CONFORMANCE = Path(
    os.environ.get("BALLAST_CONFORMANCE") or Path(__file__).resolve().parents[4] / "shared" / "conformance"
)
VERSION = version("ballast-libs")
SLOTH = (SpecFormat.SLOTH_PROMETHEUS, RuleOptions(version=VERSION))
DAYS_30 = timedelta(days=30)

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


@pytest.fixture(scope="session")
def promtool() -> Path:
    try:
        return tool("promtool")
    except ToolsMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=240, check=False)


def kiosk(**changes: object) -> ServiceLevelObjective:
    fields: dict[str, object] = {
        "service": "kiosk",
        "name": "requests",
        "objective": 99.9,
        "window": RollingWindow(length=DAYS_30),
        "sli": EventRatioSli(
            error_query='sum(rate(http_requests_total{job="kiosk",code=~"5.."}[{{.window}}]))',
            total_query='sum(rate(http_requests_total{job="kiosk"}[{{.window}}]))',
        ),
        "alerting": Alerting(name="KioskRequestsBurn", page=AlertTier(), ticket=AlertTier()),
    }
    return ServiceLevelObjective.model_validate(fields | changes)


def write_rules(path: Path, groups: list[RuleGroup]) -> int:
    """Plain rule groups, also for PrometheusServiceLevel specs: promtool reads rule files, not Kubernetes objects."""
    path.write_text(render_rule_files([RuleDocument(groups)], VERSION))
    return sum(len(group.rules) for group in groups)


def test_promtool_accepts_every_generated_rule_file(promtool: Path, tmp_path: Path) -> None:
    sloth = CONFORMANCE / "sloth"
    specs = [sloth / "in-base.yaml", sloth / "in-multifile.yaml", *sorted((sloth / "validate" / "good").glob("*.yaml"))]
    assert all(spec.exists() for spec in specs), f"Sloth's inputs are missing under {sloth}: set BALLAST_CONFORMANCE"
    (tmp_path / "windows").mkdir()
    (tmp_path / "windows" / "7d.yaml").write_text(SEVEN_DAYS)
    variants = {
        "30d": (DAYS_30, RuleOptions(version=VERSION)),
        "28d": (timedelta(days=28), RuleOptions(version=VERSION, extra_labels={"cmd": "test"})),
        "7d": (
            timedelta(days=7),
            RuleOptions(version=VERSION, windows=WindowCatalogue.from_directory(tmp_path / "windows")),
        ),
        "no-alerts": (DAYS_30, RuleOptions(version=VERSION, alerts=False)),
    }
    expected: dict[str, int] = {}
    for variant, (period, options) in variants.items():
        # Sloth's openslo/v1alpha reading requires the SLO's 30-day window to be the period generated for
        inputs = [spec for spec in specs if period == DAYS_30 or spec.name != "good-openslo.yaml"]
        loaded = load_paths([*inputs, SUITES / "shop-slo.yaml"], period)
        assert loaded.errors == []
        for group in loaded.groups:  # one file per document: a rule file is one YAML document
            name = f"{variant}-{Path(group.file).stem}-{group.document}.rules.yaml"
            expected[name] = write_rules(tmp_path / name, document_rules(group, options).groups)
    own = {
        "latency": kiosk(sli=LatencySli(histogram="http_request_duration_seconds", selector='job="kiosk"', le="0.25")),
        "min-rate": kiosk(min_request_rate=0.5),
        "good-events": kiosk(
            sli=EventRatioSli(good_query="sum(rate(ok[{{.window}}]))", total_query="sum(rate(all[{{.window}}]))")
        ),
        "raw": kiosk(sli=RawErrorRatioSli(error_ratio_query="1 - avg_over_time(up[{{.window}}])")),
        "tier-names": kiosk(alerting=Alerting(page=AlertTier(name="KioskPage"), ticket=AlertTier(name="KioskTicket"))),
    }
    for name, objective in own.items():
        expected[f"{name}.rules.yaml"] = write_rules(
            tmp_path / f"{name}.rules.yaml",
            slo_rule_groups(objective, SpecFormat.SLOTH_PROMETHEUS, RuleOptions(version=VERSION)),
        )

    checked = run(promtool, "check", "rules", *sorted(expected), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for name, rules in expected.items():
        assert f"Checking {name}\n  SUCCESS: {rules} rules found" in checked.stdout, checked.stdout
    assert "lint" not in checked.stdout + checked.stderr


def test_promtool_reads_every_spec_of_a_multi_spec_file(promtool: Path, tmp_path: Path) -> None:
    """Prometheus reads one YAML document per rule file; Sloth's document per spec would lose svc02's 32 rules."""
    both = load_paths([CONFORMANCE / "sloth" / "in-multifile.yaml"], DAYS_30).groups
    documents = [document_rules(group, RuleOptions(version=VERSION)) for group in both]
    (tmp_path / "multifile.rules.yaml").write_text(render_rule_files(documents, VERSION))
    # the input gives both services' alerts the same name and labels, which the duplicate-rules lint flags
    checked = run(promtool, "check", "rules", "--lint=none", "multifile.rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 64 rules found" in checked.stdout
    assert "Multiple document yaml rules files are not supported" not in checked.stderr


def shop_rules(directory: Path) -> None:
    loaded = load_paths([SUITES / "shop-slo.yaml"], DAYS_30)
    assert loaded.errors == []
    (group,) = loaded.groups
    write_rules(directory / "shop-slo.rules.yaml", document_rules(group, RuleOptions(version=VERSION)).groups)


@pytest.mark.timeout(300)
def test_tiers_fire_and_clear_when_the_workbook_table_says(promtool: Path, tmp_path: Path) -> None:
    shop_rules(tmp_path)
    shutil.copy(SUITES / "burn-tiers.test.yaml", tmp_path)
    tested = run(promtool, "test", "rules", "burn-tiers.test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.mark.timeout(300)
def test_the_suite_fails_when_a_tier_is_expected_a_minute_early(promtool: Path, tmp_path: Path) -> None:
    shop_rules(tmp_path)
    suite = yaml.safe_load((SUITES / "burn-tiers.test.yaml").read_text())
    first = suite["tests"][0]
    first["alert_rule_test"] = [case for case in first["alert_rule_test"] if case["eval_time"] == "72h9m"]
    first["alert_rule_test"][0]["eval_time"] = "72h8m"  # the page fires at 8.64 minutes, not before
    suite["tests"] = [first]
    (tmp_path / "early.test.yaml").write_text(yaml.safe_dump(suite))
    tested = run(promtool, "test", "rules", "early.test.yaml", cwd=tmp_path)
    assert tested.returncode != 0
    output = tested.stdout + tested.stderr
    assert "alertname: ShopRequestsBurn, time: 3d8m" in output
    assert "got:[]" in output


@pytest.mark.timeout(300)
def test_a_minimum_request_rate_keeps_low_traffic_silent(promtool: Path, tmp_path: Path) -> None:
    groups = slo_rule_groups(kiosk(min_request_rate=1), SpecFormat.SLOTH_PROMETHEUS, RuleOptions(version=VERSION))
    write_rules(tmp_path / "low-traffic.rules.yaml", groups)
    shutil.copy(SUITES / "low-traffic.test.yaml", tmp_path)
    tested = run(promtool, "test", "rules", "low-traffic.test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.timeout(300)
def test_slice_budgets_record_the_share_of_bad_slices_and_the_mean_slice_ratio(promtool: Path, tmp_path: Path) -> None:
    minute = timedelta(minutes=1)

    def sliced(name: str, **changes: object) -> ServiceLevelObjective:  # an alert name of its own: no duplicate
        return kiosk(name=name, alerting=Alerting(name=f"Kiosk{name.title()}Burn", page=AlertTier()), **changes)

    # One-minute slices over 30 days: promtool accepts the rules (the subquery has 43,200 steps, which promtool's
    # unit-test engine, limited to 10,000 samples a query against Prometheus's 50 million, will not run).
    monthly = [
        *slo_rule_groups(sliced("timeslices", budgeting=Timeslices(slice_window=minute, slice_target=0.9)), *SLOTH),
        *slo_rule_groups(sliced("ratio", budgeting=RatioTimeslices(slice_window=minute)), *SLOTH),
    ]
    rules = write_rules(tmp_path / "monthly.rules.yaml", monthly)
    checked = run(promtool, "check", "rules", "monthly.rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {rules} rules found" in checked.stdout
    # Five-minute slices over 7 days (2,016 steps) in the unit test.
    (tmp_path / "windows").mkdir()
    (tmp_path / "windows" / "7d.yaml").write_text(SEVEN_DAYS)
    weekly = RuleOptions(version=VERSION, windows=WindowCatalogue.from_directory(tmp_path / "windows"))
    week, five = RollingWindow(length=timedelta(days=7)), 5 * minute
    groups = [
        *slo_rule_groups(
            sliced("timeslices", window=week, budgeting=Timeslices(slice_window=five, slice_target=0.9)),
            SpecFormat.SLOTH_PROMETHEUS,
            weekly,
        ),
        *slo_rule_groups(
            sliced("ratio", window=week, budgeting=RatioTimeslices(slice_window=five)),
            SpecFormat.SLOTH_PROMETHEUS,
            weekly,
        ),
    ]
    write_rules(tmp_path / "timeslices.rules.yaml", groups)
    shutil.copy(SUITES / "timeslices.test.yaml", tmp_path)
    tested = run(promtool, "test", "rules", "timeslices.test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
