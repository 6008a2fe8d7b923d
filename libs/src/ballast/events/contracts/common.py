"""What every area's contract shares: the payload base, references to Kubernetes objects, platform subjects."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ballast.events.registry import EventSpec

CLUSTER_SCOPED = "_"  # the namespace token of cluster-scoped objects


class Payload(BaseModel):
    """Field names are the JSON names on the wire; unknown fields are refused, so that a producer's typo is caught
    by the consumer's schema check instead of being silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ManifestRef(Payload):
    """A Kubernetes object by its kind and name, as a manifest names it (it may not exist yet)."""

    api_version: str = Field(min_length=1, description="apiVersion of the object, e.g. apps/v1")
    kind: str = Field(min_length=1, description="e.g. Deployment")
    namespace: str | None = Field(default=None, description="None for cluster-scoped objects")
    name: str = Field(min_length=1, description="metadata.name")


class ObjectRef(ManifestRef):
    """An object that exists in the cluster, with the uid that tells it apart from an earlier one of the same name."""

    uid: str = Field(description="metadata.uid")


def platform_subject(area: str, cluster: str, namespace: str | None, event: str) -> str:
    return f"evt.{area}.{cluster}.{namespace or CLUSTER_SCOPED}.{event}"


def platform_event_type(area: str, event: str) -> str:
    return f"io.ballast.{area}.{event}.v1"


def platform_event(area: str, event: str, model: type[Payload], description: str) -> EventSpec:
    """The spec of a platform event: `io.ballast.<area>.<event>.v1` on `evt.<area>.{cluster}.{namespace}.<event>`."""
    return EventSpec(
        ce_type=platform_event_type(area, event),
        model=model,
        subject=f"evt.{area}.{{cluster}}.{{namespace}}.{event}",
        description=description,
    )
