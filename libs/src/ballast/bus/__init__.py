"""JetStream plumbing for Ballast services: connection, streams, de-duplicated publishing, durable pull consumers
with retry and dead letters, and typed request/reply endpoints."""

from ballast.bus.connection import Bus, BusOptions
from ballast.bus.consumer import Consumer, Delivery, Reject, RetryLater
from ballast.bus.endpoints import EndpointCallError, EndpointError
from ballast.bus.publisher import Publisher, PublishError

__all__ = [
    "Bus",
    "BusOptions",
    "Consumer",
    "Delivery",
    "EndpointCallError",
    "EndpointError",
    "PublishError",
    "Publisher",
    "Reject",
    "RetryLater",
]
