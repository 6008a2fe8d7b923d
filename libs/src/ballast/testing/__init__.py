"""Test support: real servers started on 127.0.0.1 for the duration of a test run."""

from ballast.local.nats_server import NatsServer, find_nats_server
from ballast.testing.service_process import ServiceProcess
from ballast.testing.waiting import eventually

__all__ = ["NatsServer", "ServiceProcess", "eventually", "find_nats_server"]
