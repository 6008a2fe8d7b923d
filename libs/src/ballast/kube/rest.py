"""Raw requests to the API server with a kubernetes-asyncio ApiClient's auth, TLS and connection pool, for paths
the typed client has no method for and for bodies we keep as plain JSON.

The requests go straight to the client's aiohttp session: the generated `call_api` walks every body to sanitise
it for serialisation and re-encodes it with the standard library, which in a busy operator costs more CPU than the
request itself; these bodies are plain JSON already. Auth still comes from the client's configuration on every
request (`update_params_for_auth`), so a refreshed token (in-cluster, exec plugins) is used as it changes.

Refused requests raise ApiException with the API server's Status as its body, so one is never mistaken for an
object.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson


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
    """The open response (for streaming); raises ApiException, with the API server's Status as body, on an error.
    `timeout` None means none (a watch)."""
    from kubernetes_asyncio.client.exceptions import ApiException  # imported late, as across ballast.kube (lean_import)

    request_headers: dict[str, str] = {**api.default_headers, "Accept": "application/json", **(headers or {})}
    params = list(query or [])
    await api.update_params_for_auth(request_headers, params, ["BearerToken"])
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        request_headers.setdefault("Content-Type", "application/json")
    url = api.configuration.host + path + (f"?{urlencode(params)}" if params else "")
    rest = api.rest_client
    response = await rest.pool_manager.request(
        method,
        url,
        headers=request_headers,
        data=data,
        timeout=aiohttp.ClientTimeout(total=timeout),
        server_hostname=rest.server_hostname,
        proxy=rest.proxy,
        proxy_headers=rest.proxy_headers,
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
        body: dict[str, Any] = orjson.loads(await response.read())
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
