"""`svc.incident.postmortem` and `ballast incident postmortem` on a real nats-server, without Slack: INC-7's recorded
events on the stream, the store restored from them, the postmortem written from the log, stored in the object store
and answered; the same events give the same document, and an unknown incident is a clear 404."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable

import pytest
from incident_fixtures import running_store
from slack_fixtures import recorded_events

from ballast.bus import Bus, EndpointCallError
from ballast.events.catalogue import PLATFORM_EVENTS
from ballast.events.contracts.incident import (
    INCIDENT_POSTMORTEM,
    PostmortemDocument,
    PostmortemFormat,
    PostmortemRequest,
)
from ballast.incident_bot.endpoints import incident_endpoints
from ballast.incident_bot.postmortem import render_json, render_markdown, write_postmortem
from ballast.incident_bot.postmortem_publish import PostmortemWriter
from ballast.testing import NatsServer


async def ballast(*args: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "ballast.cli.main", *args], capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout, done.stderr


async def ask(bus: Bus, incident_id: str, fmt: PostmortemFormat = PostmortemFormat.MARKDOWN) -> PostmortemDocument:
    answer = await bus.request(INCIDENT_POSTMORTEM, PostmortemRequest(incident_id=incident_id, format=fmt), timeout=30)
    assert isinstance(answer, PostmortemDocument)
    return answer


async def test_the_postmortem_endpoint_writes_stores_and_answers_the_same_document_from_the_same_events(
    bus: Bus, nats_server: NatsServer, unique: Callable[[str], str]
) -> None:
    cluster = unique("pm")
    await bus.ensure_streams([PLATFORM_EVENTS])
    recorded = recorded_events(cluster)
    for subject, event in recorded:
        await bus.publisher.publish(subject, event)
    async with running_store(bus, cluster) as running:
        writer = await PostmortemWriter.open(bus, source=f"/clusters/{cluster}/incident-bot", bucket=unique("pm-"))
        for spec, handler in incident_endpoints(lambda: running.store, lambda: writer):
            await bus.serve(spec, handler)
        record = await running.store.get("INC-7")  # restored from its events: the bot was never told of it
        expected = write_postmortem(record, [event for _, event in recorded])

        markdown = await ask(bus, "INC-7")
        assert markdown.content.encode() == render_markdown(expected).content
        assert markdown.digest == render_markdown(expected).digest
        assert markdown.postmortem_id == "INC-7-postmortem"
        assert markdown.posted_to is None  # no Slack here
        assert 0 < markdown.events_read <= len(recorded)
        assert markdown.content.startswith("# ")
        assert await writer.read("INC-7") == markdown.content.encode()
        as_json = await ask(bus, "INC-7", PostmortemFormat.JSON)
        assert as_json.content.encode() == render_json(expected).content
        assert json.loads(as_json.content)["incident_id"] == "INC-7"
        assert await writer.read("INC-7", PostmortemFormat.JSON) == as_json.content.encode()

        for subject, event in recorded:  # the same events again (and the postmortems' own announcements meanwhile)
            await bus.publisher.publish(subject, event)
        again = await ask(bus, "INC-7")
        # Regenerated from the same events: the same document, byte for byte, in the same place.
        assert (again.content, again.digest, again.location) == (markdown.content, markdown.digest, markdown.location)

        code, out, err = await ballast("incident", "postmortem", "INC-7", "--nats-url", nats_server.url)
        assert code == 0, err
        assert out == markdown.content
        assert markdown.digest in err
        assert markdown.location in err
        code, out, err = await ballast(
            "incident", "postmortem", "INC-7", "--format", "json", "--nats-url", nats_server.url
        )
        assert code == 0, err
        assert json.loads(out) == json.loads(as_json.content)

        with pytest.raises(EndpointCallError) as unknown:
            await ask(bus, "INC-404")
        assert unknown.value.code == 404
        assert unknown.value.description == "no incident INC-404"
        code, out, err = await ballast("incident", "postmortem", "INC-404", "--nats-url", nats_server.url)
        assert code == 1
        assert out == ""
        assert "ballast incident postmortem: no incident INC-404 (404)" in err
        assert await writer.read("INC-404") is None  # nothing stored for it
