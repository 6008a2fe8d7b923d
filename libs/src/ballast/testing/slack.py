"""Slack, as a test double: the parts of its Web API a bot calls, and the signed requests it sends to an app.

Slack is a SaaS, so it is the one component tests replace. `SlackApi` is a local aiohttp server speaking Slack's
Web API as Slack documents it (`POST /api/<method>`, arguments as query string, form or JSON; always HTTP 200 with
`{"ok": true, ...}` or `{"ok": false, "error": "<code>"}`; the bot token checked on every call), so the real
`slack_sdk` client is pointed at it with `base_url`. It keeps channels and their messages, so that what a bot did
can be asserted as Slack would show it, and records every call. `response_url`s (where `respond()` posts) are served
too. `signed_headers` signs a request body as Slack signs what it sends to an app.

    async with SlackApi() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import WSMsgType, web

BOT_TOKEN = "xoxb-ballast-test"
TEAM_ID = "T0BALLAST"
BOT_USER_ID = "U0BALLASTBOT"
BOT_ID = "B0BALLAST"
APP_TOKEN = "xapp-ballast-test"

_MAX_CHANNEL_NAME = 80
_CHANNEL_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class SlackCall:
    """One Web API call as the server received it: the method, its arguments (JSON-encoded form values such as
    `blocks` decoded) and the token it carried."""

    method: str
    args: dict[str, Any]
    token: str | None


@dataclass
class Channel:
    id: str
    name: str
    is_private: bool
    creator: str
    members: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)  # oldest first


def signed_headers(signing_secret: str, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack adds to a request to an app: `v0=` HMAC-SHA256 of `v0:<timestamp>:<body>`."""
    raw = body.encode() if isinstance(body, str) else body
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(signing_secret.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


class SlackApi:
    """The local Slack Web API; see the module docstring. `fail(method, error)` makes the next call of `method`
    answer `{"ok": false, "error": error}` (`ratelimited` answers HTTP 429 with Retry-After, as Slack does)."""

    def __init__(self, bot_token: str = BOT_TOKEN, app_token: str = APP_TOKEN) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.calls: list[SlackCall] = []
        self.responses: list[tuple[str, dict[str, Any]]] = []  # (response_url path, body) posted by respond()
        self.channels: dict[str, Channel] = {}
        self.socket_replies: dict[str, dict[str, Any]] = {}  # envelope id -> what the app answered over the socket
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_connected = asyncio.Event()
        self._failures: dict[str, list[str]] = {}
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{name:.*}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for socket in self._sockets:
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """For `AsyncWebClient(base_url=...)`."""
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str) -> str:
        """A `response_url` for a slash command or an interaction: what `respond()` posts there is recorded."""
        return f"http://127.0.0.1:{self.port}/response/{name}"

    # --- what tests set up and read ---------------------------------------------------------------------------------

    def add_channel(self, name: str, *, members: tuple[str, ...] = (), is_private: bool = False) -> Channel:
        """A channel that exists before the bot runs (as people made it)."""
        channel = Channel(self._new_id("C"), name, is_private, "U0SOMEONE", set(members))
        self.channels[channel.id] = channel
        return channel

    def fail(self, method: str, error: str, times: int = 1) -> None:
        self._failures.setdefault(method, []).extend([error] * times)

    def calls_to(self, method: str) -> list[SlackCall]:
        return [call for call in self.calls if call.method == method]

    def channel_named(self, name: str) -> Channel | None:
        return next((c for c in self.channels.values() if c.name == name), None)

    # --- the Web API ------------------------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _arguments(request)
        token = _bearer(request) or args.pop("token", None)
        self.calls.append(SlackCall(method, args, token))
        failures = self._failures.get(method)
        if failures:
            error = failures.pop(0)
            if error == "ratelimited":
                return web.json_response({"ok": False, "error": error}, status=429, headers={"Retry-After": "1"})
            return _error(error)
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return _error("unknown_method")
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token is None:
            return _error("not_authed")
        if token != expected:
            return _error("invalid_auth")
        result: web.Response = await handler(args)
        return result

    async def _auth_test(self, args: dict[str, Any]) -> web.Response:
        return _ok(
            url="https://ballast-test.slack.com/",
            team="Ballast Test",
            user="ballast",
            team_id=TEAM_ID,
            user_id=BOT_USER_ID,
            bot_id=BOT_ID,
            is_enterprise_install=False,
        )

    async def _conversations_create(self, args: dict[str, Any]) -> web.Response:
        name = str(args.get("name", ""))
        if not name:
            return _error("invalid_name_required")
        if len(name) > _MAX_CHANNEL_NAME:
            return _error("invalid_name_maxlength")
        if not set(name) <= _CHANNEL_NAME_CHARS:
            return _error("invalid_name_specials")
        if self.channel_named(name) is not None:
            return _error("name_taken")
        is_private = str(args.get("is_private", "false")).lower() in ("true", "1")
        channel = Channel(self._new_id("C"), name, is_private, BOT_USER_ID, {BOT_USER_ID})
        self.channels[channel.id] = channel
        return _ok(channel=self._channel_object(channel))

    async def _conversations_invite(self, args: dict[str, Any]) -> web.Response:
        channel = self.channels.get(str(args.get("channel", "")))
        if channel is None:
            return _error("channel_not_found")
        if BOT_USER_ID not in channel.members:
            return _error("not_in_channel")
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if not users:
            return _error("no_user")
        if all(u in channel.members for u in users):
            return _error("already_in_channel")
        channel.members.update(users)
        return _ok(channel=self._channel_object(channel))

    async def _conversations_join(self, args: dict[str, Any]) -> web.Response:
        channel = self.channels.get(str(args.get("channel", "")))
        if channel is None:
            return _error("channel_not_found")
        if channel.is_private:
            return _error("method_not_supported_for_channel_type")
        channel.members.add(BOT_USER_ID)
        return _ok(channel=self._channel_object(channel))

    async def _conversations_list(self, args: dict[str, Any]) -> web.Response:
        limit = int(args.get("limit", 100))
        start = int(args.get("cursor") or 0)
        public = [c for c in self.channels.values() if not c.is_private or BOT_USER_ID in c.members]
        page = public[start : start + limit]
        next_cursor = str(start + limit) if start + limit < len(public) else ""
        return _ok(channels=[self._channel_object(c) for c in page], response_metadata={"next_cursor": next_cursor})

    async def _conversations_history(self, args: dict[str, Any]) -> web.Response:
        channel = self.channels.get(str(args.get("channel", "")))
        if channel is None:
            return _error("channel_not_found")
        if BOT_USER_ID not in channel.members:
            return _error("not_in_channel")
        with_metadata = str(args.get("include_all_metadata", "false")).lower() in ("true", "1")
        messages = [
            m if with_metadata else {k: v for k, v in m.items() if k != "metadata"} for m in reversed(channel.messages)
        ]
        return _ok(messages=messages, has_more=False, response_metadata={"next_cursor": ""})

    async def _chat_postMessage(self, args: dict[str, Any]) -> web.Response:
        channel = self._resolve_channel(str(args.get("channel", "")))
        if channel is None:
            return _error("channel_not_found")
        if BOT_USER_ID not in channel.members:
            return _error("not_in_channel")
        if not args.get("text") and not args.get("blocks"):
            return _error("no_text")
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "ts": self._new_ts(),
            "text": args.get("text", ""),
        }
        if args.get("blocks"):
            message["blocks"] = args["blocks"]
        if args.get("metadata"):
            message["metadata"] = args["metadata"]
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        channel.messages.append(message)
        return _ok(channel=channel.id, ts=message["ts"], message=message)

    async def _chat_update(self, args: dict[str, Any]) -> web.Response:
        channel = self.channels.get(str(args.get("channel", "")))
        if channel is None:
            return _error("channel_not_found")
        message = next((m for m in channel.messages if m["ts"] == args.get("ts")), None)
        if message is None:
            return _error("message_not_found")
        if message.get("user") != BOT_USER_ID:
            return _error("cant_update_message")
        if not args.get("text") and not args.get("blocks"):
            return _error("no_text")
        for key in ("text", "blocks", "metadata"):
            if key in args:
                message[key] = args[key]
        message["edited"] = {"user": BOT_USER_ID, "ts": self._new_ts()}
        return _ok(channel=channel.id, ts=message["ts"], text=message["text"], message=message)

    async def _apps_connections_open(self, args: dict[str, Any]) -> web.Response:
        return _ok(url=f"ws://127.0.0.1:{self.port}/socket")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: `hello` on connect, then envelopes from `deliver_over_socket`; the app's acks are kept."""
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json(
            {"type": "hello", "num_connections": len(self._sockets), "connection_info": {"app_id": "A0BALLAST"}}
        )
        self._socket_connected.set()
        async for message in socket:
            if message.type is WSMsgType.TEXT:
                reply = json.loads(message.data)
                self.socket_replies[reply["envelope_id"]] = reply.get("payload") or {}
        self._sockets.remove(socket)
        return socket

    async def deliver_over_socket(self, kind: str, payload: dict[str, Any], timeout: float = 10.0) -> str:
        """Sends an envelope (`slash_commands`, `interactive`, `events_api`) to the connected app; its envelope id."""
        async with asyncio.timeout(timeout):
            await self._socket_connected.wait()
        envelope_id = f"env-{next(self._ids)}"
        await self._sockets[-1].send_json(
            {"envelope_id": envelope_id, "type": kind, "payload": payload, "accepts_response_payload": True}
        )
        return envelope_id

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append((request.match_info["name"], await request.json()))
        return web.Response(text="ok")

    # --- helpers ----------------------------------------------------------------------------------------------------

    def _resolve_channel(self, reference: str) -> Channel | None:
        """Slack accepts a channel id or `#name` where a channel is named."""
        if reference.startswith("#"):
            return self.channel_named(reference[1:])
        return self.channels.get(reference)

    def _channel_object(self, channel: Channel) -> dict[str, Any]:
        return {
            "id": channel.id,
            "name": channel.name,
            "is_channel": not channel.is_private,
            "is_group": channel.is_private,
            "is_private": channel.is_private,
            "is_archived": False,
            "is_member": BOT_USER_ID in channel.members,
            "creator": channel.creator,
            "num_members": len(channel.members),
        }

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}"

    def _new_ts(self) -> str:
        # Slack's ts: seconds and a per-channel sequence; unique and increasing is all a client may rely on.
        return f"{1_800_000_000 + next(self._clock)}.000100"


async def _arguments(request: web.Request) -> dict[str, Any]:
    """Slack takes arguments in the query string, a form body or a JSON body; JSON-typed form values (blocks,
    metadata) arrive as JSON text."""
    args: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            args.update(await request.json())
        else:
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    for key in ("blocks", "metadata", "attachments"):
        if isinstance(args.get(key), str):
            # Slack answers invalid_blocks; the recorded call keeps the text for the test to see.
            with contextlib.suppress(ValueError):
                args[key] = json.loads(args[key])
    return args


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() or None if header.startswith("Bearer ") else None


def _ok(**fields: Any) -> web.Response:
    return web.json_response({"ok": True, **fields})


def _error(code: str) -> web.Response:
    return web.json_response({"ok": False, "error": code})


def form_body(fields: dict[str, str]) -> str:
    """A form-encoded body, as Slack sends slash commands."""
    return urllib.parse.urlencode(fields)


def interaction_body(payload: dict[str, Any]) -> str:
    """An interaction (a button press), as Slack sends it: form field `payload` holding the JSON."""
    return urllib.parse.urlencode({"payload": json.dumps(payload)})
