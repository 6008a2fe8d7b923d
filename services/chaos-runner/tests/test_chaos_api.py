"""The ChaosExperiment API: what the API server accepts and defaults, what it refuses naming the field, the columns
`kubectl get chaos` shows, and the runner's model of it."""

from __future__ import annotations

from typing import Any

import pytest
from chaos_fixtures import CRD_FILE, chaos_api, experiment  # noqa: F401  (fixture)
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from ballast.chaos_runner.api import GROUP, VERSION, ChaosExperimentSpec, Experiment
from ballast.testing.kube import assert_refused_naming, crd_schema, undescribed

cluster = pytest.mark.cluster
PLURAL = "chaosexperiments"

GOOD: dict[str, Any] = {"target": {"webApp": "shop"}, "fault": {"kind": "PodDelete"}, "duration": "30s"}
FULL: dict[str, Any] = {
    "target": {"namespace": "shop", "selector": {"matchLabels": {"app": "shop"}}},
    "service": "shop",
    "fault": {"kind": "PodEvict", "gracePeriodSeconds": 5},
    "duration": "5m",
    "interval": "1m",
    "selection": {"mode": "FixedPercent", "value": 50},
    "blastRadius": {"maxPercent": 50, "maxPods": 2},
    "hypothesis": {
        "minReadyReplicas": 2,
        "maxBurnRate": 2,
        "slo": "shop-availability",
        "http": {"url": "http://shop.shop.svc/healthz", "expectStatus": 204, "timeoutSeconds": 1},
        "checkIntervalSeconds": 1,
    },
    "abort": {"onBurnTiers": ["page", "ticket"], "budgetLeftBelowPercent": 20},
    "budget": {"maxSpendPercent": 5},
    "schedule": {"cron": "*/30 9-17 * * 1-5", "concurrencyPolicy": "Replace"},
    "dryRun": True,
}


def spec_fields(schema: dict[str, Any], path: str = "") -> set[str]:
    fields = set()
    for name, prop in schema.get("properties", {}).items():
        fields |= {f"{path}{name}"} | spec_fields(prop, f"{path}{name}.")
    return fields


def model_fields(model: type[Any], path: str = "") -> set[str]:
    fields = set()
    for name, field in model.model_fields.items():
        here = f"{path}{field.alias or name}"
        fields.add(here)
        for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
            if isinstance(arg, type) and hasattr(arg, "model_fields"):
                fields |= model_fields(arg, f"{here}.")
    return fields


def test_every_field_is_described() -> None:
    schema = crd_schema(CRD_FILE)
    assert schema.get("description")
    assert undescribed(schema) == []


def test_the_spec_model_has_the_crds_fields() -> None:
    assert model_fields(ChaosExperimentSpec) == spec_fields(crd_schema(CRD_FILE)["properties"]["spec"])


def test_the_model_fills_the_crds_defaults() -> None:
    spec = ChaosExperimentSpec.model_validate(GOOD)
    assert (spec.engine, spec.selection.mode, spec.blast_radius.max_percent, spec.abort.on_burn_tiers) == (
        "Native",
        "One",
        34,
        ("page",),
    )
    read = Experiment.from_object(
        experiment("x", FULL) | {"metadata": {"name": "x", "namespace": "ops", "uid": "u1", "generation": 2}}
    )
    assert (read.target_namespace, read.service, read.spec.interval_delta.total_seconds()) == ("shop", "shop", 60)  # type: ignore[union-attr]


@pytest.fixture
async def custom(kube_api: client.ApiClient, chaos_api: None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


@cluster
async def test_a_minimal_experiment_is_accepted_with_the_defaults(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    created = await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, experiment("a", GOOD))
    assert created["spec"] == {
        **GOOD,
        "fault": {"kind": "PodDelete", "force": False},
        "engine": "Native",
        "blastRadius": {"maxPercent": 34},
        "abort": {"onBurnTiers": ["page"]},
        "dryRun": False,
    }
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, experiment("full", FULL))
    litmus = GOOD | {"engine": "Litmus", "litmus": {"serviceAccount": "pod-delete-sa"}}
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, experiment("litmus", litmus))
    scale = GOOD | {"fault": {"kind": "ScaleDown", "replicas": 1}}
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, experiment("scale", scale))


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


