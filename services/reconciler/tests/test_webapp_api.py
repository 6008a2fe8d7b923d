"""The WebApp and Tenant API: what the API server accepts, defaults and refuses (schema, CEL rules, the pod security
admission policy), its subresources and columns, and the pydantic models that mirror it."""

from __future__ import annotations

import functools
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import BaseModel, TypeAdapter
from reconciler_fixtures import CRD_FILES, DEPLOY, IMAGE, POLICY_FILE, judged_by_label, platform_api, unique, webapp  # noqa: F401

from ballast.kube.install import InstallError, install, load_manifests
from ballast.reconciler.api import (
    API_VERSION,
    GROUP,
    MAX_POD_SECURITY_LABEL,
    TENANTS,
    VERSION,
    WEBAPPS,
    NetworkPolicyMode,
    PodSecurityLevel,
    Tenant,
    TenantSpec,
    WebApp,
    WebAppSpec,
    WebAppStatus,
)
from ballast.reconciler.status import webapp_status
from ballast.testing.kube import absent, api_status, assert_refused_naming, crd_schema, undescribed
from ballast.testing.waiting import eventually

cluster = pytest.mark.cluster


SAMPLES = [DEPLOY / "samples" / "tenants.yaml", DEPLOY / "samples" / "webapps.yaml"]  # the reconciler's kinds
Shape = dict[str, tuple[bool, Any]]
# The client's stubs leave `_content_type` out, but it honours it; without it a dict body goes as a JSON patch (422).
MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}


