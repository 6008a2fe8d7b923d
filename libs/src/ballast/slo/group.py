"""The SLOs one spec document declared, with where they came from: errors and generated files point back to it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ballast.slo.objective import ServiceLevelObjective


class SpecFormat(enum.StrEnum):
    """The document formats that load, by the apiVersion (or Sloth `version`) they declare."""

    SLOTH_PROMETHEUS = "prometheus/v1"
    SLOTH_KUBERNETES = "sloth.slok.dev/v1"
    OPENSLO_V1ALPHA = "openslo/v1alpha"
    OPENSLO_V1 = "openslo/v1"
    # Ballast's own ServiceLevelObjective objects, which the slo-engine reads from the cluster (not from files).
    BALLAST = "platform.example.com/v1"


@dataclass(frozen=True)
class KubernetesObject:
    """The metadata of a spec that was a Kubernetes object: its rules become a PrometheusRule of the same name."""

    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True)
class SloGroup:
    file: str
    document: int  # 1-based position in the file's YAML stream
    format: SpecFormat
    slos: tuple[ServiceLevelObjective, ...]
    kubernetes: KubernetesObject | None = None
