"""The rule of a WebApp's availability SLI, read from the cluster facts on the bus (`evt.k8s`, ObservedObject).

A WebApp is up while its ready replicas meet the desired ones (a WebApp scaled to zero is up: nothing is missing), down
while they fall short; the fact may come from the WebApp or from the Deployment it owns. The slo-engine measures
budgets with it and replay backtests candidate SLOs with it, so both must read facts the same way.
"""

from __future__ import annotations

from ballast.events.contracts.k8s import ObservedObject


def webapp_of(fact: ObservedObject) -> tuple[str, str] | None:
    """(namespace, name) of the WebApp a WebApp or Deployment fact is about; None for anything else."""
    if fact.object.kind == "WebApp":
        target = fact.object
    elif fact.object.kind == "Deployment" and fact.owner is not None and fact.owner.kind == "WebApp":
        target = fact.owner
    else:
        return None
    return (target.namespace or fact.object.namespace or "", target.name)


def replicas_up(fact: ObservedObject) -> bool | None:
    """Whether the fact's ready replicas meet the desired ones; None when it says nothing about replicas (a WebApp
    under autoscaling: its Deployment's facts tell)."""
    if fact.replicas is None:
        return None
    return (fact.ready_replicas or 0) >= fact.replicas