def tenant(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Tenant", "metadata": {"name": name}, "spec": spec}


# --- the models mirror the CRDs (no cluster) ---


def with_nested_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """`value` with the defaults of its absent fields filled in, recursively, as the API server fills them."""
    if not isinstance(value, dict):
        return value
    filled = dict(value)
    for name, prop in schema.get("properties", {}).items():
        if name in filled:
            filled[name] = with_nested_defaults(filled[name], prop)
        elif "default" in prop:
            filled[name] = with_nested_defaults(prop["default"], prop)
    return filled


def schema_shape(schema: dict[str, Any], path: str = "") -> Shape:
    """Every field under `schema` by path: whether it is required, and its default as it ends up stored."""
    shape: Shape = {}
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        here = f"{path}.{name}" if path else name
        default = with_nested_defaults(prop["default"], prop) if "default" in prop else None
        shape[here] = (name in required, default)
        shape.update(schema_shape(prop, here))
        if "items" in prop:
            shape.update(schema_shape(prop["items"], f"{here}[]"))
    return shape


def nested_models(annotation: Any, suffix: str = "") -> list[tuple[str, type[BaseModel]]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(suffix, annotation)]
    inner = "[]" if typing.get_origin(annotation) is list else ""
    return [found for arg in typing.get_args(annotation) for found in nested_models(arg, suffix + inner)]


def model_shape(model: type[BaseModel], path: str = "") -> Shape:
    """The same for a pydantic model, by wire name; a default of None means "absent", as in the schema."""
    shape: Shape = {}
    for name, field in model.model_fields.items():
        here = f"{path}.{field.alias or name}" if path else field.alias or name
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        if default is not None:
            assert field.annotation is not None
            adapter: TypeAdapter[Any] = TypeAdapter(field.annotation)
            default = adapter.dump_python(default, mode="json", by_alias=True, exclude_none=True)
        shape[here] = (field.is_required(), default)
        for suffix, nested in nested_models(field.annotation):
            shape.update(model_shape(nested, here + suffix))
    return shape


@pytest.mark.parametrize(
    ("crd_file", "spec_model"), [(CRD_FILES[0], WebAppSpec), (CRD_FILES[1], TenantSpec)], ids=["webapp", "tenant"]
)
def test_the_spec_models_have_the_crds_fields_required_fields_and_defaults(
    crd_file: Path, spec_model: type[BaseModel]
) -> None:
    assert model_shape(spec_model) == schema_shape(crd_schema(crd_file)["properties"]["spec"])


def test_the_status_model_has_the_crds_fields() -> None:
    status_schema = crd_schema(CRD_FILES[0])["properties"]["status"]
    assert model_shape(WebAppStatus).keys() == schema_shape(status_schema).keys()


@pytest.mark.parametrize("crd_file", CRD_FILES, ids=["webapp", "tenant"])
def test_every_field_of_the_crds_is_described(crd_file: Path) -> None:
    schema = crd_schema(crd_file)
    assert schema.get("description"), "the kind itself"
    assert undescribed(schema, "") == []


def test_the_enums_have_the_crds_values() -> None:
    security = crd_schema(CRD_FILES[0])["properties"]["spec"]["properties"]["security"]["properties"]
    assert [m.value for m in NetworkPolicyMode] == security["networkPolicy"]["enum"]
    assert [m.value for m in PodSecurityLevel] == security["podSecurityStandard"]["enum"]
    tenant_spec = crd_schema(CRD_FILES[1])["properties"]["spec"]["properties"]
    assert [m.value for m in PodSecurityLevel] == tenant_spec["maxPodSecurity"]["enum"]


@pytest.mark.parametrize(
    ("allowed", "requested", "expected"),
    [
        ("restricted", "restricted", True),
        ("restricted", "baseline", False),
        ("baseline", "baseline", True),
        ("baseline", "privileged", False),
        ("privileged", "privileged", True),
        ("privileged", "restricted", True),
    ],
)
def test_a_pod_security_level_allows_itself_and_stricter_ones(allowed: str, requested: str, expected: bool) -> None:
    assert PodSecurityLevel(allowed).allows(PodSecurityLevel(requested)) is expected


def test_the_samples_parse_as_the_models() -> None:
    documents = [doc for path in SAMPLES for doc in yaml.safe_load_all(path.read_text())]
    kinds = [doc["kind"] for doc in documents]
    assert kinds.count("Tenant") == 2
    assert kinds.count("WebApp") >= 3
    for doc in documents:
        {"Tenant": Tenant, "WebApp": WebApp}[doc["kind"]].model_validate(doc)


# --- against the API server ---


@pytest.fixture
async def custom(kube_api: client.ApiClient, platform_api: None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


async def label_namespace(
    kube_api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str, label: str
) -> None:
    """Sets the tenant label, and waits until the admission policy judges by it: the policy reads namespaces from a
    cache, so for a moment it still sees the old labels."""
    await client.CoreV1Api(kube_api).patch_namespace(
        namespace, {"metadata": {"labels": {MAX_POD_SECURITY_LABEL: label}}}, **MERGE_PATCH
    )
    await judged_by_label(custom, namespace, label)


@cluster
async def test_a_webapp_with_only_an_image_is_accepted_with_every_default_filled_in(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    created = await custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, WEBAPPS, webapp("minimal", {"image": IMAGE})
    )
    assert created["spec"] == {
        "image": IMAGE,
        "replicas": 1,
        "port": 8080,
        "autoscaling": {"enabled": False, "minReplicas": 1, "targetCPUUtilization": 80},
        "monitoring": {"enabled": True, "scrapeInterval": "30s"},
        "security": {"networkPolicy": "strict", "podSecurityStandard": "restricted"},
    }
    # The model fills in the same defaults, and reads the stored object.
    assert WebAppSpec(image=IMAGE).model_dump(mode="json", by_alias=True, exclude_none=True) == created["spec"]
    assert WebApp.model_validate(created).metadata.generation == 1


@cluster
@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"image": IMAGE, "replicas": 0}, "spec.replicas", "should be greater than or equal to 1"),
        ({"image": IMAGE, "replicas": 101}, "spec.replicas", "should be less than or equal to 100"),
        ({"replicas": 2}, "spec.image", "Required value"),
        ({"image": ""}, "spec.image", "should be at least 1 chars long"),
        ({"image": IMAGE, "port": 0}, "spec.port", "should be greater than or equal to 1"),
        (
            {"image": IMAGE, "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
            "spec.autoscaling.minReplicas",
            "minReplicas must not exceed maxReplicas",
        ),
        (
            {"image": IMAGE, "autoscaling": {"enabled": True}},
            "spec.autoscaling.maxReplicas",
            "maxReplicas is required when autoscaling is enabled",
        ),
        (
            {"image": IMAGE, "autoscaling": {"targetCPUUtilization": 150}},
            "spec.autoscaling.targetCPUUtilization",
            "should be less than or equal to 100",
        ),
        (
            {"image": IMAGE, "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "100m"}}},
            "spec.resources.limits.cpu",
            "limits.cpu (100m) must be at least requests.cpu (500m)",
        ),
        (
            {"image": IMAGE, "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}},
            "spec.resources.limits.memory",
            "limits.memory (512Mi) must be at least requests.memory (1Gi)",
        ),
        (
            # Compared as quantities, not as strings or numbers: 10^9 bytes are less than 1 GiB.
            {"image": IMAGE, "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": 1000000000}}},
            "spec.resources.limits.memory",
            "limits.memory (1000000000) must be at least requests.memory (1Gi)",
        ),
        (
            {"image": IMAGE, "resources": {"requests": {"cpu": "lots"}}},
            "spec.resources.requests.cpu",
            "should match",
        ),
        (
            {"image": IMAGE, "resources": {"limits": {"cpu": -1}}},
            "spec.resources.limits.cpu",
            "should be greater than or equal to 0",
        ),
        (
            {"image": IMAGE, "security": {"networkPolicy": "open"}},
            "spec.security.networkPolicy",
            'Unsupported value: "open"',
        ),
        (
            {"image": IMAGE, "security": {"podSecurityStandard": "root"}},
            "spec.security.podSecurityStandard",
            'Unsupported value: "root"',
        ),
        (
            {"image": IMAGE, "monitoring": {"scrapeInterval": "30 seconds"}},
            "spec.monitoring.scrapeInterval",
            "should match",
        ),
        (
            {"image": IMAGE, "env": [{"name": "MODE", "value": "a"}, {"name": "MODE", "value": "b"}]},
            "spec.env[1]",
            "Duplicate value",
        ),
    ],
    ids=[
        "replicas-0",
        "replicas-101",
        "missing-image",
        "empty-image",
        "port-0",
        "min-above-max-replicas",
        "autoscaling-without-max",
        "target-cpu-above-100",
        "cpu-limit-below-request",
        "memory-limit-below-request",
        "memory-limit-below-request-in-other-units",
        "malformed-quantity",
        "negative-quantity",
        "unknown-network-policy",
        "unknown-pod-security-standard",
        "malformed-scrape-interval",
        "duplicate-env",
    ],
)
async def test_an_invalid_webapp_is_refused_naming_the_field(
    custom: client.CustomObjectsApi, namespace: str, spec: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ApiException) as refused:
        await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WEBAPPS, webapp("bad", spec))
    assert_refused_naming(refused.value, field, reason)


