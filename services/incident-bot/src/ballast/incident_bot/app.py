"""Wiring of the incident-bot service: its settings and the handlers it registers with the runtime."""

from __future__ import annotations

from pydantic import Field

from ballast.runtime import PORTS, ServiceApp, ServiceSettings

NAME = "incident-bot"


class IncidentBotSettings(ServiceSettings):
    http_port: int = Field(default=PORTS[NAME].health, ge=0, le=65535)


def build(settings: IncidentBotSettings) -> ServiceApp:
    return ServiceApp(NAME, settings)
