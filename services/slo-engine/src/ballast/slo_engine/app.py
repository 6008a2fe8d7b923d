"""Wiring of the slo-engine service: its settings and the handlers it registers with the runtime."""

from __future__ import annotations

from pydantic import Field

from ballast.runtime import PORTS, ServiceApp, ServiceSettings

NAME = "slo-engine"


class SloEngineSettings(ServiceSettings):
    http_port: int = Field(default=PORTS[NAME].health, ge=0, le=65535)


def build(settings: SloEngineSettings) -> ServiceApp:
    return ServiceApp(NAME, settings)