@cluster
@pytest.mark.parametrize(
    ("label", "requested", "allowed"),
    [
        (None, "privileged", "restricted"),
        (None, "baseline", "restricted"),
        ("restricted", "privileged", "restricted"),
        ("restricted", "baseline", "restricted"),
        ("baseline", "privileged", "baseline"),
        ("superuser", "privileged", "restricted"),  # not a level: as if absent
    ],
    ids=[
        "privileged-label-absent",
        "baseline-label-absent",
        "privileged-under-restricted",
        "baseline-under-restricted",
        "privileged-under-baseline",
        "privileged-under-unknown-label",
    ],
)
async def test_a_level_above_the_tenants_is_refused_at_admission_naming_the_field(
    kube_api: client.ApiClient,
    custom: client.CustomObjectsApi,
    namespace: str,
    label: str | None,
    requested: str,
    allowed: str,
) -> None:
    if label is not None:
        await label_namespace(kube_api, custom, namespace, label)
    body = webapp("app", {"image": IMAGE, "security": {"podSecurityStandard": requested}})
    with pytest.raises(ApiException) as refused:
        await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WEBAPPS, body)
    assert refused.value.status == 403
    message = api_status(refused.value)["message"]
    assert f"spec.security.podSecurityStandard: {requested} is not allowed" in message, message
    assert f"allows at most {allowed}" in message, message


@cluster
@pytest.mark.parametrize(
    ("label", "requested"),
    [("baseline", "baseline"), ("baseline", "restricted"), ("privileged", "privileged")],
    ids=["baseline-under-baseline", "restricted-under-baseline", "privileged-under-privileged"],
)
async def test_a_level_the_tenant_allows_is_accepted(
    kube_api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str, label: str, requested: str
) -> None:
    await label_namespace(kube_api, custom, namespace, label)
    body = webapp("app", {"image": IMAGE, "security": {"podSecurityStandard": requested}})
    created = await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WEBAPPS, body)
    assert created["spec"]["security"]["podSecurityStandard"] == requested


