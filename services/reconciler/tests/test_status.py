"""Status and conditions from what the cluster reports, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ballast.reconciler.api import WebApp
from ballast.reconciler.status import Problem, pod_problem, same_status, webapp_status

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


AUTOSCALED = {"enabled": True, "minReplicas": 2, "maxReplicas": 5}


def webapp(generation: int = 2, status: dict[str, Any] | None = None, autoscaling: Any = None) -> WebApp:
    spec = {"image": "registry.example.com/shop/web:1", "replicas": 3, "autoscaling": autoscaling or {}}
    return WebApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "shop", "uid": "u", "generation": generation},
            "spec": spec,
            "status": status,
        }
    )


def deployment(
    *,
    ready: int,
    updated: int,
    replicas: int = 3,
    desired: int = 3,
    available: int | None = None,
    observed: int = 5,
    conditions: Any = None,
) -> Any:
    return {
        "metadata": {"name": "web", "generation": 5},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "availableReplicas": ready if available is None else available,
            "conditions": conditions or [],
        },
    }


def conditions(status: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_all_replicas_ready_is_ready_and_not_progressing() -> None:
    status = webapp_status(webapp(), deployment(ready=3, updated=3), [], problem=None, now=T0)
    assert conditions(status) == {
        "Ready": ("True", "AllReplicasReady"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert (status.observed_generation, status.replicas, status.ready_replicas) == (2, 3, 3)
    assert (status.desired_replicas, status.updated_replicas, status.available_replicas) == (3, 3, 3)
    assert status.selector == "app.kubernetes.io/instance=web,app.kubernetes.io/name=web"
    assert all(c.observed_generation == 2 for c in status.conditions)


def test_a_rollout_in_progress_is_progressing_and_not_ready() -> None:
    status = webapp_status(webapp(), deployment(ready=3, updated=1, replicas=4), [], problem=None, now=T0)
    assert conditions(status)["Ready"] == ("False", "ReplicasNotReady")
    assert conditions(status)["Progressing"] == ("True", "RollingOut")
    stale = webapp_status(webapp(), deployment(ready=3, updated=3, observed=4), [], problem=None, now=T0)
    assert conditions(stale)["Ready"][0] == "False", "a Deployment that has not seen its new spec is not ready"


def test_under_autoscaling_the_counts_are_the_deployments_not_the_specs() -> None:
    # spec.replicas is 3; the HPA holds the Deployment at its minimum, 2.
    scaled = deployment(ready=2, updated=2, replicas=2, desired=2, available=1)
    status = webapp_status(webapp(autoscaling=AUTOSCALED), scaled, [], problem=None, now=T0)
    assert (status.desired_replicas, status.ready_replicas, status.available_replicas) == (2, 2, 1)
    assert conditions(status)["Ready"] == ("True", "AllReplicasReady")
    assert {c.type: c for c in status.conditions}["Ready"].message == "2/2 replicas ready"


def test_before_the_deployment_exists_the_desired_count_is_what_it_starts_from() -> None:
    creating = webapp_status(webapp(), None, [], problem=None, now=T0)
    assert (creating.desired_replicas, creating.replicas, creating.ready_replicas) == (3, 0, 0)
    autoscaled = webapp_status(webapp(autoscaling=AUTOSCALED), None, [], problem=None, now=T0)
    assert autoscaled.desired_replicas == 2, "the HPA's minimum, not spec.replicas"


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = webapp_status(webapp(), deployment(ready=1, updated=3), [], problem=None, now=T0)
    previous = webapp(status=first.model_dump(mode="json", by_alias=True))
    same = webapp_status(previous, deployment(ready=2, updated=3), [], problem=None, now=T0 + timedelta(minutes=1))
    ready = {c.type: c for c in same.conditions}["Ready"]
    assert ready.last_transition_time == T0
    assert ready.message == "2/3 replicas ready"
    became_ready = webapp_status(previous, deployment(ready=3, updated=3), [], problem=None, now=T0 + timedelta(1))
    assert {c.type: c for c in became_ready.conditions}["Ready"].last_transition_time == T0 + timedelta(1)


def test_unchanged_cluster_gives_an_equal_status() -> None:
    first = webapp_status(webapp(), deployment(ready=3, updated=3), [], problem=None, now=T0)
    again = webapp_status(
        webapp(status=first.model_dump(mode="json", by_alias=True)),
        deployment(ready=3, updated=3),
        [],
        problem=None,
        now=T0 + timedelta(hours=1),
    )
    assert same_status(first, again)
    assert not same_status(first, webapp_status(webapp(), deployment(ready=2, updated=3), [], problem=None, now=T0))
    # A count only the columns show is written too.
    fewer_available = deployment(ready=3, updated=3, available=2)
    assert not same_status(first, webapp_status(webapp(), fewer_available, [], problem=None, now=T0))


def test_crash_looping_pods_make_it_degraded_with_the_kubelets_reason() -> None:
    pods = [
        {
            "metadata": {"name": "web-1"},
            "status": {
                "containerStatuses": [
                    {"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}}
                ]
            },
        }
    ]
    status = webapp_status(webapp(), deployment(ready=2, updated=3), pods, problem=None, now=T0)
    assert conditions(status)["Degraded"] == ("True", "CrashLoopBackOff")
    assert "web-1/app" in {c.type: c for c in status.conditions}["Degraded"].message
    oom = [
        {
            "metadata": {"name": "web-2"},
            "status": {
                "containerStatuses": [
                    {"name": "app", "state": {"running": {}}, "lastState": {"terminated": {"reason": "OOMKilled"}}}
                ]
            },
        }
    ]
    assert pod_problem(oom) == Problem("OOMKilled", "OOMKilled: web-2/app: container app in pod web-2")


def test_exceeded_quota_and_reconcile_problems_are_reported() -> None:
    quota = deployment(
        ready=1,
        updated=1,
        conditions=[
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": 'pods "web-x" is forbidden: exceeded quota: tenant-quota',
            }
        ],
    )
    assert conditions(webapp_status(webapp(), quota, [], problem=None, now=T0))["Degraded"] == ("True", "QuotaExceeded")
    denied = Problem("PolicyDenied", "allowed-repos: Deployment/web: image registry not allowed")
    status = webapp_status(webapp(), None, [], problem=denied, now=T0)
    assert conditions(status)["Degraded"] == ("True", "PolicyDenied")
    assert conditions(status)["Ready"] == ("False", "PolicyDenied")
