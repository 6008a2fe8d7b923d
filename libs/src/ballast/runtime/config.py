"""Service configuration from the environment (`BALLAST_*`); a bad value stops start-up naming the variable."""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BALLAST_"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    nats_url: str = Field(default="nats://127.0.0.1:4222", pattern=r"^(nats|tls)://")
    cluster: str = Field(default="local", pattern=r"^[A-Za-z0-9_-]+$", description="cluster name in subjects")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535, description="health and metrics; 0 picks a free port")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_grace: float = Field(default=20.0, gt=0, description="seconds in-flight work gets after SIGTERM")
    connect_wait: float = Field(default=30.0, ge=0, description="seconds to wait for NATS at start-up")
    ensure_streams: bool = Field(default=True, description="create the catalogue's streams at start (local use)")

    def masked(self) -> dict[str, object]:
        """The settings as printed at start: secrets masked, credentials stripped from URLs."""
        shown: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********"
            elif isinstance(value, str) and "://" in value and "@" in value:
                scheme, rest = value.split("://", 1)
                value = f"{scheme}://********@{rest.rsplit('@', 1)[1]}"
            shown[name] = value
        return shown


class ConfigError(Exception):
    """A configuration value is invalid; the message names the environment variable."""


S = TypeVar("S", bound=ServiceSettings)


def load_settings(settings_type: type[S]) -> S:
    try:
        return settings_type()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            secret = settings_type.model_fields.get(field) is not None and "Secret" in str(
                settings_type.model_fields[field].annotation
            )
            got = "" if secret else f" (got {error.get('input')!r})"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}{got}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from exc
