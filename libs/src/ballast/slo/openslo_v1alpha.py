"""OpenSLO `openslo/v1alpha` SLOs read the way Sloth reads them.

Only ratioMetrics with good/total PromQL, turned into a raw error ratio with Sloth's own text so the rules come out
the same; each objective becomes an SLO named `<name>-<index>`; no alerts; and a time window in days that must be
the period the rules are generated for (`--default-slo-period`), as Sloth's validation requires.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ballast.slo.alerting import Alerting
from ballast.slo.errors import InvalidSpec, SpecError, from_validation
from ballast.slo.group import SloGroup, SpecFormat
from ballast.slo.objective import ServiceLevelObjective
from ballast.slo.sli import RawErrorRatioSli
from ballast.slo.window import RollingWindow

_SLOTH_RAW = """
  1 - (
    (
      {good}
    )
    /
    (
      {total}
    )
  )
"""


class _AlphaPart(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _AlphaQuery(_AlphaPart):
    source: Literal["prometheus", "sloth"]
    query_type: Literal["promql"] = Field(alias="queryType")
    query: str = Field(min_length=1)


class _AlphaRatio(_AlphaPart):
    good: _AlphaQuery
    total: _AlphaQuery


class _AlphaObjective(_AlphaPart):
    ratio_metrics: _AlphaRatio = Field(alias="ratioMetrics")
    target: float = Field(gt=0, le=1)


class _AlphaWindow(_AlphaPart):
    count: int = Field(gt=0)
    unit: Annotated[str, Field(pattern=r"(?i)^day$", description="Sloth reads day-based windows only")]


class _AlphaSpec(_AlphaPart):
    service: str = Field(min_length=1)
    description: str = ""
    objectives: list[_AlphaObjective] = Field(min_length=1)
    time_windows: list[_AlphaWindow] = Field(default_factory=list, alias="timeWindows", max_length=1)


class _AlphaMetadata(_AlphaPart):
    name: str = Field(min_length=1)


class _AlphaSlo(_AlphaPart):
    api_version: Literal["openslo/v1alpha"] = Field(alias="apiVersion")
    kind: Literal["SLO"]
    metadata: _AlphaMetadata
    spec: _AlphaSpec


def load_v1alpha(data: Any, file: str, document: int, period: timedelta) -> SloGroup:
    try:
        slo = _AlphaSlo.model_validate(data)
    except ValidationError as error:
        raise InvalidSpec(from_validation(error, file, document)) from None
    spec = slo.spec
    if spec.time_windows and timedelta(days=spec.time_windows[0].count) != period:
        days = spec.time_windows[0].count
        rule = f"{days} days is not the {period.days}-day SLO period the rules are generated for (--default-slo-period)"
        raise InvalidSpec([SpecError(file, document, "spec.timeWindows[0].count", rule)])
    slos = []
    for index, objective in enumerate(spec.objectives):
        ratio = objective.ratio_metrics
        try:
            slos.append(
                ServiceLevelObjective(
                    service=spec.service,
                    name=f"{slo.metadata.name}-{index}",
                    description=spec.description,
                    objective=objective.target * 100,
                    window=RollingWindow(length=period),
                    sli=RawErrorRatioSli(
                        error_ratio_query=_SLOTH_RAW.format(good=ratio.good.query, total=ratio.total.query)
                    ),
                    alerting=Alerting(),
                )
            )
        except ValidationError as error:
            raise InvalidSpec(from_validation(error, file, document, prefix=f"spec.objectives[{index}]")) from None
    return SloGroup(file, document, SpecFormat.OPENSLO_V1ALPHA, tuple(slos))
