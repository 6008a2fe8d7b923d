"""Raw requests to the API server through a kubernetes-asyncio ApiClient (its auth, TLS and connection pool),
for paths the typed client has no method for and for bodies we keep as plain JSON.

The client raises for HTTP errors only when it preloads the body; these helpers always do, so a refused request
is never mistaken for an object.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


async def send(
    api: Any,  # kubernetes_asyncio ApiClient
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    timeout: float | None = 30,
) -> Any:
    """The open response (for streaming); raises ApiException, with the API server's Status as body, on an error."""
    from kubernetes_asyncio.client.exceptions import ApiException

    response = await api.call_api(
        path,
        method,
        query_params=query or [],
        header_params={"Accept": "application/json", **(headers or {})},
        body=body,
        auth_settings=["BearerToken"],
        _preload_content=False,
        _request_timeout=timeout,
    )
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = (await response.read()).decode(errors="replace")
        response.release()
        raise error
    return response


async def send_json(api: Any, method: str, path: str, **options: Any) -> dict[str, Any]:
    response = await send(api, method, path, **options)
    try:
        body: dict[str, Any] = json.loads(await response.read())
    finally:
        response.release()
    return body


def error_message(exc: Exception) -> str:
    """The API server's own message from an ApiException's Status body, else the HTTP reason."""
    try:
        message = json.loads(getattr(exc, "body", None) or "{}").get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return str(message or getattr(exc, "reason", None) or exc)


def micro_time(moment: datetime) -> str:
    """A MicroTime: exactly six fractional digits (isoformat drops them when they are zero)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
