"""Pydantic models made from values this process computed itself, without validating them again.

A hot path that makes thousands of models a second from its own arithmetic (the slo-engine's budget states, every
SLO every cycle) pays for validation that can find nothing: the values were made of the right types by code, from
inputs validated where they entered. Values from outside (the bus, the bucket, Kubernetes) are always validated.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_new = object.__new__
_set = object.__setattr__


@functools.cache
def _fields(model: type[BaseModel]) -> frozenset[str]:
    if model.__private_attributes__ or model.model_config.get("extra") == "allow":
        raise TypeError(f"{model.__name__} keeps private or extra attributes: build it by validation")
    return frozenset(model.model_fields)


def trusted(model: type[M], values: dict[str, Any]) -> M:
    """`model` holding `values` (every field, each of the field's type) as they are: what `model_construct` makes
    when given every field, without its Python pass over each field's aliases and default (for an 11-field state
    1.5 µs, against 9 µs for `model_construct` and 7 µs to validate). The caller vouches for the values; its tests
    check that validating the model's dump gives the same model back. `values` becomes the model's own: not to be
    changed after."""
    fields = _fields(model)
    assert values.keys() == fields, f"{model.__name__}: {sorted(values.keys() ^ fields)} given or missing"
    instance = _new(model)
    _set(instance, "__dict__", values)
    _set(instance, "__pydantic_fields_set__", set(fields))  # a set of its own, as `model_copy` updates it
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance
