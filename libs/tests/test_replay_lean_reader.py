"""The lean reader and the export through it, against a real nats-server: the same lines as the bus's ordered
reader gives, byte for byte; gaps, filters, the end sequence, batches smaller than the read, a consumer lost mid-read
and a server restart."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from io import BytesIO

import pytest
from nats.js.api import StreamConfig
from prometheus_client import CollectorRegistry

from ballast.bus import Bus
from ballast.events import encode, new_event
from ballast.events.contracts.common import ObjectRef
from ballast.events.contracts.k8s import ObservedObject, k8s_event_type
from ballast.local.nats_server import NatsServer
from ballast.replay.exporting import export
from ballast.replay.lean_reader import LeanReader, RawMessage, parse_headers, stored_time, stored_time_text
from ballast.replay.reading import read_selection
from ballast.replay.records import NotAnEvent, export_line, export_line_raw
from ballast.replay.selection import Selection, SelectionError
from ballast.telemetry.metrics import BusMetrics


def _event(i: int) -> tuple[dict[str, str], bytes]:
    data = ObservedObject(
        cluster="lean",
        object=ObjectRef(api_version="apps/v1", kind="Deployment", namespace="shop", name=f"web-{i}", uid=f"u{i}"),
        resource_version=str(i),
        labels={"note": 'Euro € 😀 "quoted" 100%'},
    )
    event = new_event(k8s_event_type("Deployment", "updated"), "/clusters/lean/reconciler", data, subject=f"shop/w{i}")
    return encode(event)


def _messages(n: int) -> list[tuple[str, dict[str, str], bytes]]:
    """Typed events, with every fifth one made odd: a trace header, an upper-case attribute name, a body that is not
    compact JSON, a message that is not a CloudEvent."""
    found = []
    for i in range(n):
        headers, body = _event(i)
        if i % 5 == 1:
            headers["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        elif i % 5 == 2:
            headers["CE-Partitionkey"] = f"key {i}"
        elif i % 5 == 3:
            body = b'{ "spaced": true }'
        elif i % 5 == 4 and i % 10 == 9:
            headers = {"plain": "not an event"}
        found.append((f"lean.{'a' if i % 2 else 'b'}.{i % 3}", headers, body))
    return found


@pytest.fixture
async def recorded(bus: Bus, unique: Callable[[str], str]) -> AsyncIterator[str]:
    """A stream of its own holding 300 messages under `lean.<a|b>.<0-2>` (of this test only)."""
    name = unique("LEAN")
    await bus.js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"]))
    for subject, headers, body in _messages(300):
        await bus.js.publish_async(f"{name}.{subject}", body, headers=dict(headers))
    await bus.js.publish_async_completed()
    yield name
    await bus.js.delete_stream(name)


async def _read(url: str, stream: str, **options: object) -> tuple[list[RawMessage], LeanReader]:
    found: list[RawMessage] = []
    async with LeanReader(url, stream, **options) as reader:  # type: ignore[arg-type]
        async for batch in reader:
            found.extend(batch)
    return found, reader


async def _bus_lines(bus: Bus, stream: str, selection: Selection) -> bytes:
    out = BytesIO()
    await export(bus, stream, selection, out, lean=False)
    return out.getvalue()


async def test_the_lean_export_writes_the_same_bytes_as_the_bus_reader(bus: Bus, recorded: str) -> None:
    for selection in (
        Selection(),
        Selection(subjects=(f"{recorded}.lean.a.>",)),
        Selection(subjects=(f"{recorded}.lean.a.1", f"{recorded}.lean.b.2")),
        Selection(from_seq=17, to_seq=211),
        Selection(types=("io.k8s.*",), sources=("/clusters/lean/*",)),
    ):
        lean = BytesIO()
        result = await export(bus, recorded, selection, lean)
        expected = await _bus_lines(bus, recorded, selection)
        assert lean.getvalue() == expected, selection
        assert result.written == expected.count(b"\n") > 0
    everything = BytesIO()
    result = await export(bus, recorded, Selection(), everything)
    assert (result.written, len(result.not_events)) == (270, 30)  # every tenth is not a CloudEvent, and is named
    assert [seq for seq, _ in result.not_events] == list(range(10, 301, 10))


async def test_a_selection_reads_the_same_messages_through_the_lean_reader_and_the_bus_reader(
    bus: Bus, recorded: str
) -> None:
    Read = tuple[int, datetime, str, dict[str, str], bytes, bool]

    async def read(selection: Selection, *, lean: bool) -> list[Read]:
        async with contextlib.aclosing(read_selection(bus, recorded, selection, lean=lean)) as messages:
            return [(m.sequence, m.time, m.subject, dict(m.headers), m.data, m.error is None) async for m in messages]

    everything = await read(Selection(), lean=False)
    middle = everything[100][1]
    late = everything[200][1]
    for selection in (
        Selection(),
        Selection(subjects=(f"{recorded}.lean.a.>",)),
        Selection(from_seq=17, to_seq=211),
        Selection(since=middle, until=late),
        Selection(types=("io.k8s.*",), sources=("/clusters/lean/*",)),
    ):
        through_bus = await read(selection, lean=False)
        assert await read(selection, lean=True) == through_bus, selection
        assert through_bus, selection
    assert len(everything) == 300
    # 30 are not CloudEvents and 60 carry a body that is not the type's: read all the same, and not valid events
    assert sum(1 for m in everything if m[5]) == 210


async def test_raw_lines_equal_lines_from_parsed_headers(bus: Bus, recorded: str) -> None:
    messages, _ = await _read(bus.url, recorded)
    odd_blocks = [
        b"ce-specversion: 1.0\r\nce-id: a\r\nce-id: b\r\nce-source: s\r\nCE-TYPE: t\r\n",  # repeated, any case
        b"ce-specversion:1.0\r\nce-id:\t x \r\nce-source: %2Fs%20\r\nce-type: t\r\nbad name: v\r\nno colon\r\n",
        b"ce-specversion: 1.0\r\nce-id: %FF\r\nce-id: fine\r\nce-source: s\r\nce-type: t\r\n",  # bad value replaced
        b'ce-specversion: 1.0\r\nce-id: "q"\r\nce-source: s\r\nce-type: t\r\ntraceparent: p\r\nce-traceparent: c\r\n',
        b"ce-specversion: 1.0\r\nce-id: a\\b\r\nce-source: s\tt\r\nce-type: \xc3\xa9t\xe9\r\nce-subject:\r\n",
        b"ce-specversion: 1.0\r\nce-id: i\r\nce-source: s\r\nce-type: t\r\ntracestate: a=1\r\ntraceparent: p\r\n",
        b"traceparent: p1\r\nce-specversion: 1.0\r\nce-id: i\r\nce-source: s\r\nce-type: t\r\nTraceparent: p2\r\n",
        b"ce-specversion: 1.0\r\nce-source: s\r\nce-type: t\r\nce-x\x7f: \x7f\r\n",  # no id: not an event
        b"ce-specversion: 1.0\r\nce-id: i\r\nce-source: s\r\nce-type: t\r\nce-ext: %E2%82%AC%20%22\r\n",
    ]
    cases = [(m[3], m[4]) for m in messages] + [(block, b"{}") for block in odd_blocks]
    nanos = 1_700_000_000_123_456_789
    time = stored_time(nanos)

    def line(make: Callable[[], bytes]) -> bytes | str:
        try:
            return make()
        except NotAnEvent as exc:
            return str(exc)

    for block, body in cases:
        raw = line(lambda: export_line_raw("S", 7, nanos, "s.x", block, body))  # noqa: B023
        parsed = line(lambda: export_line("S", 7, time, "s.x", parse_headers(block), body))  # noqa: B023
        assert raw == parsed, block


def test_stored_times_are_written_as_the_bus_reader_writes_them() -> None:
    samples = [0, 1, 999, 1_000, 1_500, 2_500, 999_999_999, 1_000_000_000, 1_700_000_000_000_000_500]
    samples += [1_764_000_000_000_000_000 + k * 7_919_333 for k in range(20_000)]  # across seconds, halves included
    for nanos in samples:
        assert stored_time_text(nanos) == stored_time(nanos).isoformat().replace("+00:00", "Z"), nanos


async def test_the_reader_skips_gaps_and_stops_at_the_end_sequence(bus: Bus, recorded: str) -> None:
    for seq in (5, 6, 7, 150, 299):
        await bus.js.delete_msg(recorded, seq)
    found, reader = await _read(bus.url, recorded, batch=16)  # many pull requests
    assert [m[0] for m in found] == [s for s in range(1, 301) if s not in (5, 6, 7, 150, 299)]
    assert reader.restarts == 0

    found, _ = await _read(bus.url, recorded, from_seq=100, until=160, batch=7)
    assert [m[0] for m in found] == [s for s in range(100, 161) if s != 150]

    found, _ = await _read(bus.url, recorded, subjects=[f"{recorded}.lean.a.2"], until=200, batch=3)
    expected = [s for s in range(1, 201) if (s - 1) % 2 == 1 and (s - 1) % 3 == 2 and s not in (5, 6, 7, 150)]
    assert [m[0] for m in found] == expected
    assert {m[1] for m in found} == {f"{recorded}.lean.a.2"}

    # stored after reading began: not read (the end is the last message when reading began)
    async with LeanReader(bus.url, recorded, from_seq=290) as reader:
        await bus.js.publish(f"{recorded}.lean.a.0", b"later")
        later = [m[0] async for batch in reader for m in batch]
    assert later == [290, 291, 292, 293, 294, 295, 296, 297, 298, 300]


async def test_the_reader_hands_out_what_the_stream_stores(bus: Bus, recorded: str) -> None:
    found, _ = await _read(bus.url, recorded)
    info = await bus.js.get_msg(recorded, 42)
    message = next(m for m in found if m[0] == 42)
    assert message[1] == info.subject
    assert message[4] == info.data
    assert parse_headers(message[3]) == dict(info.headers or {})


async def test_unknown_streams_are_named(bus: Bus) -> None:
    with pytest.raises(SelectionError, match="'NOPE_LEAN' does not exist"):
        async with LeanReader(bus.url, "NOPE_LEAN"):
            pass


async def test_a_consumer_lost_mid_read_is_replaced_without_a_gap_or_a_repeat(bus: Bus, recorded: str) -> None:
    found: list[int] = []
    async with LeanReader(bus.url, recorded, batch=10, heartbeat=0.5) as reader:
        async for batch in reader:
            found.extend(m[0] for m in batch)
            if len(found) >= 50 and reader.restarts == 0:
                for name in await bus.js.consumers_info(recorded):
                    await bus.js.delete_consumer(recorded, name.name)  # the server ends its pull requests (409)
    assert found == list(range(1, 301))
    assert reader.restarts >= 1


async def test_a_server_restart_mid_read_loses_nothing(fresh_nats_server: NatsServer) -> None:
    bus = await Bus.connect(fresh_nats_server.url, name="lean", metrics=BusMetrics(CollectorRegistry()))
    try:
        await bus.js.add_stream(StreamConfig(name="LEANR", subjects=["leanr.>"]))
        for i in range(200):
            await bus.js.publish_async(f"leanr.{i % 4}", str(i).encode(), headers={"n": str(i)})
        await bus.js.publish_async_completed()
    finally:
        await bus.close()
    found: list[int] = []
    async with LeanReader(fresh_nats_server.url, "LEANR", batch=10, heartbeat=0.5) as reader:
        async for batch in reader:
            found.extend(m[0] for m in batch)
            if len(found) >= 40 and reader.restarts == 0:
                fresh_nats_server.restart()
    assert found == list(range(1, 201))
    assert reader.restarts >= 1
