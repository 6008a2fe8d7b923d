"""Wiring of the reconciler service: its settings and the handlers it registers with the runtime."""

from __future__ import annotations

from pydantic import Field

from ballast.runtime import ServiceApp, ServiceSettings

NAME = "reconciler"


class ReconcilerSettings(ServiceSettings):
    http_port: int = Field(default=8081, ge=0, le=65535)


def build(settings: ReconcilerSettings) -> ServiceApp:
    return ServiceApp(NAME, settings)
