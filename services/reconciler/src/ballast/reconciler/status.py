"""WebApp status from what the cluster reports, computed without I/O, following the API conventions.

Conditions: Ready (all desired replicas of the current generation are ready), Progressing (a rollout or scale is
under way), Degraded (something keeps the WebApp from its desired state; the reason says what). `lastTransitionTime`
changes only when a condition's status does, so an unchanged WebApp produces an identical status and no write.
The replica counts are the Deployment's (what `kubectl get webapps` shows): under autoscaling they follow the HPA, not
spec.replicas.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ballast.kube.conditions import Condition, set_condition
from ballast.reconciler.api import WebApp, WebAppStatus
from ballast.reconciler.render import minimum_replicas, selector_labels

# Container waiting/terminated reasons that mean the pods will not become ready by themselves.
POD_FAILURE_REASONS = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
     "CreateContainerError", "OOMKilled", "RunContainerError"}
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    """Why a WebApp is Degraded: a CamelCase reason and a message for people."""

    reason: str
    message: str


def _condition(cond_type: str, status: bool, reason: str, message: str) -> tuple[str, bool, str, str]:
    return cond_type, status, reason, message


def set_conditions(
    previous: list[Condition], wanted: list[tuple[str, bool, str, str]], generation: int | None, now: datetime
) -> list[Condition]:
    """Each wanted condition set on the previous ones (lastTransitionTime kept unless its status changed)."""
    conditions = previous
    for cond_type, status, reason, message in wanted:
        conditions = set_condition(
            conditions, cond_type, status, reason, message, observed_generation=generation, now=now
        )
    return conditions


def pod_problem(pods: list[dict[str, Any]]) -> Problem | None:
    """The first pod failure the kubelet reports, as `Reason: pod/container: message`."""
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses", []) or []:
            state = status.get("state", {})
            last = status.get("lastState", {}).get("terminated", {})
            for detail in (state.get("waiting", {}), state.get("terminated", {}), last):
                reason = detail.get("reason")
                if reason in POD_FAILURE_REASONS:
                    name = pod["metadata"]["name"]
                    message = detail.get("message") or f"container {status.get('name')} in pod {name}"
                    return Problem(reason, f"{reason}: {name}/{status.get('name')}: {message}")
    return None


def deployment_problem(deployment: dict[str, Any]) -> Problem | None:
    for condition in deployment.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            message = condition.get("message", "")
            reason = "QuotaExceeded" if "exceeded quota" in message else "ReplicaFailure"
            return Problem(reason, message)
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return Problem("ProgressDeadlineExceeded", condition.get("message", ""))
    return None


def webapp_status(
    webapp: WebApp,
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    *,
    problem: Problem | None,
    now: datetime,
) -> WebAppStatus:
    """The status to report. `problem` is what the reconcile itself ran into (a policy denial, an apply refused)."""
    generation = webapp.metadata.generation
    previous = webapp.status.conditions if webapp.status else []
    selector = ",".join(f"{k}={v}" for k, v in sorted(selector_labels(webapp).items()))
    status_of: dict[str, Any] = (deployment or {}).get("status", {})
    spec_of: dict[str, Any] = (deployment or {}).get("spec", {})
    # The Deployment's own count: under autoscaling the HPA's choice, not spec.replicas. Before the Deployment exists,
    # what it will start from.
    desired = spec_of.get("replicas", minimum_replicas(webapp))
    ready = status_of.get("readyReplicas", 0)
    updated = status_of.get("updatedReplicas", 0)
    current = (deployment is not None and status_of.get("observedGeneration", 0)
               >= deployment["metadata"].get("generation", 0))  # fmt: skip
    problem = problem or (deployment_problem(deployment) if deployment else None) or pod_problem(pods)
    rolled_out = current and updated >= desired and ready >= desired and status_of.get("replicas", 0) <= desired
    if problem is not None:
        ready_cond = _condition("Ready", False, problem.reason, problem.message)
    elif deployment is None:
        ready_cond = _condition("Ready", False, "Creating", "the Deployment is being created")
    elif rolled_out:
        ready_cond = _condition("Ready", True, "AllReplicasReady", f"{ready}/{desired} replicas ready")
    else:
        ready_cond = _condition("Ready", False, "ReplicasNotReady", f"{ready}/{desired} replicas ready")
    if rolled_out:
        progressing = _condition("Progressing", False, "RolloutComplete", f"{updated} replicas up to date")
    else:
        progressing = _condition("Progressing", True, "RollingOut", f"{updated}/{desired} replicas updated")
    if problem is not None:
        degraded = _condition("Degraded", True, problem.reason, problem.message)
    else:
        degraded = _condition("Degraded", False, "AsExpected", "")
    return WebAppStatus(
        observed_generation=generation,
        replicas=status_of.get("replicas", 0),
        desired_replicas=desired,
        ready_replicas=ready,
        updated_replicas=updated,
        available_replicas=status_of.get("availableReplicas", 0),
        selector=selector,
        conditions=set_conditions(previous, [ready_cond, progressing, degraded], generation, now),
    )


def same_status(a: WebAppStatus | None, b: WebAppStatus) -> bool:
    """Equal for the purpose of writing: conditions compared without timestamps."""
    if a is None:
        return False

    def key(status: WebAppStatus) -> Any:
        conditions = sorted((c.type, c.status, c.reason, c.message, c.observed_generation) for c in status.conditions)
        return status.model_dump(exclude={"conditions"}), conditions

    return bool(key(a) == key(b))
