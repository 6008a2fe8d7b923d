"""Service configuration from the environment (`BALLAST_*`); a bad value stops start-up naming the variable."""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "BALLAST_"
DEFAULT_MAX_BODY = 1024 * 1024  # an AdmissionReview of a large object stays well below this; the API server's is 3 MiB


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


class HttpsSettings(ServiceSettings):
    """For a service that receives webhooks: HTTPS on `http_host` beside the plain-HTTP health server.

    The service sets the `https_port` default from `ballast.runtime.ports`."""

    https_port: int = Field(ge=0, le=65535, description="inbound webhooks over TLS; 0 picks a free port")
    tls_cert_file: FilePath | None = Field(
        default=None, description="PEM chain, reloaded on change; unset: self-signed"
    )
    tls_key_file: FilePath | None = Field(default=None, description="PEM private key of tls_cert_file")
    tls_dns_names: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="comma-separated names the self-signed certificate adds to localhost and 127.0.0.1"
    )
    https_max_body: int = Field(default=DEFAULT_MAX_BODY, gt=0, description="bytes; a larger request gets 413")

    @field_validator("tls_dns_names", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return tuple(name.strip() for name in value.split(",") if name.strip()) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cert_with_key(self) -> HttpsSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(f"{ENV_PREFIX}TLS_CERT_FILE and {ENV_PREFIX}TLS_KEY_FILE go together: set both or neither")
        return self


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
            # A check across fields (model_validator) has no location; its message names the variables.
            problems.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}{got}" if field else error["msg"])
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from exc
