"""What every Ballast service process shares: configuration, health and metrics endpoints, signals, wiring."""

from ballast.runtime.app import Election, Resource, ServiceApp, run_service
from ballast.runtime.config import ConfigError, HttpsSettings, ServiceSettings, load_settings
from ballast.runtime.ports import PORTS

__all__ = [
    "PORTS",
    "ConfigError",
    "Election",
    "HttpsSettings",
    "Resource",
    "ServiceApp",
    "ServiceSettings",
    "load_settings",
    "run_service",
]
