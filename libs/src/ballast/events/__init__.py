"""CloudEvents 1.0 envelope, the areas' contracts and the subject catalogue shared by every Ballast service."""

from ballast.events.envelope import (
    DecodeFailure,
    Envelope,
    EventDecodeError,
    decode,
    encode,
    new_event,
)
from ballast.events.registry import EndpointSpec, EventSpec, TypeRegistry

__all__ = [
    "DecodeFailure",
    "EndpointSpec",
    "Envelope",
    "EventDecodeError",
    "EventSpec",
    "TypeRegistry",
    "decode",
    "encode",
    "new_event",
]
