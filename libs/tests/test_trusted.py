"""Models made of values the process computed itself: the same models validation makes, and refused where they
could not be."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ConfigDict, PrivateAttr

from ballast.events.trusted import trusted


class Reading(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    value: float
    labels: dict[str, str] = {}


def test_a_trusted_model_equals_the_validated_one_and_behaves_as_one() -> None:
    values = {"at": datetime(2026, 12, 1, tzinfo=UTC), "value": 0.5, "labels": {"a": "b"}}
    made = trusted(Reading, dict(values))
    assert made == Reading.model_validate(values)
    assert made.model_dump_json() == Reading.model_validate(values).model_dump_json()
    assert made.model_fields_set == {"at", "value", "labels"}
    assert made.model_copy(update={"value": 1.0}).value == 1.0
    assert made.value == 0.5  # the copy did not change it
    with pytest.raises(ValueError, match="frozen"):
        made.value = 2.0  # type: ignore[misc]


def test_every_field_must_be_given() -> None:
    with pytest.raises(AssertionError, match="labels"):
        trusted(Reading, {"at": datetime(2026, 12, 1, tzinfo=UTC), "value": 0.5})


def test_a_model_with_private_attributes_is_refused() -> None:
    class Counter(BaseModel):
        count: int
        _seen: int = PrivateAttr(default=0)

    with pytest.raises(TypeError, match="by validation"):
        trusted(Counter, {"count": 1})
