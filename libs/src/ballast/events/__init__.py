"""CloudEvents 1.0 envelope, typed payloads and the subject catalogue shared by every Ballast service."""

from ballast.events.envelope import (
    DecodeFailure,
    Envelope,
    EventDecodeError,
    decode,
    encode,
    new_event,
)
from ballast.events.registry import EventType, TypeRegistry

__all__ = [
    "DecodeFailure",
    "Envelope",
    "EventDecodeError",
    "EventType",
    "TypeRegistry",
    "decode",
    "encode",
    "new_event",
]
