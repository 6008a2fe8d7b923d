"""OPA over its REST API: policy modules in, base documents in, queries out.

Only the endpoints the gate needs: PUT/DELETE /v1/policies/<id>, GET /v1/policies/<id> (the compiled AST, to check a
module's rules), PUT /v1/data/<path>, POST /v1/data/<path> (a rule evaluated with an input), POST /v1/query and
GET /health.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson


class OpaError(Exception):
    """OPA refused a request or answered with something the gate cannot use."""


class OpaUnavailable(OpaError):
    """OPA did not answer (not started yet, restarting, or gone)."""


class RegoError(OpaError):
    """OPA's compiler or evaluator refused Rego; the message is OPA's, one line per error with file and row."""

    def __init__(self, summary: str, errors: list[dict[str, Any]]) -> None:
        self.summary = summary
        self.errors = errors
        super().__init__("; ".join(_format_error(e) for e in errors) if errors else summary)

    def without_row(self, module_id: str, inserted: int) -> RegoError:
        """The same errors with the rows of `module_id` told as they were before a line was inserted at `inserted`."""
        errors = []
        for error in self.errors:
            location = error.get("location") or {}
            if (
                location.get("file") == module_id
                and isinstance(location.get("row"), int)
                and location["row"] > inserted
            ):
                error = error | {"location": location | {"row": location["row"] - 1}}
            errors.append(error)
        return RegoError(self.summary, errors)


def _format_error(error: Mapping[str, Any]) -> str:
    location = error.get("location") or {}
    where = f"{location.get('file', '')}:{location.get('row', '?')}: " if location else ""
    return f"{where}{error.get('code', 'error')}: {error.get('message', '')}"


class OpaClient:
    """One OPA server at `url` (e.g. http://127.0.0.1:8181), over a pooled aiohttp session."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Loopback only: no proxies from the environment, no cookie jar.
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                json_serialize=lambda v: orjson.dumps(v).decode(),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, *, data: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self._http().request(method, f"{self.url}{path}", data=data, headers=headers) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise OpaUnavailable(f"OPA at {self.url} did not answer {method} {path}: {exc!r}") from exc
        decoded: Any = orjson.loads(body) if body else {}
        if status >= 400:
            text = body.decode(errors="replace")
            message = decoded.get("message", text) if isinstance(decoded, dict) else text
            errors = decoded.get("errors") if isinstance(decoded, dict) else None
            if errors:
                raise RegoError(str(message), list(errors))
            if isinstance(decoded, dict) and decoded.get("code") == "internal_error":
                raise RegoError(str(message), [])  # evaluation errors come back as 500 internal_error
            raise OpaError(f"OPA {method} {path}: {status} {message}")
        return decoded

    async def healthy(self, timeout: float | None = None) -> bool:
        try:
            wait = aiohttp.ClientTimeout(total=timeout) if timeout is not None else None
            async with self._http().get(f"{self.url}/health", timeout=wait) as response:
                return response.status == 200
        except (aiohttp.ClientConnectionError, TimeoutError):
            return False

    async def put_policy(self, module_id: str, source: str) -> None:
        """Adds or replaces a module; OPA compiles it with every other module and refuses it on any error."""
        await self._call("PUT", f"/v1/policies/{module_id}", data=source.encode())

    async def delete_policy(self, module_id: str) -> None:
        await self._call("DELETE", f"/v1/policies/{module_id}")

    async def policy_ast(self, module_id: str) -> dict[str, Any]:
        """A loaded module as OPA compiled it (refs resolved to full `data` paths)."""
        answer = await self._call("GET", f"/v1/policies/{module_id}")
        ast: dict[str, Any] = answer.get("result", {}).get("ast", {})
        return ast

    async def put_data(self, path: str, value: Any) -> None:
        """Replaces the base document at `path` (slash-separated, e.g. "inventory")."""
        await self._call("PUT", f"/v1/data/{path}", data=orjson.dumps(value))

    async def evaluate(self, path: str, input: Any) -> Any:
        """The value of the document at `path` (slash-separated) with `input`; None when it is undefined. OPA keeps
        the compiled query of a path until the policies change."""
        answer = await self._call("POST", f"/v1/data/{path}", data=orjson.dumps({"input": input}))
        return answer.get("result")

    async def query(self, query: str, input: Any) -> list[dict[str, Any]]:
        """Runs an ad hoc query; the bindings of each result."""
        answer = await self._call("POST", "/v1/query", data=orjson.dumps({"query": query, "input": input}))
        result: list[dict[str, Any]] = answer.get("result", [])
        return result
