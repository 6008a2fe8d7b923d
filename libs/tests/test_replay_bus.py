"""The replay tooling against a real nats-server: export -> import round trip, malformed lines, replay order and
pacing, replays that cause no second side effect, DLQ redrive after a fix, the CLI's dry runs, and the record on
evt.replay of what publishes again."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from ballast.bus import Bus, Consumer, Delivery, Reject
from ballast.bus.consumer import DLQ_CONSUMER, DLQ_DELIVERIES, DLQ_REASON, DLQ_SEQUENCE, DLQ_STREAM, DLQ_SUBJECT
from ballast.cli.main import main
from ballast.events import encode, new_event
from ballast.events.catalogue import CATALOGUE, ConsumerSpec
from ballast.events.contracts.common import ObjectRef
from ballast.events.contracts.k8s import ObservedObject, k8s_event_type, k8s_subject
from ballast.events.contracts.replay import ReplayOperation, ReplayRun
from ballast.events.envelope import Envelope
from ballast.local.nats_server import NatsServer
from ballast.replay import dead_letters, importing, replaying
from ballast.replay.exporting import export
from ballast.replay.pacing import Pacing
from ballast.replay.reading import read_selection
from ballast.replay.records import export_line
from ballast.replay.selection import Selection, SelectionError, stream_of
from ballast.replay.shadow import remove, shadow_stream
from ballast.telemetry.metrics import BusMetrics
from ballast.testing import eventually

SOURCE = "/clusters/test/reconciler"


def fact(cluster: str, name: str, version: int, *, time: datetime | None = None) -> Envelope[ObservedObject]:
    data = ObservedObject(
        cluster=cluster,
        object=ObjectRef(api_version="apps/v1", kind="Deployment", namespace="shop", name=name, uid=f"uid-{name}"),
        resource_version=str(version),
        replicas=3,
        ready_replicas=version % 4,
        image="registry.example.com/shop/web:1.2.3",
        labels={"app": name, "note": "Euro € 😀"},
    )
    return new_event(
        k8s_event_type("Deployment", "updated"),
        SOURCE,
        data,
        subject=f"shop/{name}",
        event_id=f"{cluster}:uid-{name}:{version}:updated",
        time=time,
    )


def subject(cluster: str) -> str:
    return k8s_subject(cluster, "shop", "Deployment", "updated")


async def stored(bus: Bus, stream: str, subjects: str) -> list[dict[str, object]]:
    """Every message under `subjects` as its export line (parsed), in stream order."""
    lines = []
    async with contextlib.aclosing(read_selection(bus, stream, Selection(subjects=(subjects,)))) as messages:
        async for message in messages:
            line = export_line(stream, message.sequence, message.time, message.subject, message.headers, message.data)
            lines.append(orjson.loads(line))
    return lines


@pytest.fixture
async def streams(bus: Bus) -> Bus:
    await bus.ensure_streams()
    return bus


@pytest.fixture
async def other_bus(fresh_nats_server: NatsServer) -> AsyncIterator[Bus]:
    connected = await Bus.connect(fresh_nats_server.url, name="other", metrics=BusMetrics(CollectorRegistry()))
    await connected.ensure_streams()
    yield connected
    await connected.close()


async def test_export_then_import_gives_back_the_same_ids_times_and_payloads(
    streams: Bus, other_bus: Bus, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    cluster = unique("rt")
    events = [fact(cluster, f"web-{i % 3}", i) for i in range(30)]
    acks = await streams.publisher.publish_all([(subject(cluster), e) for e in events])
    path = tmp_path / "export.jsonl"
    with path.open("wb") as out:
        result = await export(streams, "K8S_EVENTS", Selection(subjects=(f"evt.k8s.{cluster}.>",)), out)
    assert result.written == 30
    assert (result.first_seq, result.last_seq) == (acks[0].seq, acks[-1].seq)
    assert not result.not_events

    plan = importing.check(path, CATALOGUE)
    assert (plan.events, plan.malformed, dict(plan.streams)) == (30, [], {"K8S_EVENTS": 30})
    imported = await importing.publish(other_bus, plan)
    assert (imported.tally.stored, imported.tally.duplicates, imported.published_through) == (30, 0, 30)
    again = await importing.publish(other_bus, plan)  # a re-run stores nothing twice
    assert (again.tally.stored, again.tally.duplicates) == (0, 30)

    before = await stored(streams, "K8S_EVENTS", f"evt.k8s.{cluster}.>")
    after = await stored(other_bus, "K8S_EVENTS", f"evt.k8s.{cluster}.>")
    assert len(after) == 30

    def without_storage(line: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in line.items() if k not in ("natssequence", "natstime")}

    assert [without_storage(x) for x in after] == [without_storage(x) for x in before]
    assert [x["id"] for x in after] == [e.id for e in events]
    assert [x["time"] for x in after] == [encode(e)[0]["ce-time"] for e in events]
    assert [orjson.dumps(x["data"]) for x in after] == [encode(e)[1] for e in events]  # the bytes published


async def test_one_clusters_share_of_a_stream_is_exported_by_a_subject_no_stream_pattern_covers(
    streams: Bus, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    mine, theirs = unique("mine"), unique("theirs")
    for cluster in (mine, theirs):
        for kind in ("slo", "policy", "chaos"):
            headers, body = encode(fact(cluster, kind, 1))
            await streams.js.publish(f"evt.{kind}.{cluster}.shop.web", body, headers=dict(headers))
    wanted = f"evt.*.{mine}.>"  # every kind of platform event, one cluster's

    stream = stream_of(CATALOGUE, "PLATFORM_EVENTS", [wanted])
    path = tmp_path / "mine.jsonl"
    with path.open("wb") as out:
        result = await export(streams, stream, Selection(subjects=(wanted,)), out)

    assert result.written == 3
    exported = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert sorted(line["natssubject"].split(".")[1] for line in exported) == ["chaos", "policy", "slo"]
    assert {line["natssubject"].split(".")[2] for line in exported} == {mine}


def _write_lines(path: Path, cluster: str, good: int, bad: dict[int, bytes]) -> None:
    lines: list[bytes] = []
    now = datetime.now(UTC)
    version = 0
    while len(lines) < good + len(bad):
        number = len(lines) + 1
        if number in bad:
            lines.append(bad[number])
            continue
        headers, body = encode(fact(cluster, "web", version))
        version += 1
        lines.append(export_line("K8S_EVENTS", number, now, subject(cluster), headers, body))
    path.write_bytes(b"".join(lines))


async def _count(url: str, subjects: str) -> int:
    bus = await Bus.connect(url, name="count", metrics=BusMetrics(CollectorRegistry()))
    try:
        await bus.ensure_streams()
        return len(await stored(bus, "K8S_EVENTS", subjects))
    finally:
        await bus.close()


def test_a_malformed_line_is_reported_with_its_number_and_nothing_is_half_published(
    nats_server: NatsServer, tmp_path: Path, unique: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = unique("bad")
    path = tmp_path / "broken.jsonl"
    schema_violation = (
        b'{"specversion":"1.0","id":"x","source":"s","type":"io.k8s.deployment.updated.v1",'
        b'"natssubject":"evt.k8s.' + cluster.encode() + b'.shop.Deployment.updated","data":{"cluster":"c"}}\n'
    )
    _write_lines(path, cluster, good=4, bad={3: b'{"specversion": "1.0", oops\n', 5: schema_violation})
    url = ["--nats-url", nats_server.url]
    assert asyncio.run(_count(nats_server.url, f"evt.k8s.{cluster}.>")) == 0

    assert main(["events", "import", str(path), *url, "--execute", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "line 3: not JSON" in err
    assert "line 5: not a valid event: schema_violation" in err
    assert "nothing published" in err
    assert asyncio.run(_count(nats_server.url, f"evt.k8s.{cluster}.>")) == 0

    assert main(["events", "import", str(path), *url, "--on-error", "skip"]) == 0  # a dry run says, does nothing
    out = capsys.readouterr().out
    assert "dry run: would publish 4 events (lines 1..6, skipping 2 malformed)" in out
    assert asyncio.run(_count(nats_server.url, f"evt.k8s.{cluster}.>")) == 0

    assert main(["events", "import", str(path), *url, "--on-error", "skip", "--execute", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "line 3: not JSON" in captured.err
    assert "imported 4 events, 0 already stored" in captured.out
    assert "2 malformed line(s) kept as dead letters on dlq.events-import with their reasons (2 new)" in captured.out
    assert asyncio.run(_count(nats_server.url, f"evt.k8s.{cluster}.>")) == 4

    # the skipped lines are dead letters with their reasons, stored once however often the import runs
    assert main(["events", "import", str(path), *url, "--on-error", "skip", "--execute", "--quiet"]) == 0
    assert "(0 new)" in capsys.readouterr().out
    assert main(["events", "dlq", "list", *url, "--consumer", "events-import", "-o", "json"]) == 0
    letters = [x for x in json.loads(capsys.readouterr().out) if str(path) in x["reason"]]
    reasons = [x["reason"] for x in letters]
    assert len(reasons) == 2
    assert reasons[0].startswith(f"{path}:line 3: not JSON")
    assert reasons[1].startswith(f"{path}:line 5: not a valid event: schema_violation")


async def test_replay_keeps_the_order_and_the_pace(streams: Bus, tmp_path: Path, unique: Callable[[str], str]) -> None:
    """Stored 0, 0.2, 0.5, 0.6, 1.0 and 1.4 s apart, replayed at 2x: each lands at half its distance from the first,
    no earlier and at most 100 ms later (stated tolerance; the server stamps the stored time)."""
    cluster = unique("pace")
    offsets = [0.0, 0.2, 0.5, 0.6, 1.0, 1.4]
    start = datetime(2026, 11, 30, 12, tzinfo=UTC)
    path = tmp_path / "paced.jsonl"
    with path.open("wb") as out:
        for index, offset in enumerate(offsets):
            headers, body = encode(fact(cluster, f"web-{index}", index))
            out.write(
                export_line("K8S_EVENTS", index + 1, start + timedelta(seconds=offset), subject(cluster), headers, body)
            )
    plan = importing.check(path, CATALOGUE)
    run = unique("p")
    try:
        async with contextlib.aclosing(replaying.from_file(importing.good_lines(plan, 1))) as items:
            result = await replaying.replay(
                streams, items, run=run, into=replaying.Into.SHADOW, pacing=Pacing.parse("2x")
            )
        assert (result.tally.stored, result.replayed_through) == (6, 6)
        copies = await stored(streams, shadow_stream(run), f"shadow.{run}.>")
        assert [c["natssubject"] for c in copies] == [f"shadow.{run}.{subject(cluster)}"] * 6
        assert [c["id"] for c in copies] == [f"{cluster}:uid-web-{i}:{i}:updated" for i in range(6)]
        assert all(c["replayrun"] == run for c in copies)
        times = [datetime.fromisoformat(str(c["natstime"]).replace("Z", "+00:00")) for c in copies]
        for offset, time in zip(offsets, times, strict=True):
            late = (time - times[0]).total_seconds() - offset / 2
            assert -0.005 <= late <= 0.1, f"stored {late:+.3f}s from its pace"
    finally:
        await remove(streams.js, run)


async def test_an_instant_replay_of_a_stream_keeps_its_order(streams: Bus, unique: Callable[[str], str]) -> None:
    cluster = unique("order")
    events = [fact(cluster, f"web-{i % 7}", i) for i in range(300)]
    await streams.publisher.publish_all([(subject(cluster), e) for e in events])
    run = unique("o")
    skipped: list[int] = []
    try:
        selection = Selection(subjects=(f"evt.k8s.{cluster}.>",))
        async with contextlib.aclosing(
            replaying.from_stream(read_selection(streams, "K8S_EVENTS", selection), skipped)
        ) as items:
            result = await replaying.replay(streams, items, run=run, into=replaying.Into.SHADOW, pacing=Pacing(None))
        assert result.tally.stored == 300
        copies = await stored(streams, shadow_stream(run), f"shadow.{run}.>")
        assert [c["id"] for c in copies] == [e.id for e in events]
    finally:
        await remove(streams.js, run)


@pytest.fixture
async def consume(
    streams: Bus,
) -> AsyncIterator[Callable[[ConsumerSpec, Callable[[Delivery], Awaitable[None]]], Awaitable[None]]]:
    running: list[tuple[Consumer, asyncio.Task[None]]] = []

    async def start(spec: ConsumerSpec, handler: Callable[[Delivery], Awaitable[None]]) -> None:
        await streams.ensure_consumer(spec)
        consumer = Consumer(streams.js, spec, handler, registry=CATALOGUE.registry, metrics=streams.metrics)
        running.append((consumer, asyncio.create_task(consumer.run(grace=5))))

    yield start
    for consumer, task in running:
        consumer.stop()
        await task


async def _idle(bus: Bus, spec: ConsumerSpec) -> bool:
    info = await bus.js.consumer_info(spec.stream, spec.durable)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def test_a_replayed_event_causes_no_second_side_effect(
    streams: Bus, consume: Callable[..., Awaitable[None]], unique: Callable[[str], str]
) -> None:
    """Live replays keep the event's ce-source/ce-id (what handlers key their side effects on) and store one copy
    per run: replaying the same run again is a duplicate the stream drops."""
    cluster = unique("fx")
    spec = ConsumerSpec(
        unique("replay-fx-"), "K8S_EVENTS", (f"evt.k8s.{cluster}.>",), "test", backoff=(1.0,), max_deliver=3
    )
    seen: list[tuple[str, str, str | None]] = []
    side_effects: set[tuple[str, str]] = set()

    async def handle(delivery: Delivery) -> None:
        seen.append((delivery.event.source, delivery.event.id, delivery.event.extensions.get("replayrun")))
        side_effects.add((delivery.event.source, delivery.event.id))  # an idempotent handler's key

    await consume(spec, handle)
    event = fact(cluster, "web", 1)
    await streams.publisher.publish(subject(cluster), event)
    await eventually(lambda: len(seen) == 1, what="the original handled")

    last = (await streams.js.stream_info("K8S_EVENTS")).state.last_seq
    selection = Selection(subjects=(f"evt.k8s.{cluster}.>",), to_seq=last)
    run = unique("live")
    tallies = []
    for _ in range(2):  # the same replay run twice
        found = replaying.from_stream(read_selection(streams, "K8S_EVENTS", selection), [])
        async with contextlib.aclosing(found) as items:
            result = await replaying.replay(streams, items, run=run, into=replaying.Into.LIVE, pacing=Pacing(None))
        tallies.append((result.tally.stored, result.tally.duplicates))
    assert tallies == [(1, 0), (0, 1)]
    await eventually(lambda: _idle(streams, spec), what="the consumer caught up")
    assert seen[0] == (SOURCE, event.id, None)
    assert seen[1] == (SOURCE, event.id, run)
    assert side_effects == {(SOURCE, event.id)}


async def test_a_dead_letter_redriven_after_a_fix_is_processed_once(
    streams: Bus, consume: Callable[..., Awaitable[None]], unique: Callable[[str], str]
) -> None:
    cluster = unique("dlq")
    durable = unique("replay-dlq-")
    spec = ConsumerSpec(durable, "K8S_EVENTS", (f"evt.k8s.{cluster}.>",), "test", backoff=(1.0,), max_deliver=3)
    fixed = False
    processed: list[str] = []

    async def handle(delivery: Delivery) -> None:
        if not fixed:
            raise Reject("the image has no digest")
        processed.append(delivery.event.id)

    await consume(spec, handle)
    event = fact(cluster, "web", 1)
    await streams.publisher.publish(subject(cluster), event)
    letters = await eventually(lambda: dead_letters.list_letters(streams, durable), what="the dead letter")
    assert len(letters) == 1
    letter = letters[0]
    assert letter.consumer == durable
    assert letter.reason == "rejected: the image has no digest"
    assert (letter.subject, letter.ce["id"]) == (subject(cluster), event.id)
    assert processed == []

    fixed = True
    done = await dead_letters.redrive(streams, [letter.sequence])
    assert [(d.letter.sequence, d.duplicate) for d in done] == [(letter.sequence, False)]
    await eventually(lambda: processed == [event.id], what="the redriven message processed")
    assert await dead_letters.list_letters(streams, durable) == []
    with pytest.raises(SelectionError, match="no dead letter"):
        await dead_letters.redrive(streams, [letter.sequence])  # a second redrive finds nothing to do
    await eventually(lambda: _idle(streams, spec), what="the consumer caught up")
    assert processed == [event.id]


def test_the_replay_command_says_what_it_would_do_and_does_nothing_without_execute(
    nats_server: NatsServer, unique: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = unique("dry")
    run = unique("d")
    assert asyncio.run(_count(nats_server.url, f"evt.k8s.{cluster}.>")) == 0  # the streams exist
    url = ["--nats-url", nats_server.url]
    code = main(
        [
            "events",
            "replay",
            *url,
            "--stream",
            "K8S_EVENTS",
            "--subject",
            f"evt.k8s.{cluster}.>",
            "--run",
            run,
            "--pace",
            "10x",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"dry run: would replay 0 events from stream K8S_EVENTS (subjects evt.k8s.{cluster}.>)" in out
    assert f"into stream SHADOW_{run}" in out
    assert main(["events", "replay", *url, "--stream", "NOPE", "--execute"]) == 2
    assert "unknown stream 'NOPE'" in capsys.readouterr().err


def test_a_gzip_export_resumed_with_append_imports_as_one_file(
    nats_server: NatsServer, tmp_path: Path, unique: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = unique("gz")
    wanted = f"evt.k8s.{cluster}.>"

    async def record() -> list[int]:
        bus = await Bus.connect(nats_server.url, name="gz", metrics=BusMetrics(CollectorRegistry()))
        try:
            await bus.ensure_streams()
            acks = await bus.publisher.publish_all([(subject(cluster), fact(cluster, f"w{i}", i)) for i in range(40)])
            return [ack.seq for ack in acks]
        finally:
            await bus.close()

    sequences = asyncio.run(record())
    url = ["--nats-url", nats_server.url, "--quiet"]
    plain, packed = tmp_path / "all.jsonl", tmp_path / "part.jsonl.gz"
    assert main(["events", "export", *url, "--subject", wanted, "-o", str(plain)]) == 0
    # The same window in two runs (as a stopped export is resumed), the second added to the first.
    middle = sequences[24]
    first = ["events", "export", *url, "--subject", wanted, "--to-seq", str(middle - 1), "-o", str(packed)]
    assert main(first) == 0
    assert (
        main(["events", "export", *url, "--subject", wanted, "--from-seq", str(middle), "-o", str(packed), "--append"])
        == 0
    )
    capsys.readouterr()

    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert len(packed.read_bytes()) < len(plain.read_bytes()) / 3
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()  # both members, in order
    assert main(["events", "import", str(packed), *url]) == 0  # a dry run reads the compressed file
    assert "dry run: would publish 40 events (lines 1..40)" in capsys.readouterr().out
    assert main(["events", "export", *url, "--subject", wanted, "--append"]) == 2
    assert "--append needs --out" in capsys.readouterr().err


def test_what_publishes_again_is_recorded_on_evt_replay_and_a_dry_run_is_not(
    nats_server: NatsServer,
    tmp_path: Path,
    unique: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster, audited, run = unique("au"), unique("audit"), unique("r")
    monkeypatch.setenv("BALLAST_CLUSTER", audited)  # the record's subject: evt.replay.<audited>._.<state>

    async def record() -> None:
        bus = await Bus.connect(nats_server.url, name="au", metrics=BusMetrics(CollectorRegistry()))
        try:
            await bus.ensure_streams()
            await bus.publisher.publish_all([(subject(cluster), fact(cluster, f"w{i}", i)) for i in range(5)])
        finally:
            await bus.close()

    asyncio.run(record())
    url = ["--nats-url", nats_server.url, "--quiet"]
    path = tmp_path / "five.jsonl"
    assert main(["events", "export", *url, "--subject", f"evt.k8s.{cluster}.>", "-o", str(path)]) == 0
    assert main(["events", "import", str(path), *url]) == 0  # a dry run
    assert main(["events", "replay", *url, "--stream", "K8S_EVENTS", "--subject", f"evt.k8s.{cluster}.>"]) == 0
    capsys.readouterr()
    assert (
        asyncio.run(replay_records(nats_server.url, audited)) == []
    )  # dry runs publish nothing, their record included

    assert main(["events", "import", str(path), *url, "--execute"]) == 0
    err = capsys.readouterr().err
    (imported,) = {line.split()[1] for line in err.splitlines() if " recorded on evt.replay (import" in line}
    replay = ["events", "replay", *url, "--stream", "K8S_EVENTS", "--subject", f"evt.k8s.{cluster}.>"]
    assert main([*replay, "--run", run, "--execute"]) == 0

    records = asyncio.run(replay_records(nats_server.url, audited))
    assert [(state, r.operation, r.run) for state, r in records] == [
        ("started", ReplayOperation.IMPORT, imported),
        ("finished", ReplayOperation.IMPORT, imported),
        ("started", ReplayOperation.REPLAY, run),
        ("finished", ReplayOperation.REPLAY, run),
    ]
    import_started, import_finished, replay_started, replay_finished = (r for _, r in records)
    # The import put the five recorded events back on their live subjects: already stored, so duplicates.
    assert (import_finished.live, import_finished.planned, import_finished.stored) == (True, 5, 0)
    assert import_finished.duplicates == 5
    assert str(path) in import_finished.source
    assert import_started.ended_at is None
    assert import_finished.ended_at is not None
    assert import_finished.ended_at >= import_finished.started_at
    assert (import_finished.error, import_finished.resume) == (None, None)
    # The replay went into its shadow stream, not to the services.
    assert (replay_finished.live, replay_finished.planned, replay_finished.stored) == (False, 5, 5)
    assert f"SHADOW_{run}" in replay_finished.target
    assert replay_started.actor == replay_finished.actor
    assert "@" in replay_finished.actor
    asyncio.run(_remove_shadow(nats_server.url, run))


async def _remove_shadow(url: str, run: str) -> None:
    bus = await Bus.connect(url, name="au-clean", metrics=BusMetrics(CollectorRegistry()))
    try:
        await remove(bus.js, run)
    finally:
        await bus.close()


def test_a_redrive_is_recorded_on_evt_replay(
    nats_server: NatsServer,
    unique: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster, audited, durable = unique("rd"), unique("audit"), unique("redrive-")
    monkeypatch.setenv("BALLAST_CLUSTER", audited)

    async def dead_letter() -> int:
        """A consumer's dead letter of one stored fact, as `ballast.bus.consumer` writes it."""
        bus = await Bus.connect(nats_server.url, name="rd", metrics=BusMetrics(CollectorRegistry()))
        try:
            await bus.ensure_streams()
            event = fact(cluster, "web", 1)
            original = await bus.publisher.publish(subject(cluster), event)
            headers, body = encode(event)
            headers |= {
                DLQ_REASON: "rejected: the image has no digest",
                DLQ_CONSUMER: durable,
                DLQ_STREAM: "K8S_EVENTS",
                DLQ_SEQUENCE: str(original.seq),
                DLQ_SUBJECT: subject(cluster),
                DLQ_DELIVERIES: "1",
                "Nats-Msg-Id": f"dlq/K8S_EVENTS/{original.seq}/{durable}",
            }
            return (await bus.js.publish(f"dlq.{durable}", body, headers=headers)).seq
        finally:
            await bus.close()

    letter = asyncio.run(dead_letter())
    url = ["--nats-url", nats_server.url]
    assert main(["events", "dlq", "redrive", str(letter), *url, "--execute"]) == 0
    assert f"redrove #{letter} to {subject(cluster)}" in capsys.readouterr().out

    records = asyncio.run(replay_records(nats_server.url, audited))
    assert [(state, r.operation) for state, r in records] == [
        ("started", ReplayOperation.REDRIVE),
        ("finished", ReplayOperation.REDRIVE),
    ]
    finished = records[-1][1]
    assert (finished.live, finished.planned, finished.stored, finished.duplicates) == (True, 1, 1, 0)
    assert f"#{letter}" in finished.source


async def replay_records(url: str, cluster: str) -> list[tuple[str, ReplayRun]]:
    """The replay tooling's record on evt.replay.<cluster>: (state, run) in stream order."""
    bus = await Bus.connect(url, name="records", metrics=BusMetrics(CollectorRegistry()))
    try:
        found = []
        wanted = Selection(subjects=(f"evt.replay.{cluster}.>",))
        async with contextlib.aclosing(read_selection(bus, "PLATFORM_EVENTS", wanted)) as messages:
            async for message in messages:
                assert message.event is not None
                assert isinstance(message.event.data, ReplayRun)
                found.append((message.subject.rsplit(".", 1)[-1], message.event.data))
        return found
    finally:
        await bus.close()
