"""The ServiceLevelObjective API: what the API server accepts and defaults, what it refuses naming the field, and the
columns `kubectl get slo` shows."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from slo_fixtures import CRD_FILE, slo_api  # noqa: F401  (fixture)

from ballast.events.contracts.slo import BurnTier
from ballast.slo import (
    AlertTier,
    CalendarUnit,
    CalendarWindow,
    EventRatioSli,
    LatencySli,
    RollingWindow,
    Timeslices,
    WebAppAvailabilitySli,
)
from ballast.slo.crd import GROUP, SLOS, VERSION, ServiceLevelObjectiveSpec, load_object, to_objective
from ballast.slo.crd_rules import RULES
from ballast.slo.errors import InvalidSpec, SpecError
from ballast.testing.kube import api_status, assert_refused_naming, crd_schema, undescribed

cluster = pytest.mark.cluster
SAMPLES = Path(__file__).resolve().parents[3] / "deploy" / "samples" / "slos.yaml"


EVENTS = {
    "eventRatio": {
        "errorQuery": 'sum(rate(http_requests_total{job="shop",code=~"5.."}[{{.window}}]))',
        "totalQuery": 'sum(rate(http_requests_total{job="shop"}[{{.window}}]))',
    }
}
GOOD: dict[str, Any] = {
    "service": "shop",
    "objective": 99.9,
    "window": {"duration": "30d"},
    "sli": EVENTS,
    "alerting": {"name": "ShopHighErrorRate"},
}

FULL: dict[str, Any] = {
    "service": "shop",
    "description": "checkout answers",
    "objective": 99.5,
    "window": {"type": "Calendar", "duration": "1M", "timeZone": "Europe/Berlin"},
    "budgetingMethod": "Timeslices",
    "timeSlices": {"window": "1m", "target": 0.95},
    "sli": {"latency": {"histogram": "http_request_duration_seconds", "selector": 'job="shop"', "threshold": "0.25"}},
    "alerting": {
        "labels": {"team": "shop"},
        "annotations": {"runbook": "https://runbooks.example.com/shop"},
        "page": {"name": "ShopPage", "labels": {"severity": "critical"}},
        "ticket": {"enabled": False},
    },
    "minRequestRate": 0.5,
    "budgetPolicy": {"freezeDeploysBelowPercent": 10, "pauseChaosWhilePaging": True},
    "labels": {"tier": "frontend"},
}


def slo(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_every_field_is_described() -> None:
    schema = crd_schema(CRD_FILE)
    assert schema.get("description"), "the kind itself"
    assert undescribed(schema, "") == []


def test_an_slo_object_reads_into_the_library_model() -> None:
    minimal = to_objective("shop-ns", "shop", ServiceLevelObjectiveSpec.model_validate(GOOD))
    assert (minimal.id, minimal.objective, minimal.window) == (
        "shop-shop",
        99.9,
        RollingWindow(length=timedelta(days=30)),
    )
    assert isinstance(minimal.sli, EventRatioSli)
    assert minimal.alerting.alert_name(BurnTier.PAGE) == "ShopHighErrorRate"
    assert minimal.alerting.page.enabled
    assert minimal.alerting.ticket.enabled

    full = to_objective("shop-ns", "full", ServiceLevelObjectiveSpec.model_validate(FULL))
    assert full.window == CalendarWindow(unit=CalendarUnit.MONTH, time_zone="Europe/Berlin")
    assert full.budgeting == Timeslices(slice_window=timedelta(minutes=1), slice_target=0.95)
    assert full.sli == LatencySli(histogram="http_request_duration_seconds", selector='job="shop"', le="0.25")
    assert full.alerting.page == AlertTier(name="ShopPage", labels={"severity": "critical"})
    assert not full.alerting.ticket.enabled
    assert (full.min_request_rate, full.policy.freeze_deploys_below_percent) == (0.5, 10)

    availability = GOOD | {"sli": {"webAppAvailability": {"webApp": "shop"}}}
    read = to_objective("shop-ns", "avail", ServiceLevelObjectiveSpec.model_validate(availability))
    assert read.sli == WebAppAvailabilitySli(namespace="shop-ns", webapp="shop")


def test_without_alerting_no_tier_alerts() -> None:
    spec = ServiceLevelObjectiveSpec.model_validate({k: v for k, v in GOOD.items() if k != "alerting"})
    alerting = to_objective("shop-ns", "quiet", spec).alerting
    assert not alerting.page.enabled
    assert not alerting.ticket.enabled


@pytest.fixture
async def custom(kube_api: client.ApiClient, slo_api: None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


@cluster
async def test_a_minimal_slo_is_accepted_with_the_defaults_filled_in(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    created = await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, slo("shop", GOOD))
    assert created["spec"] == {
        **GOOD,
        "window": {"type": "Rolling", "duration": "30d"},
        "budgetingMethod": "Occurrences",
        "alerting": {"name": "ShopHighErrorRate", "page": {"enabled": True}, "ticket": {"enabled": True}},
    }


@cluster
async def test_a_full_slo_is_accepted(custom: client.CustomObjectsApi, namespace: str) -> None:
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, slo("full", FULL))
    availability = GOOD | {"sli": {"webAppAvailability": {"webApp": "shop"}}}
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, slo("avail", availability))


@cluster
async def test_the_sample_slos_are_accepted(custom: client.CustomObjectsApi, namespace: str) -> None:
    samples = [doc for doc in yaml.safe_load_all(SAMPLES.read_text()) if doc]
    assert [doc["kind"] for doc in samples] == ["ServiceLevelObjective"] * 2
    for doc in samples:  # dry runs in the test's namespace: the samples name their own
        body = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
        await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, body, dry_run="All")


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


# Specs the API server refuses, the field it names and words of its message. `ballast slo validate` refuses each too,
# naming the same fields (test_a_file_is_refused_what_the_api_server_refuses).
INVALID = [
    pytest.param(without("service"), "spec.service", "Required value", id="no-service"),
    pytest.param(GOOD | {"objective": 0}, "spec.objective", "should be greater than 0", id="objective-zero"),
    pytest.param(GOOD | {"objective": 100}, "spec.objective", "should be less than 100", id="objective-hundred"),
    pytest.param(
        GOOD | {"window": {"duration": "30 days"}}, "spec.window.duration", "should match", id="malformed-window"
    ),
    pytest.param(
        GOOD | {"window": {"duration": "1M"}},
        "spec.window.duration",
        "a rolling window has a fixed length",
        id="rolling-month",
    ),
    pytest.param(
        GOOD | {"window": {"duration": "7d", "timeZone": "UTC"}},
        "spec.window.timeZone",
        "only a Calendar window",
        id="rolling-time-zone",
    ),
    pytest.param(
        GOOD | {"budgetingMethod": "Slices"}, "spec.budgetingMethod", "Unsupported value", id="unknown-budgeting-method"
    ),
    pytest.param(
        GOOD | {"budgetingMethod": "Timeslices"},
        "spec.timeSlices",
        "need timeSlices.window",
        id="timeslices-without-slices",
    ),
    pytest.param(
        GOOD | {"budgetingMethod": "Timeslices", "timeSlices": {"window": "1m"}},
        "spec.timeSlices.target",
        "needs the good ratio a slice must reach",
        id="timeslices-without-target",
    ),
    pytest.param(
        GOOD | {"timeSlices": {"window": "1m"}},
        "spec.timeSlices",
        "only Timeslices and RatioTimeslices",
        id="occurrences-with-slices",
    ),
    pytest.param(GOOD | {"sli": {}}, "spec.sli", "exactly one SLI kind is required", id="no-sli-kind"),
    pytest.param(
        GOOD | {"sli": EVENTS | {"rawErrorRatio": {"errorRatioQuery": "x[{{.window}}]"}}},
        "spec.sli",
        "exactly one SLI kind is required",
        id="two-sli-kinds",
    ),
    pytest.param(
        GOOD | {"sli": {"eventRatio": {"totalQuery": "sum(rate(x[{{.window}}]))"}}},
        "spec.sli.eventRatio",
        "exactly one of errorQuery and goodQuery",
        id="no-error-or-good-query",
    ),
    pytest.param(
        GOOD | {"sli": {"eventRatio": {"errorQuery": "sum(rate(e[5m]))", "totalQuery": "sum(rate(t[{{.window}}]))"}}},
        "spec.sli.eventRatio.errorQuery",
        "must contain the {{.window}} placeholder",
        id="query-without-window",
    ),
    pytest.param(
        GOOD | {"sli": {"eventRatio": {"errorQuery": "q[{{.window}}]", "totalQuery": "q[{{.window}}]"}}},
        "spec.sli.eventRatio.totalQuery",
        "must differ from errorQuery",
        id="error-query-equals-total",
    ),
    pytest.param(
        GOOD | {"sli": {"rawErrorRatio": {"errorRatioQuery": "ratio"}}},
        "spec.sli.rawErrorRatio.errorRatioQuery",
        "must contain the {{.window}} placeholder",
        id="raw-without-window",
    ),
    pytest.param(
        GOOD | {"sli": {"latency": {"histogram": "http_seconds", "threshold": "fast"}}},
        "spec.sli.latency.threshold",
        "should match",
        id="malformed-latency-threshold",
    ),
    pytest.param(
        without("alerting") | {"alerting": {}},
        "spec.alerting.page.name",
        "the page tier is enabled but has no",
        id="page-unnamed",
    ),
    pytest.param(
        without("alerting") | {"alerting": {"page": {"name": "ShopPage"}}},
        "spec.alerting.ticket.name",
        "the ticket tier is enabled but has no",
        id="ticket-unnamed",
    ),
    pytest.param(
        GOOD | {"alerting": {"name": "shop errors"}}, "spec.alerting.name", "should match", id="malformed-alert-name"
    ),
    pytest.param(
        GOOD | {"sli": {"webAppAvailability": {"webApp": "shop"}}, "minRequestRate": 1},
        "spec.minRequestRate",
        "needs an SLI with a total request rate",
        id="min-rate-without-total",
    ),
    pytest.param(GOOD | {"minRequestRate": 0}, "spec.minRequestRate", "should be greater than 0", id="min-rate-zero"),
    pytest.param(
        GOOD | {"budgetPolicy": {"freezeDeploysBelowPercent": 100}},
        "spec.budgetPolicy.freezeDeploysBelowPercent",
        "should be less than 100",
        id="freeze-at-hundred",
    ),
    pytest.param(
        GOOD | {"budgetingMethod": "RatioTimeslices", "timeSlices": {"window": "1d"}},
        "spec.timeSlices.window",
        "should match",
        id="slice-in-days",
    ),
    pytest.param(
        GOOD | {"alerting": {"name": "Shop", "page": {"name": "page me"}}},
        "spec.alerting.page.name",
        "should match",
        id="malformed-tier-name",
    ),
    pytest.param(
        GOOD | {"labels": {f"label{i}": "x" for i in range(33)}},
        "spec.labels",
        "must have at most 32 items",
        id="too-many-labels",
    ),
    pytest.param(
        GOOD | {"sli": {"eventRatio": {"errorQuery": "", "totalQuery": "t[{{.window}}]"}}},
        "spec.sli.eventRatio.errorQuery",
        "should be at least 1 chars long",
        id="empty-error-query",
    ),
]


def refused_offline(spec: dict[str, Any]) -> tuple[SpecError, ...]:
    """What `ballast slo validate` says of the object in a file."""
    with pytest.raises(InvalidSpec) as refused:
        load_object(slo("bad", spec), "bad.yaml", 1)
    return refused.value.errors


@pytest.mark.parametrize(("spec", "field", "reason"), INVALID)
def test_a_file_is_refused_what_the_api_server_refuses(spec: dict[str, Any], field: str, reason: str) -> None:
    """No API server has seen a file: `ballast slo validate` refuses what the API server refuses (the same cases,
    below), naming the field it names; where a CEL rule refuses, with the CRD's own message."""
    errors = {error.field: error.rule for error in refused_offline(spec)}
    assert field in errors, errors
    if any(rule.field == field and rule.message.startswith(reason) for rule in RULES):
        assert reason in errors[field]


