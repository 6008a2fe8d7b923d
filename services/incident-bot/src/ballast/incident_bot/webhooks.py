"""HTTP ingest on the runtime's HTTPS server: Alertmanager, PagerDuty Events API v2 and falcosidekick webhooks.

    POST /alertmanager        Alertmanager webhook v4; bearer token or basic auth (Alertmanager's http_config)
    POST /v2/enqueue          PagerDuty Events API v2; the routing_key is the credential
    POST /falco               falcosidekick's webhook output; bearer token or basic auth (its customheaders)

Without credentials (or with wrong ones) the answer is 401 and nothing is read; a body that is not the payload gets a
400 naming the fields; a store that cannot take the signals gets a 503, so that the sender retries (Alertmanager
and falcosidekick both do). A webhook with no credentials configured refuses everything.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, SecretStr, ValidationError

from ballast.incident_bot.alertmanager import AmWebhook, alert_signals
from ballast.incident_bot.falco import FalcoEvent, falco_signal
from ballast.incident_bot.pagerduty import PdEvent, pagerduty_signal
from ballast.incident_bot.store import IncidentStore

log = logging.getLogger(__name__)

ALERTMANAGER_PATH = "/alertmanager"
PAGERDUTY_PATH = "/v2/enqueue"
FALCO_PATH = "/falco"

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class WebhookCredentials:
    """What a caller must present: a bearer token, or a user and password (basic auth); either one will do."""

    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    pagerduty_routing_key: SecretStr | None = None

    def allows(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token is not None:
            return _same(value, self.token.get_secret_value())
        if scheme.lower() == "basic" and self.username is not None and self.password is not None:
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            # both compared, whatever the first gives: the time taken tells nothing
            return _same(user, self.username) & _same(password, self.password.get_secret_value())
        return False

    def allows_routing_key(self, routing_key: str) -> bool:
        key = self.pagerduty_routing_key
        return key is not None and _same(routing_key, key.get_secret_value())


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def describe(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]


class BadPayload(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def parse(model: type[M], body: bytes) -> M:
    """The payload, parsed and validated in one pass of pydantic's JSON parser (no dict built in between: a storm's
    webhooks are read on the bot's one core)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            raise BadPayload([f"<root>: the body is not JSON: {errors[0]['msg']}"]) from exc
        raise BadPayload(describe(exc)) from exc


def _dumps(answer: object) -> str:
    return orjson.dumps(answer).decode()


def _unauthorized(realm: str) -> web.Response:
    return web.json_response(
        {"error": "unauthorized: send a bearer token or basic auth"},
        status=401,
        headers={"WWW-Authenticate": f'Bearer realm="{realm}", Basic realm="{realm}"'},
    )


def _bad_request(what: str, errors: list[str]) -> web.Response:
    return web.json_response({"error": f"not a {what}", "errors": errors}, status=400)


def _unavailable(exc: Exception) -> web.Response:
    log.warning("signals not stored; the sender will retry: %s", exc)
    return web.json_response({"error": "incidents are unavailable; retry"}, status=503)


def webhook_routes(
    store: Callable[[], IncidentStore],
    credentials: WebhookCredentials,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[web.RouteDef]:
    """The ingest routes; `store` gives the open store (the HTTPS server starts after it has opened)."""

    async def alertmanager(request: web.Request) -> web.Response:
        if not credentials.allows(request.headers.get("Authorization")):
            return _unauthorized("alertmanager")
        try:
            webhook = parse(AmWebhook, await request.read())
        except BadPayload as exc:
            return _bad_request("version 4 Alertmanager webhook", exc.errors)
        signals = alert_signals(webhook, clock())
        try:
            handled = await store().handle_all(signals)
        except Exception as exc:  # the KV or the bus: Alertmanager retries the whole group, which is idempotent
            return _unavailable(exc)
        outcomes: list[dict[str, Any]] = [
            {"fingerprint": signal.fingerprint, "outcome": outcome.value, "incident": incident_id}
            for signal, (outcome, incident_id) in zip(signals, handled, strict=True)
        ]
        return web.json_response({"status": "ok", "alerts": outcomes}, dumps=_dumps)

    async def pagerduty(request: web.Request) -> web.Response:
        try:
            event = parse(PdEvent, await request.read())
        except BadPayload as exc:
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid", "errors": exc.errors}, status=400
            )
        if not credentials.allows_routing_key(event.routing_key):
            return web.json_response(
                {"status": "invalid event", "message": "Invalid routing key", "errors": ["routing_key: unknown"]},
                status=401,
            )
        signal, dedup_key = pagerduty_signal(event, clock())
        try:
            await store().handle(signal)
        except Exception as exc:
            return _unavailable(exc)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, status=202
        )

    async def falco(request: web.Request) -> web.Response:
        if not credentials.allows(request.headers.get("Authorization")):
            return _unauthorized("falco")
        try:
            event = parse(FalcoEvent, await request.read())
        except BadPayload as exc:
            return _bad_request("falcosidekick event", exc.errors)
        signal = falco_signal(event, clock())
        try:
            outcome, incident_id = await store().handle(signal)
        except Exception as exc:
            return _unavailable(exc)
        return web.json_response({"status": "ok", "outcome": outcome.value, "incident": incident_id})

    return [
        web.post(ALERTMANAGER_PATH, alertmanager),
        web.post(PAGERDUTY_PATH, pagerduty),
        web.post(FALCO_PATH, falco),
    ]
