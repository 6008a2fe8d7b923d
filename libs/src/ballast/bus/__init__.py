"""JetStream plumbing for Ballast services: connection, streams, de-duplicated publishing, durable pull consumers
with retry and dead letters, typed request/reply endpoints, typed key-value state and ordered stream reading."""

from ballast.bus.batch import BatchConsumer, BatchHandler, Outcomes
from ballast.bus.connection import Bus, BusOptions
from ballast.bus.consumer import Consumer, Delivery, Reject, RetryLater
from ballast.bus.endpoints import EndpointCallError, EndpointError
from ballast.bus.kv import (
    CAUGHT_UP,
    CaughtUp,
    Entry,
    KeyExists,
    KeyValue,
    KvConflict,
    RevisionConflict,
    StoredValueError,
    Watch,
)
from ballast.bus.publisher import Publisher, PublishError
from ballast.bus.reader import LAST, StoredEvent, StreamReader

__all__ = [
    "CAUGHT_UP",
    "LAST",
    "BatchConsumer",
    "BatchHandler",
    "Bus",
    "BusOptions",
    "CaughtUp",
    "Consumer",
    "Delivery",
    "EndpointCallError",
    "EndpointError",
    "Entry",
    "KeyExists",
    "KeyValue",
    "KvConflict",
    "Outcomes",
    "PublishError",
    "Publisher",
    "Reject",
    "RetryLater",
    "RevisionConflict",
    "StoredEvent",
    "StoredValueError",
    "StreamReader",
    "Watch",
]
