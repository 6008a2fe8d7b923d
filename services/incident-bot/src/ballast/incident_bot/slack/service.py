"""The Slack bot's place in the incident-bot process: its settings, and `wire_slack`, which registers it with the
service's `ServiceApp` (a resource, the `SLACK_CARDS` consumer, Socket Mode or the HTTPS route).

    routes = wire_slack(app, settings, lambda: desk.value, cluster=settings.cluster)
    app.https([*alertmanager_routes, *routes])
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Self

import aiohttp
from aiohttp import web
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from ballast.bus import Bus, Delivery
from ballast.events.catalogue import SLACK_CARDS, SLACK_THREADS
from ballast.events.contracts.incident import IncidentStatus, IncidentTransition
from ballast.incident_bot.desk import IncidentDesk, IncidentNotFound
from ballast.incident_bot.postmortem_publish import PostmortemWriter
from ballast.incident_bot.slack.bolt import build_slack_app
from ballast.incident_bot.slack.channels import IncidentChannels, SlackThread
from ballast.incident_bot.slack.transport import DEFAULT_PATH, run_socket_mode, slack_routes
from ballast.runtime import ServiceApp

SLACK_API = "https://slack.com/api/"


class SlackSettings(BaseSettings):
    """`BALLAST_SLACK_*`; mix into the service's settings. Without a bot token the bot stays off."""

    model_config = SettingsConfigDict(env_prefix="BALLAST_", extra="ignore", frozen=True)

    slack_bot_token: SecretStr | None = Field(default=None, description="xoxb-…: the bot's Web API token")
    slack_signing_secret: SecretStr | None = Field(
        default=None, description="verifies requests from Slack over HTTP (the app's Basic Information page)"
    )
    slack_app_token: SecretStr | None = Field(
        default=None, description="xapp-… with connections:write: Socket Mode instead of the HTTP Request URL"
    )
    slack_api_url: str = Field(default=SLACK_API, description="the Web API's base URL (a local Slack in tests)")
    slack_path: str = Field(default=DEFAULT_PATH, description="the Request URL's path on the HTTPS port")
    slack_channel_prefix: str = Field(default="", description="put before incident channel names, e.g. `inc`")
    slack_announce_channel: str | None = Field(
        default=None, description="channel id (or #name) told of every new incident, with a link to its channel"
    )
    slack_invite: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="comma-separated Slack user ids invited to every incident channel"
    )
    slack_postmortem_on_resolve: bool = Field(
        default=True, description="write, store and post the postmortem when an incident is resolved"
    )

    @field_validator("slack_invite", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return tuple(u.strip() for u in value.split(",") if u.strip()) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _can_hear_slack(self) -> Self:
        if self.slack_bot_token is not None and self.slack_signing_secret is None and self.slack_app_token is None:
            raise ValueError(
                "BALLAST_SLACK_BOT_TOKEN needs BALLAST_SLACK_SIGNING_SECRET (HTTP) or BALLAST_SLACK_APP_TOKEN "
                "(Socket Mode) to receive Slack's requests"
            )
        return self

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None


def web_api_logger() -> logging.Logger:
    """slack_sdk's Web API logger with its level set to the one in effect: the client builds the text of a debug line
    for every call (with the card's blocks in it) whenever its logger's own level is unset, enabled or not."""
    logger = logging.getLogger("slack_sdk.web.async_client")
    logger.setLevel(logger.getEffectiveLevel())
    return logger


class SlackBot:
    """The open bot: Web API client, incident channels, postmortem writer and the Bolt app."""

    def __init__(
        self,
        app: AsyncApp,
        channels: IncidentChannels,
        postmortems: PostmortemWriter,
        desk: IncidentDesk,
        *,
        postmortem_on_resolve: bool,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.app = app
        self._session = session
        self.channels = channels
        self.postmortems = postmortems
        self._desk = desk
        self._postmortem_on_resolve = postmortem_on_resolve

    @classmethod
    async def open(
        cls,
        bus: Bus,
        settings: SlackSettings,
        desk: IncidentDesk,
        *,
        cluster: str,
        postmortems: PostmortemWriter | None = None,
    ) -> SlackBot:
        """`postmortems`: the service's writer, made to post in the incident channels from now on (its
        `svc.incident.postmortem` then posts too); without it the bot opens its own."""
        assert settings.slack_bot_token is not None  # wire_slack opens the bot only when Slack is on
        # One session for every Web API call: without it the client opens (and shakes hands on) a connection per call.
        session = aiohttp.ClientSession()
        client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            session=session,
            logger=web_api_logger(),
        )
        try:
            await bus.ensure_buckets([SLACK_THREADS])
            channels = IncidentChannels(
                client,
                await bus.kv(SLACK_THREADS, SlackThread),
                desk,
                channel_prefix=settings.slack_channel_prefix,
                announce_channel=settings.slack_announce_channel,
                invite=settings.slack_invite,
            )
            if postmortems is None:
                postmortems = await PostmortemWriter.open(bus, source=f"/clusters/{cluster}/incident-bot")
            postmortems.poster = channels
            secret = settings.slack_signing_secret
            app = build_slack_app(
                client=client,
                signing_secret=secret.get_secret_value() if secret else "",
                desk=desk,
                channels=channels,
                postmortems=postmortems,
            )
            return cls(
                app,
                channels,
                postmortems,
                desk,
                postmortem_on_resolve=settings.slack_postmortem_on_resolve,
                session=session,
            )
        except BaseException:
            await session.close()
            raise

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def on_event(self, delivery: Delivery) -> None:
        """The `SLACK_CARDS` handler: the card, then (at resolution) the postmortem."""
        await self.channels.on_event(delivery)
        data = delivery.event.data
        if (
            self._postmortem_on_resolve
            and isinstance(data, IncidentTransition)
            and data.status is IncidentStatus.RESOLVED
        ):
            try:
                record = await self._desk.get(data.incident_id)
            except IncidentNotFound:
                record = data
            if record.status is IncidentStatus.RESOLVED:  # not reopened meanwhile
                await self.postmortems.publish(record)


def wire_slack(
    app: ServiceApp,
    settings: SlackSettings,
    desk: Callable[[], IncidentDesk],
    *,
    cluster: str,
    postmortems: Callable[[], PostmortemWriter] | None = None,
) -> list[web.RouteDef]:
    """Registers the bot on `app` when Slack is configured; returns the routes for `app.https` (none in Socket Mode
    or with Slack off). `desk()` and `postmortems()` are called once the service's resources opened (register theirs
    first)."""
    if not settings.slack_enabled:
        return []

    async def open_bot(bus: Bus) -> SlackBot:
        writer = postmortems() if postmortems is not None else None
        return await SlackBot.open(bus, settings, desk(), cluster=cluster, postmortems=writer)

    bot = app.lifespan("slack", open_bot, close=lambda bot: bot.close())

    async def on_event(delivery: Delivery) -> None:
        await bot.value.on_event(delivery)

    # A card is some seven round trips (bucket and Slack) one after another: in a storm of new incidents, eight at a
    # time left the cards seconds behind the incidents (bench-incident); Slack's own limits answer 429, retried later.
    app.consume(SLACK_CARDS, on_event, concurrency=32, batch=8)
    if settings.slack_app_token is not None:
        token = settings.slack_app_token.get_secret_value()
        app.background(lambda bus, stop: run_socket_mode(bot.value.app, token, stop))
        return []
    return slack_routes(lambda: bot.value.app if bot.is_open else None, settings.slack_path)
