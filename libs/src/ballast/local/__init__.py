"""Real servers run as local processes: the embedded default of `ballast up` and of the test fixtures."""

from ballast.local.nats_server import NatsServer, find_nats_server, free_port

__all__ = ["NatsServer", "find_nats_server", "free_port"]