@cluster
async def test_after_a_tenant_is_tightened_its_webapps_stay_editable_but_cannot_raise_their_level(
    kube_api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    await label_namespace(kube_api, custom, namespace, "privileged")
    body = webapp("app", {"image": IMAGE, "security": {"podSecurityStandard": "privileged"}})
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WEBAPPS, body)
    await label_namespace(kube_api, custom, namespace, "restricted")

    async def patch(spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, WEBAPPS, "app", {"spec": spec}, **MERGE_PATCH
        )
        return result

    # Keeping the level: not judged again (and a finalizer could still be removed).
    assert (await patch({"image": f"{IMAGE}-fixed"}))["spec"]["image"] == f"{IMAGE}-fixed"
    # Changing it: judged, and only a level the tenant allows passes.
    with pytest.raises(ApiException) as refused:
        await patch({"security": {"podSecurityStandard": "baseline"}})
    assert refused.value.status == 403
    assert "spec.security.podSecurityStandard: baseline" in api_status(refused.value)["message"]
    lowered = await patch({"security": {"podSecurityStandard": "restricted"}})
    assert lowered["spec"]["security"]["podSecurityStandard"] == "restricted"


@cluster
async def test_the_scale_subresource_reads_and_writes_the_replicas(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WEBAPPS, webapp("app", {"image": IMAGE}))
    await custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        WEBAPPS,
        "app",
        {"status": {"replicas": 1, "selector": "app.kubernetes.io/instance=app"}},
        **MERGE_PATCH,
    )

    scale = await custom.patch_namespaced_custom_object_scale(
        GROUP,
        VERSION,
        namespace,
        WEBAPPS,
        "app",
        {"spec": {"replicas": 5}},
        **MERGE_PATCH,
    )
    assert scale["spec"]["replicas"] == 5
    stored = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, WEBAPPS, "app")
    assert stored["spec"]["replicas"] == 5
    # What an HPA reads: the replicas observed and the pods' selector, from the status.
    scale = await custom.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, WEBAPPS, "app")
    assert scale["status"] == {"replicas": 1, "selector": "app.kubernetes.io/instance=app"}
    # Scaling is held to the spec's bounds.
    with pytest.raises(ApiException) as refused:
        await custom.patch_namespaced_custom_object_scale(
            GROUP,
            VERSION,
            namespace,
            WEBAPPS,
            "app",
            {"spec": {"replicas": 101}},
            **MERGE_PATCH,
        )
    assert refused.value.status == 422
    assert "spec.replicas: " in api_status(refused.value)["message"]


AUTOSCALED = {"enabled": True, "minReplicas": 2, "maxReplicas": 5}


@cluster
async def test_under_autoscaling_a_new_replica_count_is_refused_naming_what_to_change_instead(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = webapp("app", {"image": IMAGE, "replicas": 3, "autoscaling": AUTOSCALED})
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WEBAPPS, body)
    where = (GROUP, VERSION, namespace, WEBAPPS, "app")

    async def replace_scale(replicas: int) -> Any:
        scale = await custom.get_namespaced_custom_object_scale(*where)
        return await custom.replace_namespaced_custom_object_scale(*where, {**scale, "spec": {"replicas": replicas}})

    # An edit, and kubectl scale through the scale subresource (a patch; older kubectl read and replaced it).
    writes: dict[str, Callable[[], Awaitable[Any]]] = {
        "spec patch": lambda: custom.patch_namespaced_custom_object(*where, {"spec": {"replicas": 5}}, **MERGE_PATCH),
        "scale patch": lambda: custom.patch_namespaced_custom_object_scale(
            *where, {"spec": {"replicas": 5}}, **MERGE_PATCH
        ),
        "scale replace": lambda: replace_scale(5),
    }
    for what, write in writes.items():
        with pytest.raises(ApiException) as refused:
            await write()
        assert_refused_naming(refused.value, "spec.replicas", "cannot change while spec.autoscaling.enabled is true")
        assert "change spec.autoscaling.minReplicas/maxReplicas instead" in api_status(refused.value)["message"], what
    assert (await custom.get_namespaced_custom_object(*where))["spec"]["replicas"] == 3

    # The autoscaler's bounds are what to change, and the same count is no change.
    bounds = {"spec": {"autoscaling": {"maxReplicas": 8}}}
    assert (await custom.patch_namespaced_custom_object(*where, bounds, **MERGE_PATCH))["metadata"]["generation"] == 2
    assert (await replace_scale(3))["spec"]["replicas"] == 3
    # Turning autoscaling off with a count in the same write is scaling by hand again; so is every scale after it.
    manual = {"spec": {"replicas": 4, "autoscaling": {"enabled": False}}}
    assert (await custom.patch_namespaced_custom_object(*where, manual, **MERGE_PATCH))["spec"]["replicas"] == 4
    scaled = await custom.patch_namespaced_custom_object_scale(*where, {"spec": {"replicas": 6}}, **MERGE_PATCH)
    assert scaled["spec"]["replicas"] == 6
    # And turning it on with a count at once is allowed: nothing was autoscaled yet.
    back_on = {"spec": {"replicas": 2, "autoscaling": {"enabled": True}}}
    assert (await custom.patch_namespaced_custom_object(*where, back_on, **MERGE_PATCH))["spec"]["replicas"] == 2


