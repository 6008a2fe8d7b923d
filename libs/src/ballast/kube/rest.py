"""Raw requests to the API server with a kubernetes-asyncio ApiClient's auth, TLS and connection pool, for paths
the typed client has no method for and for bodies we keep as plain JSON.

The requests go straight to the client's aiohttp session: the generated `call_api` walks every body to sanitise
it for serialisation and re-encodes it with the standard library, which in a busy operator costs more CPU than the
request itself; these bodies are plain JSON already. Auth still comes from the client's configuration on every
request (`update_params_for_auth`), so a refreshed token (in-cluster, exec plugins) is used as it changes.

Refused requests raise `ballast.kube.errors.ApiError` (`NotFound`, `Conflict`, `Invalid`, …) built from the API
server's Status, so one is never mistaken for an object. `KubeApi` is the seam: the part of kubernetes-asyncio's
ApiClient these requests use, typed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import orjson

from ballast.kube.errors import api_error


class _Configuration(Protocol):
    host: str


class _RestClient(Protocol):
    pool_manager: aiohttp.ClientSession
    server_hostname: str | None
    proxy: str | None
    proxy_headers: Any


class KubeApi(Protocol):
    """What Ballast uses of a kubernetes-asyncio ApiClient (`ballast.kube.client.api_client` makes one): its
    configuration, auth, default headers and aiohttp session. Nothing else talks to the API server."""

    configuration: _Configuration
    rest_client: _RestClient
    default_headers: dict[str, str]

    async def update_params_for_auth(self, headers: Any, querys: Any, auth_settings: Any) -> None: ...

    async def close(self) -> None: ...


async def send(
    api: KubeApi,
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    timeout: float | None = 30,
) -> aiohttp.ClientResponse:
    """The open response (for streaming); raises `ApiError` on an error. `timeout` None means none (a watch)."""
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
        raw = await response.read()
        response.release()
        raise api_error(response.status, response.reason or "", raw)
    return response


async def send_json(api: KubeApi, method: str, path: str, **options: Any) -> dict[str, Any]:
    response = await send(api, method, path, **options)
    try:
        body: dict[str, Any] = orjson.loads(await response.read())
    finally:
        response.release()
    return body


def micro_time(moment: datetime) -> str:
    """A MicroTime: exactly six fractional digits (isoformat drops them when they are zero)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
