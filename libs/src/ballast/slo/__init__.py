"""SLOs as a library: the model, the error-budget math, spec loaders (Sloth, OpenSLO) and Sloth-compatible rules.

Pure logic, no I/O beyond reading spec files: the `ballast slo` command and the slo-engine service share it.
"""

from ballast.slo.alert_windows import (
    AlertWindows,
    BurnWindow,
    MissingAlertWindows,
    TierWindows,
    WindowCatalogue,
    workbook_windows,
)
from ballast.slo.alerting import Alerting, AlertTier
from ballast.slo.budgeting import Budgeting, Occurrences, RatioTimeslices, Timeslices
from ballast.slo.errors import InvalidSpec, SpecError
from ballast.slo.group import KubernetesObject, SloGroup, SpecFormat
from ballast.slo.loading import Loaded, load_paths, load_texts
from ballast.slo.objective import ServiceLevelObjective
from ballast.slo.policy import ErrorBudgetPolicy
from ballast.slo.rendering import render_rule_files
from ballast.slo.rules import RuleDocument, RuleGroup, RuleOptions, UnsupportedSlo, document_rules, slo_rule_groups
from ballast.slo.sli import EventRatioSli, LatencySli, RawErrorRatioSli, Sli, ThresholdSli, WebAppAvailabilitySli
from ballast.slo.window import CalendarUnit, CalendarWindow, RollingWindow, SloWindow

__all__ = [
    "AlertTier",
    "AlertWindows",
    "Alerting",
    "Budgeting",
    "BurnWindow",
    "CalendarUnit",
    "CalendarWindow",
    "ErrorBudgetPolicy",
    "EventRatioSli",
    "InvalidSpec",
    "KubernetesObject",
    "LatencySli",
    "Loaded",
    "MissingAlertWindows",
    "Occurrences",
    "RatioTimeslices",
    "RawErrorRatioSli",
    "RollingWindow",
    "RuleDocument",
    "RuleGroup",
    "RuleOptions",
    "ServiceLevelObjective",
    "Sli",
    "SloGroup",
    "SloWindow",
    "SpecError",
    "SpecFormat",
    "ThresholdSli",
    "TierWindows",
    "Timeslices",
    "UnsupportedSlo",
    "WebAppAvailabilitySli",
    "WindowCatalogue",
    "document_rules",
    "load_paths",
    "load_texts",
    "render_rule_files",
    "slo_rule_groups",
    "workbook_windows",
]