async def read(kube_api: client.ApiClient, path: str, accept: str = "application/json") -> Any:
    """A GET the typed client has no method for, as kubectl sends it."""
    return await kube_api.call_api(
        path,
        "GET",
        header_params={"Accept": accept},
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


@cluster
async def test_kubectl_get_shows_what_runs_not_the_spec(
    kube_api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = webapp("app", {"image": IMAGE, "replicas": 3, "autoscaling": AUTOSCALED})
    created = await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WEBAPPS, body)
    # The HPA holds the Deployment at its minimum, 2; one pod has been ready long enough to count as available.
    deployment = {
        "metadata": {"generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "readyReplicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 1,
        },
    }
    now = datetime.now(UTC).replace(microsecond=0)
    status = webapp_status(WebApp.model_validate(created), deployment, [], problem=None, now=now)
    written = {"status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}
    await custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, WEBAPPS, "app", written, **MERGE_PATCH
    )

    # kubectl get asks the API server for a Table and prints its cells (priority 1 ones only with -o wide).
    table = await read(
        kube_api,
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{WEBAPPS}",
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    (row,) = table["rows"]
    shown = dict(zip([c["name"] for c in table["columnDefinitions"]], row["cells"], strict=True))
    assert shown.pop("Age")
    assert shown == {
        "Name": "app",
        "Desired": 2,
        "Ready": 2,
        "Up-to-date": 2,
        "Available": 1,
        "Autoscaling": True,
        "Status": "AllReplicasReady",
        "Image": IMAGE,
    }


@cluster
async def test_kubectl_explain_finds_every_field_described(kube_api: client.ApiClient, platform_api: None) -> None:
    """kubectl explain reads the OpenAPI v3 document the API server publishes from the CRDs' schemas."""
    document = await read(kube_api, f"/openapi/v3/apis/{GROUP}/{VERSION}")
    schemas = document["components"]["schemas"]
    for kind in ("WebApp", "Tenant"):
        published = schemas[f"com.example.platform.{VERSION}.{kind}"]
        assert published["description"]
        # metadata is published as a reference to ObjectMeta, described there.
        spec_and_status = {"properties": {k: published["properties"][k] for k in ("spec", "status")}}
        assert undescribed(spec_and_status, kind) == []
    security = schemas[f"com.example.platform.{VERSION}.WebApp"]["properties"]["spec"]["properties"]["security"]
    assert "Pod Security Standard" in security["description"]


@cluster
async def test_status_writes_leave_the_generation_and_spec_writes_bump_it(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    created = await custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, WEBAPPS, webapp("app", {"image": IMAGE})
    )
    assert created["metadata"]["generation"] == 1
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Available",
        "message": "1 of 1 replicas ready",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
    }
    status = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "conditions": [ready]}
    updated = await custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, WEBAPPS, "app", {"status": status}, **MERGE_PATCH
    )
    assert updated["metadata"]["generation"] == 1
    assert updated["status"] == status
    parsed = WebApp.model_validate(updated)
    assert parsed.status is not None
    assert [(c.type, c.status) for c in parsed.status.conditions] == [("Ready", "True")]

    # The main resource ignores status, and a spec change is a new generation.
    changed = await custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        WEBAPPS,
        "app",
        {"spec": {"replicas": 3}, "status": {"readyReplicas": 0}},
        **MERGE_PATCH,
    )
    assert changed["metadata"]["generation"] == 2
    assert changed["status"] == status


