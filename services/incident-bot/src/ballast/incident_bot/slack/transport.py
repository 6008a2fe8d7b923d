"""How Slack reaches the app: signed HTTP requests (Events API, interactivity and slash commands on one Request URL)
or Socket Mode (a WebSocket the bot opens to Slack with an app-level token; no inbound endpoint needed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

DEFAULT_PATH = "/slack/events"


def slack_routes(app: Callable[[], AsyncApp | None], path: str = DEFAULT_PATH) -> list[web.RouteDef]:
    """The Request URL's route, for the service's HTTPS server. `app()` is the Bolt app once the bot is open (None
    before: Slack hears 503 and retries)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        bolt = app()
        if bolt is None:
            raise web.HTTPServiceUnavailable(text="the Slack bot is starting")
        stamp = request.headers.get("X-Slack-Request-Timestamp")
        if stamp is not None and not stamp.isdigit():
            # Bolt's verifier would raise on it and answer 500; a request that is not Slack's gets 401 like the rest.
            return web.json_response({"error": "invalid request"}, status=401)
        response = await bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    return [web.post(path, handle)]


async def run_socket_mode(app: AsyncApp, app_token: str, stop: asyncio.Event) -> None:
    """Receives Slack's requests over Socket Mode until `stop`. The client reconnects by itself when Slack rotates
    or drops the connection; Bolt skips signature checks here (the socket is authenticated by the app token)."""
    handler = AsyncSocketModeHandler(app, app_token)
    await handler.connect_async()  # type: ignore[no-untyped-call]  # slack_bolt leaves it unannotated
    try:
        await stop.wait()
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
