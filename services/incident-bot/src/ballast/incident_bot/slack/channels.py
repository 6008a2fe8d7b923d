"""Each incident's place in Slack: its own channel, holding one card that follows the incident's lifecycle.

A channel per incident (not a thread in a shared channel): responders gather in it, people are invited to it, and
everything about the incident — the card, escalations, the postmortem — lands in one place that can be archived
with the incident, without burying other incidents' threads. The card is posted once and then edited
(`chat.update`) on every transition, so the channel's top shows the incident as it stands.

Transitions arrive as `evt.incident` events, at least once and possibly out of order (the consumer runs handlers
concurrently, replicas share it). So the channel id and the card's ts are kept per incident in the KV bucket
`incident-slack` and written with compare-and-set: a redelivered event finds the card and updates it, it never posts
another. Opening the channel and posting the card is claimed in the bucket first; a replica that finds a fresh claim
of another retries later, and one that finds a stale claim (its holder died mid-way) takes it over and looks for
what the holder already made: the channel by name, the card by its message metadata. The card always shows the
incident as the desk has it now, whichever event woke the bot, so an older event arriving late changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from ballast.bus import Delivery, KeyExists, KeyValue, Reject, RetryLater, RevisionConflict
from ballast.events.catalogue import SLACK_THREADS
from ballast.events.contracts.incident import IncidentEscalated, IncidentFacts, IncidentStatus, IncidentTransition
from ballast.incident_bot.desk import IncidentDesk, IncidentNotFound
from ballast.incident_bot.slack.cards import (
    CARD_EVENT_TYPE,
    announcement,
    card_blocks,
    card_metadata,
    card_text,
    channel_name,
    escalation_text,
    postmortem_blocks,
    slack_user,
)

log = logging.getLogger(__name__)

CLAIM_TTL = timedelta(seconds=60)  # longer than opening a channel and posting a card take, even slowly
RELEASED = datetime.min.replace(tzinfo=UTC)  # the claim time of a thread whose claim was given up

T = TypeVar("T")


class SlackThread(BaseModel):
    """What the bot made in Slack for one incident (the value in `incident-slack`, keyed by incident id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    incident_id: str
    claimed_at: datetime = Field(description="when a handler started opening the channel and posting the card")
    channel: str | None = Field(default=None, description="the incident's channel id, once made")
    ts: str | None = Field(default=None, description="the card's message ts, once posted")
    announced: bool = Field(default=False, description="whether the announcement channel was told")
    escalations: tuple[int, ...] = Field(default=(), description="escalation levels posted")
    postmortems: tuple[str, ...] = Field(default=(), description="digests of the postmortems posted")


class IncidentChannels:
    """Shows incidents in Slack. `on_event` is the handler for `SLACK_CARDS`."""

    def __init__(
        self,
        client: AsyncWebClient,
        threads: KeyValue[SlackThread],
        desk: IncidentDesk | None = None,
        *,
        channel_prefix: str = "",
        announce_channel: str | None = None,
        invite: tuple[str, ...] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._threads = threads
        self._desk = desk
        self._prefix = channel_prefix
        self._announce_channel = announce_channel
        self._invite = invite
        self._clock = clock
        # One handler at a time per incident in this process; across replicas the bucket's claim decides.
        self._locks: dict[str, asyncio.Lock] = {}

    async def on_event(self, delivery: Delivery) -> None:
        data = delivery.event.data
        if isinstance(data, IncidentTransition):
            await self.show(data)
        elif isinstance(data, IncidentEscalated):
            await self.escalated(data)
        elif isinstance(data, IncidentFacts) and self._desk is not None:
            # Any other news of an incident (a severity or commander change): the card shows the desk's record.
            try:
                await self.show(await self._desk.get(data.incident_id))
            except IncidentNotFound:
                raise RetryLater(f"{data.incident_id}: not in the incident store yet") from None
        # PostmortemPublished: the writer posts its own document (`post_postmortem`).

    async def show(self, incident: IncidentTransition) -> SlackThread:
        """Makes the incident's channel and card if they are not there, else brings the card up to date."""
        current = await self._current(incident)
        # An incident's opening is, but for a redelivery, the first its thread hears of: made without a read first.
        thread, posted_now = await self._ensure(current, new=incident.status is IncidentStatus.OPEN)
        if not posted_now:
            assert thread.channel is not None  # _ensure returns a complete thread
            assert thread.ts is not None
            await _slack(
                self._client.chat_update(
                    channel=thread.channel,
                    ts=thread.ts,
                    text=card_text(current),
                    blocks=card_blocks(current),
                    metadata=card_metadata(current),
                )
            )
        if self._announce_channel and not thread.announced:
            await self._announce(current, thread)
        return thread

    async def _announce(self, incident: IncidentTransition, thread: SlackThread) -> None:
        """Tells the announcement channel once: the flag is set (compare-and-set) before the post, so of two handlers
        only one posts; a failed post clears it again for the retry."""
        assert self._announce_channel is not None
        assert thread.channel is not None
        key = _key(incident.incident_id)
        while True:
            entry = await self._threads.get(key)
            if entry is None or entry.value is None or entry.value.announced:
                return
            try:
                await self._threads.update(key, entry.value.model_copy(update={"announced": True}), entry.revision)
                break
            except RevisionConflict:
                continue
        try:
            await _slack(
                self._client.chat_postMessage(
                    channel=self._announce_channel, text=announcement(incident, thread.channel)
                )
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self._record(incident.incident_id, lambda t: t.model_copy(update={"announced": False}))
            raise

    async def escalated(self, escalation: IncidentEscalated) -> None:
        thread = await self._thread_of(escalation.incident_id)
        if escalation.level in thread.escalations:
            return
        assert thread.channel is not None
        await _slack(self._client.chat_postMessage(channel=thread.channel, text=escalation_text(escalation)))
        await self._record(
            escalation.incident_id, lambda t: t.model_copy(update={"escalations": (*t.escalations, escalation.level)})
        )

    async def post_postmortem(self, incident_id: str, title: str, markdown: str, location: str, digest: str) -> str:
        """Posts a postmortem in the incident's channel, once per document digest; returns the channel id."""
        thread = await self._thread_of(incident_id)
        assert thread.channel is not None
        if digest not in thread.postmortems:
            await _slack(
                self._client.chat_postMessage(
                    channel=thread.channel,
                    text=f"{title} (stored at {location})",
                    blocks=postmortem_blocks(title, markdown, location),
                )
            )
            await self._record(incident_id, lambda t: t.model_copy(update={"postmortems": (*t.postmortems, digest)}))
        return thread.channel

    async def channel_of(self, incident_id: str) -> str | None:
        entry = await self._threads.get(_key(incident_id))
        return entry.value.channel if entry is not None and entry.value is not None else None

    # --- the channel and the card, once -----------------------------------------------------------------------------

    async def _current(self, incident: IncidentTransition) -> IncidentTransition:
        if self._desk is None:
            return incident
        try:
            return await self._desk.get(incident.incident_id)
        except IncidentNotFound:
            return incident  # the event is ahead of this replica's view of the store

    async def _thread_of(self, incident_id: str) -> SlackThread:
        """The incident's thread, made now from the desk's record if the opening event has not come through yet."""
        entry = await self._threads.get(_key(incident_id))
        if entry is not None and entry.value is not None and entry.value.ts is not None:
            return entry.value
        if self._desk is None:
            raise RetryLater(f"{incident_id}: its channel is not open yet")
        try:
            record = await self._desk.get(incident_id)
        except IncidentNotFound:
            raise RetryLater(f"{incident_id}: not in the incident store yet") from None
        thread, _ = await self._ensure(record)
        return thread

    async def _ensure(self, incident: IncidentTransition, *, new: bool = False) -> tuple[SlackThread, bool]:
        """(the thread with channel and card, whether the card was posted by this call). `new`: the thread is most
        likely not there yet, so its claim is tried before any read."""
        key = _key(incident.incident_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            while True:
                entry = None if new else await self._threads.get(key)
                new = False  # one blind attempt: after a KeyExists the thread is read
                now = self._clock()
                if entry is not None and entry.value is not None:
                    thread, revision = entry.value, entry.revision
                    if thread.ts is not None:
                        return thread, False
                    if now - thread.claimed_at < CLAIM_TTL:
                        raise RetryLater(f"{incident.incident_id}: another replica is opening its channel", delay=2.0)
                    try:  # the claim's holder died mid-way: take it over
                        thread = thread.model_copy(update={"claimed_at": now})
                        revision = await self._threads.update(key, thread, revision)
                    except RevisionConflict:
                        continue
                else:
                    thread = SlackThread(incident_id=incident.incident_id, claimed_at=now)
                    try:
                        revision = await self._threads.create(key, thread)
                    except KeyExists:
                        continue
                try:
                    return await self._open(incident, key, thread, revision), True
                except BaseException:
                    await self._release(key)
                    raise

    async def _release(self, key: str) -> None:
        """Gives a failed attempt's claim up, so that the retry (here or on another replica) need not wait it out."""
        with contextlib.suppress(Exception):
            entry = await self._threads.get(key)
            if entry is None or entry.value is None or entry.value.ts is not None or entry.value.claimed_at == RELEASED:
                return  # gone, done, or given up already (by `_open`, with the channel it made)
            await self._threads.update(key, entry.value.model_copy(update={"claimed_at": RELEASED}), entry.revision)

    async def _open(self, incident: IncidentTransition, key: str, thread: SlackThread, revision: int) -> SlackThread:
        """Holding the claim: the channel, then the card, written to the bucket together once both exist. An
        attempt that fails between writes the channel down as it gives the claim up; one that dies there leaves the
        retry to find the channel by its name and the card by its metadata."""
        created = False
        try:
            if thread.channel is None:
                channel, created = await self._make_channel(incident)
                thread = thread.model_copy(update={"channel": channel})
                await self._invite_people(channel, incident)
            assert thread.channel is not None
            # A channel made just now is empty; one made before (by an attempt that died) may hold its card already.
            ts = None if created else await self._find_card(thread.channel, incident.incident_id)
            if ts is None:
                posted = await _slack(
                    self._client.chat_postMessage(
                        channel=thread.channel,
                        text=card_text(incident),
                        blocks=card_blocks(incident),
                        metadata=card_metadata(incident),
                    )
                )
                ts = str(posted["ts"])
        except BaseException:
            if created:
                with contextlib.suppress(Exception):
                    await self._threads.update(key, thread.model_copy(update={"claimed_at": RELEASED}), revision)
            raise
        thread = thread.model_copy(update={"ts": ts})
        await self._threads.update(key, thread, revision)
        return thread

    async def _make_channel(self, incident: IncidentTransition) -> tuple[str, bool]:
        """The incident's channel id, and whether this call created it."""
        name = channel_name(incident, self._prefix)
        try:
            created = await _slack(self._client.conversations_create(name=name))
            return str(created["channel"]["id"]), True
        except SlackApiError as exc:
            if exc.response.get("error") != "name_taken":
                raise
        # Made by an earlier attempt that died before writing it down (or by hand): use it.
        channel = await self._find_channel(name)
        if channel is None:
            raise RetryLater(f"channel #{name} is taken but not visible to the bot (private?)")
        if not channel.get("is_member"):
            await _slack(self._client.conversations_join(channel=channel["id"]))
        return str(channel["id"]), False

    async def _find_channel(self, name: str) -> dict[str, Any] | None:
        cursor = None
        while True:
            page = await _slack(
                self._client.conversations_list(types="public_channel", exclude_archived=True, limit=200, cursor=cursor)
            )
            for channel in page["channels"]:
                if channel["name"] == name:
                    return dict(channel)
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    async def _find_card(self, channel: str, incident_id: str) -> str | None:
        """The card an earlier attempt posted before it died, found by its metadata."""
        history = await _slack(
            self._client.conversations_history(channel=channel, include_all_metadata=True, limit=100)
        )
        for message in history["messages"]:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == CARD_EVENT_TYPE and payload.get("incident_id") == incident_id:
                return str(message["ts"])
        return None

    async def _invite_people(self, channel: str, incident: IncidentTransition) -> None:
        declarer = slack_user(incident.changed_by)
        users = sorted({*self._invite, *([declarer] if declarer else [])})
        if not users:
            return
        try:
            await _slack(self._client.conversations_invite(channel=channel, users=",".join(users)))
        except SlackApiError as exc:
            # An invitation that fails (a deactivated user, one already in) must not keep the card from being posted.
            log.warning(
                "inviting to the incident channel failed",
                extra={"channel": channel, "error": exc.response.get("error")},
            )

    async def _record(self, incident_id: str, change: Callable[[SlackThread], SlackThread]) -> None:
        key = _key(incident_id)
        while True:
            entry = await self._threads.get(key)
            if entry is None or entry.value is None:
                raise RetryLater(f"{incident_id}: its thread vanished from the bucket")
            try:
                await self._threads.update(key, change(entry.value), entry.revision)
                return
            except RevisionConflict:
                continue


def _key(incident_id: str) -> str:
    key = incident_id
    if not key or key[0] == "." or key[-1] == "." or not all(c.isalnum() or c in "-/_=." for c in key):
        raise Reject(f"incident id {incident_id!r} cannot be a key of the {SLACK_THREADS.name} bucket")
    return key


async def _slack(call: Awaitable[T]) -> T:
    """A Web API call; rate limits and network failures become a delayed retry of the event, other Slack errors
    (invalid_auth, channel_not_found, …) stay errors: retried up to the delivery limit, then dead-lettered."""
    try:
        return await call
    except SlackApiError as exc:
        if exc.response.status_code == 429:
            delay = float(exc.response.headers.get("Retry-After", 5))
            raise RetryLater(f"Slack rate limit ({exc.response.get('error')})", delay=delay) from exc
        raise
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RetryLater(f"Slack unreachable: {exc}") from exc
