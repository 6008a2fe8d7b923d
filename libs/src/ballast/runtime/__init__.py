"""What every Ballast service process shares: configuration, health and metrics endpoints, signals, wiring."""

from ballast.runtime.app import ServiceApp, run_service
from ballast.runtime.config import ConfigError, ServiceSettings, load_settings

__all__ = ["ConfigError", "ServiceApp", "ServiceSettings", "load_settings", "run_service"]
