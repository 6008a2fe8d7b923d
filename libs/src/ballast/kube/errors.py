"""Ballast's own API errors: the one kind of exception that crosses module boundaries for a refused request.

Only the REST layer (`ballast.kube.rest`) raises them, built from the API server's `Status` body, so callers catch
`NotFound` or `Conflict` instead of comparing status codes of the client library's exception, and a refusal never
reaches a caller as if it were an object. `Invalid` carries the field causes the API server names (`spec.replicas`,
…), which is what a user needs to fix the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Cause:
    """One reason of a refusal, as `Status.details.causes[]` gives it: the field (`spec.replicas`), the reason
    (`FieldValueInvalid`) and the message."""

    field: str
    reason: str
    message: str


class ApiError(Exception):
    """The API server refused a request. `status` is the HTTP code, `reason` the Status reason (`NotFound`,
    `Invalid`, …), `message` the API server's own words, `body` the whole Status object (empty if it sent none)."""

    def __init__(self, status: int, reason: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body: dict[str, Any] = body or {}

    @property
    def causes(self) -> list[Cause]:
        details = self.body.get("details") or {}
        return [
            Cause(cause.get("field", ""), cause.get("reason", ""), cause.get("message", ""))
            for cause in details.get("causes") or []
        ]

    @property
    def retry_after(self) -> float | None:
        """Seconds the API server asks to wait before trying again (`details.retryAfterSeconds`, sent with a 429 —
        throttled, or a freshly installed kind's watch cache still initializing), or None if it named none."""
        seconds = (self.body.get("details") or {}).get("retryAfterSeconds")
        return float(seconds) if isinstance(seconds, int | float) and seconds > 0 else None

    @property
    def transient(self) -> bool:
        """Worth retrying with backoff: a conflict, throttling, or the API server (or etcd) failing for now."""
        return self.status in (409, 429) or self.status >= 500


class NotFound(ApiError):
    """404: the object (or its kind) does not exist."""


class Conflict(ApiError):
    """409: someone else wrote the object first (resourceVersion precondition), or it already exists."""


class Gone(ApiError):
    """410: a watch's resourceVersion is too old (compacted away): relist."""


class Forbidden(ApiError):
    """403: RBAC refuses the request, or an admission plugin does (e.g. a namespace being terminated)."""


class Invalid(ApiError):
    """422: the object fails validation (schema, CEL rules, admission policy); `causes` name the fields."""


_BY_STATUS: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict, 410: Gone, 403: Forbidden, 422: Invalid}


def api_error(status: int, http_reason: str, raw: bytes) -> ApiError:
    """The error for a refused request, from the API server's Status body when it sent one."""
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict) or body.get("kind") != "Status":
        body = {}
    reason = body.get("reason") or http_reason or "Unknown"
    message = body.get("message") or raw.decode(errors="replace").strip() or http_reason
    return _BY_STATUS.get(status, ApiError)(status, reason, message, body)
