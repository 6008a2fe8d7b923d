"""The replay tooling's pure parts: the JSONL export format, selections (times, subjects, streams), pacing, and the
SLO backtest's interval comparison."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from ballast.events.catalogue import CATALOGUE
from ballast.events.contracts.slo import AlertState, BurnTier
from ballast.replay.pacing import Pacing, PacingError
from ballast.replay.records import MalformedLine, NotAnEvent, export_line, parse_line
from ballast.replay.selection import Selection, SelectionError, covers, overlaps, parse_time, stream_of
from ballast.replay.shadow_slo import Firing, firings

T0 = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "uid-1:7:updated",
    "ce-source": "/clusters/test/reconciler",
    "ce-type": "io.k8s.deployment.updated.v1",
    "ce-time": "2026-11-30T11:59:59.5Z",
    "ce-subject": "shop/Euro%20%E2%82%AC%20%F0%9F%98%80",
    "ce-datacontenttype": "application/json",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "Nats-Msg-Id": "/clusters/test/reconciler/uid-1:7:updated",
}
BODY = b'{"cluster":"test","ratio":0.25,"name":"caf\xc3\xa9"}'


def test_a_line_is_a_structured_cloudevent_that_gives_back_subject_headers_and_body() -> None:
    line = export_line("K8S_EVENTS", 42, T0, "evt.k8s.test.shop.Deployment.updated", HEADERS, BODY)
    assert line.endswith(b"}\n")
    assert line.count(b"\n") == 1
    event = orjson.loads(line)
    assert event["id"] == "uid-1:7:updated"
    assert event["subject"] == "shop/Euro € 😀"  # percent-decoding undone: the attribute as CloudEvents means it
    assert event["natssequence"] == 42
    assert event["natsstream"] == "K8S_EVENTS"
    assert event["natstime"] == "2026-11-30T12:00:00.123456Z"
    assert event["data"] == {"cluster": "test", "ratio": 0.25, "name": "café"}
    assert "nats-msg-id" not in {k.lower() for k in event}

    back = parse_line(1, line)
    assert back.subject == "evt.k8s.test.shop.Deployment.updated"
    assert back.body == BODY
    assert back.sequence == 42
    assert back.time == T0
    assert back.headers["ce-subject"] == HEADERS["ce-subject"]
    assert back.headers["traceparent"] == HEADERS["traceparent"]
    assert back.msg_id == HEADERS["Nats-Msg-Id"]


def test_a_body_that_would_not_come_back_byte_for_byte_travels_as_base64() -> None:
    for body in (b'{"a": 1}', b"not json", b'{"a":1}\n', b'{"ratio":1e-5}'):
        event = orjson.loads(export_line("K8S_EVENTS", 1, T0, "evt.k8s.a.b.Pod.created", HEADERS, body))
        assert "data" not in event
        assert base64.b64decode(event["data_base64"]) == body
        assert parse_line(1, orjson.dumps(event)).body == body


def test_a_message_without_cloudevents_headers_is_not_a_line() -> None:
    with pytest.raises(NotAnEvent, match="ce-id"):
        export_line("K8S_EVENTS", 1, T0, "evt.k8s.a", {"ce-specversion": "1.0", "ce-source": "s", "ce-type": "t"}, b"")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"specversion":"1.0","id":"1","source":"s","natssubject":"evt.k8s.a"}', "no type"),
        (b'{"specversion":"0.3","id":"1","source":"s","type":"t","natssubject":"x"}', "specversion"),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"t"}', "natssubject"),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"t","natssubject":"x","natstime":"noon"}', "natstime"),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"t","natssubject":"x","ext":{"a":1}}', "ext"),
    ],
)
def test_a_malformed_line_says_which_line_and_what_is_wrong(text: bytes, reason: str) -> None:
    with pytest.raises(MalformedLine) as caught:
        parse_line(7, text)
    assert caught.value.line == 7
    assert str(caught.value).startswith("line 7: ")
    assert reason in caught.value.reason


def test_times_are_absolute_or_a_duration_before_now() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert parse_time("2h", now) == now - timedelta(hours=2)
    assert parse_time("1d12h", now) == now - timedelta(days=1, hours=12)
    assert parse_time("2026-11-30T10:00:00Z") == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert parse_time("2026-11-30T10:00:00") == datetime(2026, 11, 30, 10, tzinfo=UTC)  # no zone: UTC
    assert parse_time("2026-11-30T10:00:00+01:00") == datetime(2026, 11, 30, 9, tzinfo=UTC)
    with pytest.raises(SelectionError, match="yesterday"):
        parse_time("yesterday")


def test_subject_filters_are_checked_against_the_streams_that_hold_them() -> None:
    assert covers("evt.k8s.>", "evt.k8s.test.>")
    assert covers("evt.k8s.>", "evt.k8s.*.shop.Deployment.updated")
    assert not covers("evt.k8s.>", "evt.>")
    assert not covers("evt.k8s.*", "evt.k8s.a.b")
    assert not covers("evt.k8s.a", "evt.k8s.*")
    assert stream_of(CATALOGUE, None, ["evt.k8s.test.>"]) == "K8S_EVENTS"
    assert stream_of(CATALOGUE, "PLATFORM_EVENTS", ["evt.policy.*.*.denied"]) == "PLATFORM_EVENTS"
    assert stream_of(CATALOGUE, "SHADOW_r1", []) == "SHADOW_r1"
    with pytest.raises(SelectionError, match="unknown stream 'K8S'"):
        stream_of(CATALOGUE, "K8S", [])
    with pytest.raises(SelectionError, match=r"holds subject\(s\) evt.nope.>"):
        stream_of(CATALOGUE, None, ["evt.nope.>"])
    with pytest.raises(SelectionError, match=r"does not hold subject\(s\) evt.k8s.>"):
        stream_of(CATALOGUE, "PLATFORM_EVENTS", ["evt.k8s.>"])
    with pytest.raises(SelectionError, match="span streams K8S_EVENTS, PLATFORM_EVENTS"):
        stream_of(CATALOGUE, None, ["evt.k8s.>", "evt.slo.>"])
    # One cluster's share of a stream: a filter no pattern covers but some overlap.
    assert overlaps("evt.slo.>", "evt.*.prod.>")
    assert overlaps("evt.slo.>", "evt.*.*")
    assert overlaps("evt.slo.*", "evt.>")
    assert not overlaps("evt.slo.>", "evt.*")  # `>` needs a token after evt.slo
    assert not overlaps("evt.slo.>", "cmd.*.prod.>")
    assert not overlaps("evt.slo.a", "evt.slo.a.b")
    assert stream_of(CATALOGUE, "PLATFORM_EVENTS", ["evt.*.prod.>"]) == "PLATFORM_EVENTS"
    assert stream_of(CATALOGUE, None, ["$JS.EVENT.ADVISORY.*.MAX_DELIVERIES.>"]) == "DEAD_LETTERS"  # overlaps one
    with pytest.raises(SelectionError, match="selects from streams K8S_EVENTS, PLATFORM_EVENTS: name one"):
        stream_of(CATALOGUE, None, ["evt.*.prod.>"])


def test_types_and_sources_are_globs_on_the_headers() -> None:
    selection = Selection(types=("io.k8s.deployment.*",), sources=("/clusters/test/*",))
    assert selection.wants(HEADERS)
    assert not selection.wants(HEADERS | {"ce-type": "io.k8s.pod.created.v1"})
    assert not selection.wants(HEADERS | {"ce-source": "/clusters/prod/reconciler"})
    assert Selection(types=("io.k8s.deployment.*",)).wants({"CE-Type": "io.k8s.deployment.created.v1"})
    with pytest.raises(SelectionError, match="before --from-seq"):
        Selection(from_seq=5, to_seq=4)


def test_what_is_left_of_a_selection_after_a_sequence() -> None:
    since = datetime(2026, 12, 1, tzinfo=UTC)
    window = Selection(subjects=("evt.k8s.>",), types=("io.k8s.*",), since=since, from_seq=None, to_seq=40)
    rest = window.after(17)
    assert rest == Selection(subjects=("evt.k8s.>",), types=("io.k8s.*",), from_seq=18, to_seq=40)
    assert rest is not None
    assert rest.filters_headers
    assert window.after(39) == Selection(subjects=("evt.k8s.>",), types=("io.k8s.*",), from_seq=40, to_seq=40)
    assert window.after(40) is None  # its last was handed out: nothing is left (not an empty range refused)
    assert Selection().after(5) == Selection(from_seq=6)


def test_pacing() -> None:
    assert Pacing.parse("instant").speed is None
    assert Pacing.parse("original").speed == 1.0
    assert Pacing.parse("10x").speed == 10.0
    assert Pacing.parse("0.5x").duration(T0, T0 + timedelta(seconds=3)) == 6.0
    for bad in ("fast", "0x", "-2x"):
        with pytest.raises(PacingError):
            Pacing.parse(bad)


def test_firing_intervals_from_transitions() -> None:
    at = [T0 + timedelta(minutes=m) for m in range(10)]
    found = firings(
        [
            (BurnTier.TICKET, AlertState.RESOLVED, at[1]),  # firing before the window
            (BurnTier.PAGE, AlertState.FIRING, at[2]),
            (BurnTier.PAGE, AlertState.RESOLVED, at[5]),
            (BurnTier.PAGE, AlertState.FIRING, at[8]),  # still firing at the end
        ]
    )
    assert found == [
        Firing(BurnTier.PAGE, at[2], at[5]),
        Firing(BurnTier.PAGE, at[8], None),
        Firing(BurnTier.TICKET, None, at[1]),
    ]
    assert found[0].overlaps(Firing(BurnTier.PAGE, at[5], at[6]))
    assert not found[0].overlaps(Firing(BurnTier.PAGE, at[6], at[7]))