def crd_rules(schema: dict[str, Any], node: str) -> list[tuple[str, str, str, str]]:
    found = [
        (node, v["rule"], v["message"], v.get("fieldPath", "")) for v in schema.get("x-kubernetes-validations", [])
    ]
    for name, prop in schema.get("properties", {}).items():
        found += crd_rules(prop, f"{node}.{name}")
    return found


def test_the_offline_rules_are_the_crds_cel_rules() -> None:
    """Each CEL rule of the CRD is mirrored (the same node, expression, message and field), and nothing else."""
    crd = crd_rules(crd_schema(CRD_FILE)["properties"]["spec"], "spec")
    assert [(r.node, r.rule, r.message, r.field_path) for r in RULES] == crd


# The schema keywords a model's field can hold; the CRD's `exclusiveMinimum: true` (OpenAPI 3.0) is pydantic's
# `exclusiveMinimum: <bound>` (JSON Schema 2020-12).
BOUNDS: tuple[str, ...] = ("type", "enum", "pattern", "minLength", "maxLength", "minProperties", "maxProperties")
BOUNDS += ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def crd_bounds(schema: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    here = {k: schema[k] for k in BOUNDS if k in schema}
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if here.get(exclusive) is True:
            here[exclusive] = here.pop(bound)
    found = {path: here}
    for name, prop in schema.get("properties", {}).items():
        found |= crd_bounds(prop, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        found |= crd_bounds(schema["additionalProperties"], f"{path}.*")
    return found


def model_bounds(schema: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    while True:  # through references and optional (`X | None`) fields to the field's own schema
        if "$ref" in schema:
            schema = defs[schema["$ref"].rsplit("/", 1)[-1]] | {k: v for k, v in schema.items() if k != "$ref"}
        elif "anyOf" in schema:
            (inner,) = [s for s in schema["anyOf"] if s.get("type") != "null"]
            schema = inner | {k: v for k, v in schema.items() if k != "anyOf"}
        else:
            break
    found = {path: {k: schema[k] for k in BOUNDS if k in schema}}
    for name, prop in schema.get("properties", {}).items():
        found |= model_bounds(prop, defs, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        found |= model_bounds(schema["additionalProperties"], defs, f"{path}.*")
    return found


def test_the_spec_model_holds_the_crds_fields_bounds_and_patterns() -> None:
    """Every field of the CRD's spec is in the models and no other (the same paths), each with the CRD's type, enum,
    pattern, lengths, bounds and map sizes."""
    model = ServiceLevelObjectiveSpec.model_json_schema(by_alias=True)
    assert model_bounds(model, model.get("$defs", {}), "spec") == crd_bounds(
        crd_schema(CRD_FILE)["properties"]["spec"], "spec"
    )


@cluster
@pytest.mark.parametrize(("spec", "field", "reason"), INVALID)
async def test_an_invalid_slo_is_refused_naming_the_field(
    custom: client.CustomObjectsApi, namespace: str, spec: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ApiException) as refused:
        await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, slo("bad", spec))
    assert_refused_naming(refused.value, field, reason)
    # `ballast slo validate` names the same fields (every one the API server names, and no other); the API server's
    # cause without a field (`<nil>`) says the CEL rules were not checked, which the file's refusal says too.
    causes = {cause.get("field") for cause in api_status(refused.value)["details"]["causes"]}
    causes = {"" if cause == "<nil>" else cause for cause in causes}
    assert {error.field for error in refused_offline(spec)} == causes


@cluster
async def test_kubectl_get_slo_shows_service_objective_window_budget_and_burning_tier(
    kube_api: client.ApiClient, slo_api: None
) -> None:
    crd = await client.ApiextensionsV1Api(kube_api).read_custom_resource_definition(f"{SLOS}.{GROUP}")
    assert crd.spec.names.short_names == ["slo"]
    assert crd.spec.scope == "Namespaced"
    (version,) = crd.spec.versions
    assert version.subresources.status is not None
    assert [(c.name, c.json_path) for c in version.additional_printer_columns if not c.priority] == [
        ("Service", ".spec.service"),
        ("Objective", ".spec.objective"),
        ("Window", ".spec.window.duration"),
        ("Budget", ".status.budgetRemaining"),
        ("Burning", ".status.firingTiers[0]"),
        ("Age", ".metadata.creationTimestamp"),
    ]