@cluster
async def test_the_status_refuses_a_malformed_condition(custom: client.CustomObjectsApi, namespace: str) -> None:
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WEBAPPS, webapp("app", {"image": IMAGE}))
    condition = {"type": "Ready", "status": "Yes", "reason": "Available", "message": "", "lastTransitionTime": "now"}
    with pytest.raises(ApiException) as refused:
        await custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            WEBAPPS,
            "app",
            {"status": {"conditions": [condition]}},
            **MERGE_PATCH,
        )
    assert refused.value.status == 422
    message = api_status(refused.value)["message"]
    assert "status.conditions[0].status: " in message, message
    assert "status.conditions[0].lastTransitionTime: " in message, message


@cluster
async def test_a_valid_tenant_is_accepted_with_the_restricted_default(custom: client.CustomObjectsApi) -> None:
    name = unique("tenant")
    spec = {"namespaces": ["team-a", "team-a-staging"], "quota": {"hard": {"pods": 10, "requests.cpu": "4"}}}
    created = await custom.create_cluster_custom_object(GROUP, VERSION, TENANTS, tenant(name, spec))
    try:
        assert created["spec"] == {**spec, "maxPodSecurity": "restricted"}
        assert Tenant.model_validate(created).spec.max_pod_security is PodSecurityLevel.RESTRICTED
    finally:
        await custom.delete_cluster_custom_object(GROUP, VERSION, TENANTS, name)


@cluster
@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"namespaces": ["team-a"], "maxPodSecurity": "root"}, "spec.maxPodSecurity", 'Unsupported value: "root"'),
        ({"namespaces": []}, "spec.namespaces", "should have at least 1 items"),
        ({"maxPodSecurity": "baseline"}, "spec.namespaces", "Required value"),
        ({"namespaces": ["Team_A"]}, "spec.namespaces[0]", "should match"),
        ({"namespaces": ["team-a", "team-a"]}, "spec.namespaces[1]", "Duplicate value"),
        (
            {"namespaces": ["team-a"], "quota": {"hard": {"pods": "many"}}},
            "spec.quota.hard.pods",
            "should match",
        ),
        (
            {"namespaces": ["team-a"], "limitRange": {"default": {"cpu": "1"}, "defaultRequest": {"cpu": "2"}}},
            "spec.limitRange.default.cpu",
            "default.cpu (1) must be at least defaultRequest.cpu (2)",
        ),
        (
            {
                "namespaces": ["team-a"],
                "limitRange": {"default": {"memory": "128Mi"}, "defaultRequest": {"memory": "256Mi"}},
            },
            "spec.limitRange.default.memory",
            "default.memory (128Mi) must be at least defaultRequest.memory (256Mi)",
        ),
    ],
    ids=[
        "unknown-max-pod-security",
        "empty-namespaces",
        "missing-namespaces",
        "namespace-not-a-dns-label",
        "duplicate-namespace",
        "malformed-quota",
        "cpu-default-below-request",
        "memory-default-below-request",
    ],
)
async def test_an_invalid_tenant_is_refused_naming_the_field(
    custom: client.CustomObjectsApi, spec: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ApiException) as refused:
        await custom.create_cluster_custom_object(GROUP, VERSION, TENANTS, tenant(unique("bad"), spec))
    assert refused.value.status == 422
    status = api_status(refused.value)
    assert f"{field}: " in status["message"], status["message"]
    assert reason in status["message"], status["message"]
    assert field in {cause.get("field") for cause in status["details"]["causes"]}


@cluster
async def test_the_crds_declare_their_printer_columns_short_name_and_subresources(
    kube_api: client.ApiClient, platform_api: None
) -> None:
    extensions = client.ApiextensionsV1Api(kube_api)
    webapps = await extensions.read_custom_resource_definition(f"{WEBAPPS}.{GROUP}")
    (version,) = webapps.spec.versions
    # What runs, from the status (as a Deployment shows it), not spec.replicas, which the HPA may override.
    assert [(c.name, c.type, c.json_path, c.priority) for c in version.additional_printer_columns] == [
        ("Desired", "integer", ".status.desiredReplicas", None),
        ("Ready", "integer", ".status.readyReplicas", None),
        ("Up-to-date", "integer", ".status.updatedReplicas", None),
        ("Available", "integer", ".status.availableReplicas", None),
        ("Autoscaling", "boolean", ".spec.autoscaling.enabled", None),
        ("Status", "string", '.status.conditions[?(@.type=="Ready")].reason', None),
        ("Image", "string", ".spec.image", 1),
        ("Age", "date", ".metadata.creationTimestamp", None),
    ]
    assert webapps.spec.names.short_names == ["wa"]
    scale = version.subresources.scale
    assert (scale.spec_replicas_path, scale.status_replicas_path, scale.label_selector_path) == (
        ".spec.replicas",
        ".status.replicas",
        ".status.selector",
    )
    tenants = await extensions.read_custom_resource_definition(f"{TENANTS}.{GROUP}")
    assert tenants.spec.scope == "Cluster"
    (version,) = tenants.spec.versions
    assert [c.name for c in version.additional_printer_columns] == ["Ready", "Max Pod Security", "Age"]
    assert version.subresources.status is not None


