"""The postmortem's I/O edge: read the incident's events from the stream, write the document (pure,
`ballast.incident_bot.postmortem`), store it, tell the bus, post it to Slack.

Documents go to the JetStream object store bucket `postmortems` as `<incident id>.md` and `<incident id>.json`
(the latest version of each; every version's digest stays in the event log): NATS is the platform's only store, and
objects are not limited to a KV value's size. Each stored format is announced with a `PostmortemPublished` whose id
carries the digest, so publishing the same document again is stored once and posted once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore
from pydantic import BaseModel

from ballast.bus import LAST, Bus
from ballast.events.catalogue import PLATFORM_EVENTS
from ballast.events.contracts.common import CLUSTER_SCOPED
from ballast.events.contracts.incident import (
    IncidentEvent,
    IncidentTransition,
    PostmortemFormat,
    PostmortemPublished,
    incident_event_type,
    incident_subject,
)
from ballast.events.envelope import Envelope, new_event
from ballast.incident_bot.postmortem import (
    DEFAULT_LOOKBACK,
    Postmortem,
    Rendered,
    render_json,
    render_markdown,
    write_postmortem,
)

log = logging.getLogger(__name__)

POSTMORTEMS = "postmortems"  # the object store bucket
_AREAS = ("slo", "reconcile", "policy", "chaos")
_EXTENSIONS = {PostmortemFormat.MARKDOWN: "md", PostmortemFormat.JSON: "json"}


class PostmortemPoster(Protocol):
    """Where a finished postmortem is shown to people (the Slack bot's incident channel)."""

    async def post_postmortem(self, incident_id: str, title: str, markdown: str, location: str, digest: str) -> str:
        """Posts it once per digest; returns where (a channel id)."""
        ...


@dataclass(frozen=True)
class PublishedPostmortem:
    postmortem: Postmortem
    documents: dict[PostmortemFormat, Rendered]
    locations: dict[PostmortemFormat, str]
    events_read: int
    posted_to: str | None


class PostmortemWriter:
    """Writes, stores and publishes incidents' postmortems. Make one with `await PostmortemWriter.open(bus, ...)`."""

    def __init__(
        self,
        bus: Bus,
        store: ObjectStore,
        *,
        source: str,
        poster: PostmortemPoster | None = None,
        lookback: timedelta = DEFAULT_LOOKBACK,
        bucket: str = POSTMORTEMS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._bus = bus
        self._store = store
        self._source = source
        self.poster = poster
        self._lookback = lookback
        self._bucket = bucket
        self._clock = clock

    @classmethod
    async def open(
        cls,
        bus: Bus,
        *,
        source: str,
        poster: PostmortemPoster | None = None,
        lookback: timedelta = DEFAULT_LOOKBACK,
        bucket: str = POSTMORTEMS,
    ) -> PostmortemWriter:
        """Creates the object store bucket if missing (the same settings again are accepted as they are)."""
        store = await bus.js.create_object_store(
            bucket,
            ObjectStoreConfig(description="Incident postmortems, Markdown and JSON", storage=StorageType.FILE),
        )
        return cls(bus, store, source=source, poster=poster, lookback=lookback, bucket=bucket)

    async def events_of(self, incident: IncidentTransition) -> list[Envelope[BaseModel]]:
        """The events that may belong to the incident: its namespace's (or, without one, every namespace's) platform
        events from `lookback` before it opened until now. Messages that are not valid events are skipped (they are
        in the dead-letter path already, or never were events)."""
        scope = incident.namespace or "*"
        subjects = [f"evt.{area}.{incident.cluster}.{scope}.>" for area in _AREAS]
        subjects.append(f"evt.incident.{incident.cluster}.{incident.namespace or CLUSTER_SCOPED}.>")
        start = incident.opened_at.astimezone(UTC) - self._lookback
        events: list[Envelope[BaseModel]] = []
        skipped = 0
        async with self._bus.read(PLATFORM_EVENTS.name, subjects=subjects, from_time=start, until=LAST) as stored:
            async for message in stored:
                if message.event is None:
                    skipped += 1
                    continue
                events.append(message.event)
        if skipped:
            log.warning("skipped messages that are not valid events", extra={"count": skipped})
        return events

    async def publish(self, incident: IncidentTransition) -> PublishedPostmortem:
        """Writes the postmortem of `incident` (its current record) from the log, stores both formats, announces
        each on `evt.incident` and posts it; doing it again with nothing new stores, announces and posts nothing."""
        events = await self.events_of(incident)
        postmortem = write_postmortem(incident, events, lookback=self._lookback)
        documents = {
            PostmortemFormat.MARKDOWN: render_markdown(postmortem),
            PostmortemFormat.JSON: render_json(postmortem),
        }
        locations = {}
        for fmt, document in documents.items():
            name = f"{incident.incident_id}.{_EXTENSIONS[fmt]}"
            await self._store_once(name, document.content)
            locations[fmt] = f"{self._bucket}/{name}"
            await self._announce(incident, postmortem, fmt, document, locations[fmt])
        posted_to = None
        if self.poster is not None:
            markdown = documents[PostmortemFormat.MARKDOWN]
            posted_to = await self.poster.post_postmortem(
                incident.incident_id,
                f"Postmortem: {incident.incident_id} — {incident.title}",
                markdown.content.decode(),
                locations[PostmortemFormat.MARKDOWN],
                markdown.digest,
            )
        return PublishedPostmortem(postmortem, documents, locations, len(events), posted_to)

    async def read(self, incident_id: str, fmt: PostmortemFormat = PostmortemFormat.MARKDOWN) -> bytes | None:
        """The stored document, or None if none was written."""
        try:
            found = await self._store.get(f"{incident_id}.{_EXTENSIONS[fmt]}")
        except ObjectNotFoundError:
            return None
        return bytes(found.data or b"")

    async def _store_once(self, name: str, content: bytes) -> None:
        expected = "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(content).digest()).decode()
        try:
            if (await self._store.get_info(name)).digest == expected:
                return
        except ObjectNotFoundError:
            pass
        await self._store.put(name, content)

    async def _announce(
        self, incident: IncidentTransition, postmortem: Postmortem, fmt: PostmortemFormat, doc: Rendered, location: str
    ) -> None:
        event = IncidentEvent.POSTMORTEM_PUBLISHED
        data = PostmortemPublished(
            cluster=incident.cluster,
            incident_id=incident.incident_id,
            postmortem_id=postmortem.postmortem_id,
            format=fmt,
            location=location,
            digest=doc.digest,
            generated_at=self._clock(),
        )
        await self._bus.publisher.publish(
            incident_subject(incident.cluster, incident.namespace, event),
            new_event(
                incident_event_type(event),
                self._source,
                data,
                subject=incident.incident_id,
                event_id=f"{incident.incident_id}:postmortem:{fmt}:{doc.digest}",
            ),
        )
