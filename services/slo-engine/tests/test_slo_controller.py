"""The SLO controller against a real API server and nats-server: the budget state shows in the status (and in
`kubectl get slo`'s columns), an SLO the model refuses says why, an SLO no measurer of the engine can evaluate says
why too, and a deleted SLO's state is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry
from slo_fixtures import slo_api  # noqa: F401  (fixture)

from ballast.bus import Bus
from ballast.events.catalogue import CATALOGUE, PLATFORM_EVENTS, SLO_BUDGETS
from ballast.kube.controller import ControllerMetrics
from ballast.kube.rest import send_json
from ballast.slo import WindowCatalogue, workbook_windows
from ballast.slo.crd import GROUP, SLOS, VERSION, ServiceLevelObjectiveSpec, to_objective
from ballast.slo.evaluation import Measurement
from ballast.slo_engine.app import not_evaluated
from ballast.slo_engine.budgets import BudgetBook, BudgetShard
from ballast.slo_engine.controller import SloController
from ballast.testing import eventually

cluster = pytest.mark.cluster

WINDOWS = workbook_windows(timedelta(days=30))
SPEC: dict[str, Any] = {
    "service": "shop",
    "objective": 99.9,
    "window": {"duration": "30d"},
    "sli": {"webAppAvailability": {"webApp": "shop"}},
    "alerting": {"name": "ShopDown"},
}


def slo(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture
async def book(bus: Bus) -> BudgetBook:
    await bus.ensure_streams([PLATFORM_EVENTS])
    await bus.ensure_buckets([SLO_BUDGETS])
    kv = await bus.kv(SLO_BUDGETS, BudgetShard)
    return BudgetBook(kv, bus.publisher, CATALOGUE.registry, "local", "/clusters/local/slo-engine")


@pytest.fixture
async def controller(kube_api: Any, slo_api: None, book: BudgetBook) -> AsyncIterator[SloController]:
    running = SloController(
        kube_api,
        book,
        ControllerMetrics(CollectorRegistry()),
        not_evaluated=lambda slo: not_evaluated(slo, WindowCatalogue.builtin(), prometheus=True),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    yield running
    stop.set()
    await task


async def status_of(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    obj = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, name)
    status: dict[str, Any] = obj.get("status") or {}
    return status


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


@cluster
async def test_the_budget_state_shows_in_the_status(
    kube_api: Any, controller: SloController, book: BudgetBook, namespace: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, slo("shop", SPEC))

    async def awaiting() -> bool:
        return conditions(await status_of(custom, namespace, "shop")).get("Ready") == ("Unknown", "AwaitingEvaluation")

    await eventually(awaiting, timeout=20, interval=0.1, what="Ready Unknown before any evaluation")
    objective = controller.objectives[(namespace, "shop")]

    at = datetime.now(UTC).replace(microsecond=0)
    burning = Measurement(at=at, windows=dict.fromkeys(WINDOWS.windows(), 0.1), period=0.0005)
    await book.evaluate(objective, namespace, WINDOWS, burning)
    controller.budget_changed(namespace, "shop")

    async def evaluated() -> dict[str, Any] | None:
        status = await status_of(custom, namespace, "shop")
        return status if conditions(status).get("Ready") == ("True", "Evaluated") else None

    status = await eventually(evaluated, timeout=20, interval=0.1, what="status written from the budget state")
    assert status["budgetRemaining"] == pytest.approx(0.5)
    assert status["firingTiers"] == ["page", "ticket"]
    assert [r["window"] for r in status["burnRates"]] == ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    assert status["burnRates"][0]["burnRate"] == pytest.approx(100)
    assert status["timeToExhaustion"] == "3h36m"  # half of 30 days' budget at 100x
    assert conditions(status)["Burning"] == ("True", "PageBurnFiring")
    assert conditions(status)["BudgetExhausted"] == ("False", "BudgetLeft")

    # `kubectl get slo` reads its columns from the same fields.
    table = await send_json(
        kube_api,
        "GET",
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{SLOS}",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
    )
    (row,) = table["rows"]
    names = [c["name"] for c in table["columnDefinitions"]]
    # Priority 1 columns (Type) come too; kubectl shows them only with -o wide.
    assert dict(zip(names, row["cells"], strict=True)) | {"Age": None} == {
        "Name": "shop",
        "Service": "shop",
        "Objective": 99.9,
        "Window": "30d",
        "Budget": 0.5,
        "Burning": "page",
        "Type": "Rolling",
        "Age": None,
    }


@cluster
async def test_an_slo_the_model_refuses_says_why_and_a_deleted_ones_state_goes(
    kube_api: client.ApiClient, controller: SloController, book: BudgetBook, namespace: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    mars = SPEC | {"window": {"type": "Calendar", "duration": "1M", "timeZone": "Mars/Olympus_Mons"}}
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, slo("mars", mars))

    async def refused() -> str | None:
        ready = conditions(await status_of(custom, namespace, "mars")).get("Ready")
        return ready[1] if ready is not None and ready[0] == "False" else None

    assert await eventually(refused, timeout=20, interval=0.1, what="Ready False") == "InvalidSpec"
    message = next(c["message"] for c in (await status_of(custom, namespace, "mars"))["conditions"])
    assert "'Mars/Olympus_Mons' is not an IANA time zone" in message
    assert (namespace, "mars") not in controller.objectives

    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, slo("shop", SPEC))
    await eventually(lambda: controller.objectives.get((namespace, "shop")), timeout=20, what="SLO read")
    at = datetime.now(UTC)
    measured = Measurement(at=at, windows=dict.fromkeys(WINDOWS.windows(), 0.0), period=0.0)
    await book.evaluate(controller.objectives[(namespace, "shop")], namespace, WINDOWS, measured)
    assert await book.state(namespace, "shop") is not None

    await custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, "shop")

    async def dropped() -> bool:
        return await book.state(namespace, "shop") is None

    await eventually(dropped, timeout=20, interval=0.1, what="budget state dropped")


EVENTS = {"eventRatio": {"errorQuery": "sum(rate(e[{{.window}}]))", "totalQuery": "sum(rate(t[{{.window}}]))"}}
CALENDAR = {"type": "Calendar", "duration": "1M", "timeZone": "Europe/Berlin"}
WEEKLY = {"type": "Calendar", "duration": "1w"}


@pytest.mark.parametrize(
    ("changes", "prometheus", "reason"),
    [
        ({}, True, None),  # availability: the engine's own measurer
        ({"window": CALENDAR}, False, None),
        ({"sli": EVENTS}, True, None),
        ({"sli": EVENTS}, False, "the engine reads no Prometheus (BALLAST_PROMETHEUS_URL is unset)"),
        ({"sli": EVENTS, "window": CALENDAR}, True, None),  # a month: the 30-day table
        ({"sli": EVENTS, "window": WEEKLY}, True, "no alert windows for a 1w period"),
        ({"sli": EVENTS, "window": {"duration": "14d"}}, True, "no alert windows for a 2w period"),
    ],
)
def test_what_no_measurer_of_the_engine_evaluates_is_told_why(
    changes: dict[str, Any], prometheus: bool, reason: str | None
) -> None:
    objective = to_objective("shop", "slo", ServiceLevelObjectiveSpec.model_validate(SPEC | changes))
    found = not_evaluated(objective, WindowCatalogue.builtin(), prometheus=prometheus)
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert reason in found


@cluster
async def test_an_slo_no_measurer_evaluates_says_why_instead_of_awaiting_evaluation(
    kube_api: Any, controller: SloController, namespace: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    weekly = SPEC | {"sli": EVENTS, "window": WEEKLY}  # no alert window table for a week among the built-in ones
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SLOS, slo("weekly", weekly))

    async def not_ready() -> dict[str, Any] | None:
        found = {c["type"]: c for c in (await status_of(custom, namespace, "weekly")).get("conditions", [])}
        ready = found.get("Ready")
        return ready if ready is not None and ready["status"] == "False" else None

    ready = await eventually(not_ready, timeout=20, interval=0.1, what="Ready False")
    assert ready["reason"] == "NotEvaluated"
    assert "no alert windows for a 1w period" in ready["message"]
    assert (namespace, "weekly") in controller.objectives  # a valid SLO all the same