@cluster
async def test_the_samples_are_accepted(
    kube_api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    documents = [doc for path in SAMPLES for doc in yaml.safe_load_all(path.read_text())]
    # Dry runs: the samples name their own namespaces; the WebApps are checked in the test's namespace, which
    # allows every level, so only their schema is judged.
    await label_namespace(kube_api, custom, namespace, "privileged")
    for doc in documents:
        if doc["kind"] == "Tenant":
            await custom.create_cluster_custom_object(GROUP, VERSION, TENANTS, doc, dry_run="All")
        else:
            body = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
            await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WEBAPPS, body, dry_run="All")


# --- the installer ---

GADGET_CRD = Path(__file__).parent / "fixtures" / "gadget-crd.yaml"


@pytest.fixture
async def gadget_crds(kube_api: client.ApiClient) -> AsyncIterator[list[str]]:
    """Names of CRDs the test installs, deleted afterwards (they are cluster-wide)."""
    names: list[str] = []
    yield names
    extensions = client.ApiextensionsV1Api(kube_api)
    for name in names:
        try:
            await extensions.delete_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    for name in names:
        # A CRD is finalized after its objects are gone: the next test must not find it still terminating.
        await eventually(
            functools.partial(absent, functools.partial(extensions.read_custom_resource_definition, name)),
            timeout=30,
            interval=0.1,
            what=f"CRD {name} deleted",
        )


@cluster
async def test_install_creates_then_replaces_and_the_resource_is_served_at_once(
    kube_api: client.ApiClient, gadget_crds: list[str], namespace: str
) -> None:
    (manifest,) = load_manifests(GADGET_CRD)
    gadget_crds.append(manifest["metadata"]["name"])
    await install(kube_api, [manifest])
    # Served on return: no 404 or 429 while the resource's storage starts.
    custom = client.CustomObjectsApi(kube_api)
    gadget = {"apiVersion": "install.ballast.test/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {}}
    await custom.create_namespaced_custom_object("install.ballast.test", "v1", namespace, "gadgets", gadget)

    manifest["spec"]["versions"][0]["additionalPrinterColumns"][0]["name"] = "Dimension"
    await install(kube_api, [manifest])
    crd = await client.ApiextensionsV1Api(kube_api).read_custom_resource_definition(manifest["metadata"]["name"])
    assert [c.name for c in crd.spec.versions[0].additional_printer_columns] == ["Dimension"]


@cluster
async def test_install_reports_a_crd_whose_names_are_taken(kube_api: client.ApiClient, gadget_crds: list[str]) -> None:
    (gadget,) = load_manifests(GADGET_CRD)
    clash = {
        **gadget,
        "metadata": {"name": "gizmos.install.ballast.test"},
        "spec": {**gadget["spec"], "names": {"plural": "gizmos", "kind": "Gizmo", "shortNames": ["gd"]}},
    }
    gadget_crds.extend([gadget["metadata"]["name"], clash["metadata"]["name"]])
    await install(kube_api, [gadget])
    with pytest.raises(InstallError, match=r"CRD gizmos.install.ballast.test is not accepted: .*gd"):
        await install(kube_api, [clash], timeout=20)


async def test_install_refuses_kinds_it_does_not_know_before_writing_anything() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}}
    (gadget,) = load_manifests(GADGET_CRD)
    # No client at all: a call to the API would fail differently.
    with pytest.raises(InstallError, match=r"cannot install ConfigMap \(v1\)"):
        await install(typing.cast(client.ApiClient, None), [gadget, config_map])
