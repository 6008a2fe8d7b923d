"""Status conditions as the Kubernetes API conventions define them (metav1.Condition), for every controller.

`set_condition` is apimachinery's `meta.SetStatusCondition`: a condition's `lastTransitionTime` moves only when its
status does, so reconciling an unchanged object computes an identical status and writes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

ConditionStatus = Literal["True", "False", "Unknown"]
MAX_MESSAGE = 32768  # metav1.Condition's limit on message length


class Condition(BaseModel):
    """metav1.Condition, camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    type: str = Field(min_length=1, max_length=316)
    status: ConditionStatus
    reason: str = Field(min_length=1, max_length=1024)
    message: str = Field(default="", max_length=MAX_MESSAGE)
    last_transition_time: datetime
    observed_generation: int | None = Field(default=None, ge=0)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool | ConditionStatus,
    reason: str,
    message: str,
    *,
    observed_generation: int | None,
    now: datetime,
) -> list[Condition]:
    """`conditions` with `type_` set (added, or replaced in place): lastTransitionTime kept unless the status
    changed. A bool status is True/False."""
    wanted: ConditionStatus = ("True" if status else "False") if isinstance(status, bool) else status
    old = find_condition(conditions, type_)
    condition = Condition(
        type=type_,
        status=wanted,
        reason=reason,
        message=message[:MAX_MESSAGE],
        last_transition_time=old.last_transition_time if old is not None and old.status == wanted else now,
        observed_generation=observed_generation,
    )
    if old is None:
        return [*conditions, condition]
    return [condition if c.type == type_ else c for c in conditions]


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.status == "True"
