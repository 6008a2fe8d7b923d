"""The default SLO of a WebApp (pure): what it is, who wants one, which SLO counts as the engine's; and when a status
write of mere figures waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ballast.slo import WebAppAvailabilitySli
from ballast.slo.crd import ServiceLevelObjectiveSpec, to_objective
from ballast.slo_engine.controller import STATUS_REFRESH, refresh_wait
from ballast.slo_engine.defaults import (
    DEFAULT_SLO_ANNOTATION,
    default_slo,
    default_slo_name,
    is_default_of,
    wants_default_slo,
)


def webapp(annotations: dict[str, str] | None = None, uid: str = "uid-1") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "shop", "namespace": "store", "uid": uid}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"apiVersion": "platform.example.com/v1", "kind": "WebApp", "metadata": metadata, "spec": {}}


def test_the_default_slo_measures_the_webapps_availability_and_is_owned_by_it() -> None:
    slo = default_slo(webapp(), 99.5, "30d")
    assert slo["metadata"]["name"] == default_slo_name("shop") == "shop-availability"
    assert slo["metadata"]["namespace"] == "store"
    (owner,) = slo["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("WebApp", "shop", "uid-1", True)
    objective = to_objective("store", "shop-availability", ServiceLevelObjectiveSpec.model_validate(slo["spec"]))
    assert objective.sli == WebAppAvailabilitySli(namespace="store", webapp="shop")
    assert objective.objective == 99.5
    assert objective.alerting.page.enabled
    assert objective.alerting.ticket.enabled


def test_only_the_annotation_false_switches_it_off() -> None:
    assert wants_default_slo(webapp())
    assert wants_default_slo(webapp({DEFAULT_SLO_ANNOTATION: "true"}))
    assert not wants_default_slo(webapp({DEFAULT_SLO_ANNOTATION: "false"}))
    assert not wants_default_slo(webapp({DEFAULT_SLO_ANNOTATION: " False "}))


def test_an_slo_is_the_engines_default_only_if_it_made_it_for_this_very_webapp() -> None:
    ours = default_slo(webapp(), 99.5, "30d")
    assert is_default_of(ours, webapp())
    assert not is_default_of(ours, webapp(uid="uid-2"))  # a WebApp of the same name, created again
    someones = ours | {"metadata": ours["metadata"] | {"labels": {}}}
    assert not is_default_of(someones, webapp())


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def status(budget: float, firing: list[str], evaluated: datetime) -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "budgetRemaining": budget,
        "firingTiers": firing,
        "evaluatedAt": evaluated.isoformat().replace("+00:00", "Z"),
        "conditions": [{"type": "Burning", "status": "True" if firing else "False"}],
    }


def test_figures_alone_wait_for_the_refresh_but_a_tier_is_written_at_once() -> None:
    written = status(0.5, [], NOW - timedelta(seconds=10))
    figures = status(0.49, [], NOW)
    assert refresh_wait(written, figures, NOW) == (STATUS_REFRESH - timedelta(seconds=10)).total_seconds()
    assert refresh_wait(written, status(0.49, ["page"], NOW), NOW) is None
    assert refresh_wait(status(0.5, [], NOW - STATUS_REFRESH), figures, NOW) is None  # due
    assert refresh_wait({}, figures, NOW) is None  # never written