@cluster
@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        (without("target"), "spec.target", "Required value"),
        (GOOD | {"target": {}}, "spec.target", "name exactly one of webApp and selector"),
        (
            GOOD | {"target": {"webApp": "shop", "selector": {"matchLabels": {"a": "b"}}}},
            "spec.target",
            "name exactly one of webApp and selector",
        ),
        (
            GOOD | {"target": {"selector": {"matchLabels": {}}}, "service": "s"},
            "spec.target.selector.matchLabels",
            "should have at least 1 properties",
        ),
        (
            GOOD | {"target": {"selector": {"matchLabels": {"a": "b"}}}},
            "spec.service",
            "a selector target needs the service",
        ),
        (GOOD | {"fault": {"kind": "Reboot"}}, "spec.fault.kind", "Unsupported value"),
        (GOOD | {"fault": {"kind": "PodEvict", "force": True}}, "spec.fault.force", "only a PodDelete can be forced"),
        (
            GOOD | {"fault": {"kind": "PodDelete", "force": True, "gracePeriodSeconds": 3}},
            "spec.fault.gracePeriodSeconds",
            "a forced delete has no grace period",
        ),
        (GOOD | {"fault": {"kind": "ScaleDown"}}, "spec.fault.replicas", "ScaleDown needs replicas"),
        (GOOD | {"fault": {"kind": "PodDelete", "replicas": 1}}, "spec.fault.replicas", "only ScaleDown takes it"),
        (GOOD | {"duration": "30 seconds"}, "spec.duration", "should match"),
        (GOOD | {"duration": "2h"}, "spec.duration", "at most 1h"),
        (GOOD | {"interval": "1m"}, "spec.interval", "must not be longer than the duration"),
        (GOOD | {"selection": {"mode": "Fixed"}}, "spec.selection.value", "need a value"),
        (GOOD | {"selection": {"mode": "All", "value": 2}}, "spec.selection.value", "One and All take no value"),
        (
            GOOD | {"selection": {"mode": "FixedPercent", "value": 101}},
            "spec.selection.value",
            "a percent is at most 100",
        ),
        (
            GOOD | {"blastRadius": {"maxPercent": 0}},
            "spec.blastRadius.maxPercent",
            "should be greater than or equal to 1",
        ),
        (
            GOOD | {"blastRadius": {"maxPercent": 101}},
            "spec.blastRadius.maxPercent",
            "should be less than or equal to 100",
        ),
        (GOOD | {"hypothesis": {"maxBurnRate": 1}}, "spec.hypothesis.slo", "maxBurnRate needs the slo"),
        (GOOD | {"hypothesis": {"http": {"url": "shop/healthz"}}}, "spec.hypothesis.http.url", "should match"),
        (GOOD | {"abort": {"onBurnTiers": ["sms"]}}, "spec.abort.onBurnTiers[0]", "Unsupported value"),
        (GOOD | {"budget": {"maxSpendPercent": 5}}, "spec.budget", "a budget is counted on an SLO"),
        (
            GOOD | {"hypothesis": {"slo": "s"}, "budget": {"maxSpendPercent": 0}},
            "spec.budget.maxSpendPercent",
            "should be greater than 0",
        ),
        (GOOD | {"schedule": {"cron": "every day"}}, "spec.schedule.cron", "should match"),
        (
            GOOD | {"schedule": {"cron": "* * * * *", "concurrencyPolicy": "Queue"}},
            "spec.schedule.concurrencyPolicy",
            "Unsupported value",
        ),
        (
            GOOD | {"engine": "Litmus", "fault": {"kind": "ScaleDown", "replicas": 0}},
            "spec.engine",
            "the Litmus engine runs PodDelete and NodeDrain only",
        ),
        (GOOD | {"litmus": {"serviceAccount": "sa"}}, "spec.litmus", "litmus settings need engine Litmus"),
    ],
    ids=[
        "no-target",
        "empty-target",
        "two-targets",
        "empty-selector",
        "selector-without-service",
        "unknown-fault",
        "forced-eviction",
        "forced-with-grace",
        "scale-without-replicas",
        "replicas-without-scale",
        "malformed-duration",
        "duration-too-long",
        "interval-longer-than-duration",
        "fixed-without-value",
        "all-with-value",
        "percent-over-100",
        "radius-zero",
        "radius-over-100",
        "burn-without-slo",
        "http-without-scheme",
        "unknown-tier",
        "budget-without-slo",
        "budget-zero",
        "malformed-cron",
        "unknown-concurrency-policy",
        "litmus-scale-down",
        "litmus-settings-native",
    ],
)
async def test_an_invalid_experiment_is_refused_naming_the_field(
    custom: client.CustomObjectsApi, namespace: str, spec: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ApiException) as refused:
        await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, experiment("bad", spec))
    assert_refused_naming(refused.value, field, reason)


@cluster
async def test_kubectl_get_chaos_shows_target_fault_phase_and_verdict(
    kube_api: client.ApiClient, chaos_api: None
) -> None:
    crd = await client.ApiextensionsV1Api(kube_api).read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    assert crd.spec.names.short_names == ["chaos"]
    (version,) = crd.spec.versions
    assert version.subresources.status is not None
    assert [(c.name, c.json_path) for c in version.additional_printer_columns if not c.priority] == [
        ("Target", ".spec.target.webApp"),
        ("Fault", ".spec.fault.kind"),
        ("Phase", ".status.phase"),
        ("Verdict", ".status.verdict"),
        ("Age", ".metadata.creationTimestamp"),
    ]
