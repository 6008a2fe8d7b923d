from __future__ import annotations

from collections.abc import Callable

import pytest

from ballast.events import new_event
from ballast.events.contracts.common import ObjectRef
from ballast.events.contracts.k8s import ObservedObject, k8s_event_type
from ballast.events.envelope import Envelope


def observed(
    name: str, resource_version: str = "1", verb: str = "updated", namespace: str = "shop"
) -> Envelope[ObservedObject]:
    """An observed-Deployment event whose id derives from the fact, as the reconciler's watch produces them."""
    data = ObservedObject(
        cluster="test",
        object=ObjectRef(api_version="apps/v1", kind="Deployment", namespace=namespace, name=name, uid=f"uid-{name}"),
        resource_version=resource_version,
        replicas=3,
        ready_replicas=3,
        image="registry.example.com/shop/web:1.2.3",
    )
    return new_event(
        k8s_event_type("Deployment", verb),
        "/clusters/test/reconciler",
        data,
        subject=f"{namespace}/{name}",
        event_id=f"uid-{name}:{resource_version}:{verb}",
    )


@pytest.fixture
def observed_event() -> Callable[..., Envelope[ObservedObject]]:
    return observed
