"""A postmortem regenerated from a replayed log equals the original: INC-7's events exported from one nats-server with
`ballast events export`, imported into another with `ballast events import --execute`, and the incident-bot's store
and postmortem writer on the second server write the same bytes the first wrote."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from incident_fixtures import running_store
from prometheus_client import CollectorRegistry
from slack_fixtures import recorded_events

from ballast.bus import Bus
from ballast.events.catalogue import PLATFORM_EVENTS
from ballast.events.contracts.incident import INCIDENT_POSTMORTEM, PostmortemDocument, PostmortemRequest
from ballast.incident_bot.endpoints import incident_endpoints
from ballast.incident_bot.postmortem_publish import PostmortemWriter
from ballast.telemetry.metrics import BusMetrics
from ballast.testing import NatsServer


async def ballast(*args: str) -> str:
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "ballast.cli.main", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def postmortem(bus: Bus, cluster: str, bucket: str) -> PostmortemDocument:
    async with running_store(bus, cluster) as running:
        writer = await PostmortemWriter.open(bus, source=f"/clusters/{cluster}/incident-bot", bucket=bucket)
        for spec, handler in incident_endpoints(lambda: running.store, lambda: writer):
            await bus.serve(spec, handler)
        answer = await bus.request(INCIDENT_POSTMORTEM, PostmortemRequest(incident_id="INC-7"), timeout=30)
    assert isinstance(answer, PostmortemDocument)
    return answer


async def test_a_postmortem_written_from_a_replayed_log_equals_the_original(
    fresh_nats_server: NatsServer, unique: Callable[[str], str], tmp_path: Path
) -> None:
    """Both servers the test's own: the incidents bucket holds one INC-7 per server, and other tests' INC-7s live on
    the shared one."""
    cluster = unique("pmr")
    export = tmp_path / "inc-7.jsonl"
    with NatsServer() as recorded_on:
        bus = await Bus.connect(recorded_on.url, name="recorded", metrics=BusMetrics(CollectorRegistry()))
        try:
            await bus.ensure_streams([PLATFORM_EVENTS])
            for subject, event in recorded_events(cluster):
                await bus.publisher.publish(subject, event)
            original = await postmortem(bus, cluster, "postmortems")
        finally:
            await bus.close()
        # The recorded incident's events (one filter per area), not the postmortem's own announcement.
        areas = ("reconcile", "slo", "policy", "chaos", "incident")
        subjects = [arg for area in areas for arg in ("--subject", f"evt.{area}.{cluster}.>")]
        await ballast(
            "events",
            "export",
            "--nats-url",
            recorded_on.url,
            "--stream",
            "PLATFORM_EVENTS",
            *subjects,
            "--quiet",
            "-o",
            str(export),
        )
    imported = await ballast(
        "events", "import", str(export), "--execute", "--quiet", "--nats-url", fresh_nats_server.url
    )
    assert "created stream PLATFORM_EVENTS" in imported, "a new environment gets the streams it lacks"

    replayed = await Bus.connect(fresh_nats_server.url, name="replayed", metrics=BusMetrics(CollectorRegistry()))
    try:
        again = await postmortem(replayed, cluster, "postmortems")
    finally:
        await replayed.close()
    assert again.content == original.content
    assert again.digest == original.digest
