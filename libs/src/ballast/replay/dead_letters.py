"""`ballast events dlq list|show|redrive`: the dead letters the bus's consumers leave in `DEAD_LETTERS`.

Two kinds are kept there (see `ballast.bus.consumer` and the catalogue): a copy of the message on `dlq.<durable>`
with the original headers and the `Ballast-Dlq-*` headers saying why (rejected, malformed, given up after N
deliveries), and the server's max-deliveries advisory, which names the original by stream and sequence only.

A redrive publishes the original again on its original subject, with its own ids (consumers that key on
ce-source/ce-id stay idempotent) and `Nats-Msg-Id: <original key>:redrive:<dead letter sequence>`, then deletes the
dead letter. A redrive run again finds nothing to do; one interrupted between the publish and the delete publishes
nothing twice inside the duplicate window. Every consumer of the original stream sees the redriven message, not only
the one that gave up on it: handlers must be idempotent, as the platform's are.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from nats.js.errors import NotFoundError

from ballast.bus import Bus
from ballast.bus.consumer import (
    DLQ_CONSUMER,
    DLQ_DELIVERIES,
    DLQ_REASON,
    DLQ_SEQUENCE,
    DLQ_STREAM,
    DLQ_SUBJECT,
)
from ballast.bus.publisher import MSG_ID_HEADER, PublishError
from ballast.events.catalogue import DEAD_LETTERS
from ballast.events.envelope import _decode_value
from ballast.replay.reading import read_selection
from ballast.replay.selection import Selection, SelectionError

REDRIVE_OF = "Ballast-Redrive-Of"
ADVISORY_PREFIX = "$JS.EVENT.ADVISORY.CONSUMER."


@dataclass(frozen=True)
class DeadLetter:
    sequence: int  # in DEAD_LETTERS
    time: datetime
    consumer: str
    reason: str
    stream: str | None  # where the original was stored
    stream_seq: int | None
    subject: str | None  # the original subject (None until an advisory's original is looked up)
    deliveries: int | None
    headers: Mapping[str, str]  # the original's headers
    body: bytes | None  # the original body (None: an advisory whose original was not looked up or is gone)

    @property
    def kind(self) -> str:
        return "copy" if self.body is not None and self.subject is not None else "advisory"

    @property
    def ce(self) -> dict[str, str]:
        return {k.lower()[3:]: v for k, v in self.headers.items() if k.lower().startswith("ce-")}


def _letter(sequence: int, time: datetime, subject: str, headers: Mapping[str, str], body: bytes) -> DeadLetter:
    if subject.startswith(ADVISORY_PREFIX):
        try:
            advisory = json.loads(body)
        except ValueError:
            advisory = {}
        return DeadLetter(
            sequence,
            time,
            consumer=str(advisory.get("consumer", "?")),
            reason=f"the server gave up after {advisory.get('deliveries', '?')} deliveries without an answer",
            stream=advisory.get("stream"),
            stream_seq=advisory.get("stream_seq"),
            subject=None,
            deliveries=advisory.get("deliveries"),
            headers={},
            body=None,
        )
    own = {DLQ_REASON, DLQ_CONSUMER, DLQ_STREAM, DLQ_SEQUENCE, DLQ_SUBJECT, DLQ_DELIVERIES, MSG_ID_HEADER}
    original_sequence = headers.get(DLQ_SEQUENCE, "")
    deliveries = headers.get(DLQ_DELIVERIES, "")
    return DeadLetter(
        sequence,
        time,
        consumer=headers.get(DLQ_CONSUMER, subject.removeprefix("dlq.")),
        reason=headers.get(DLQ_REASON, "?"),
        stream=headers.get(DLQ_STREAM),
        stream_seq=int(original_sequence) if original_sequence.isdigit() else None,
        subject=headers.get(DLQ_SUBJECT),
        deliveries=int(deliveries) if deliveries.isdigit() else None,
        headers={k: v for k, v in headers.items() if k not in own},
        body=body,
    )


async def list_letters(bus: Bus, consumer: str | None = None) -> list[DeadLetter]:
    selection = Selection(subjects=(f"dlq.{consumer}",) if consumer else ())
    letters = []
    async with contextlib.aclosing(read_selection(bus, DEAD_LETTERS.name, selection)) as messages:
        async for stored in messages:
            letter = _letter(stored.sequence, stored.time, stored.subject, stored.headers, stored.data)
            if consumer is None or letter.consumer == consumer:
                letters.append(letter)
    return letters


async def get_letter(bus: Bus, sequence: int, *, with_original: bool = True) -> DeadLetter:
    """The dead letter at `sequence`; for an advisory, with the original looked up when it is still stored."""
    try:
        raw = await bus.js.get_msg(DEAD_LETTERS.name, sequence)
    except NotFoundError:
        raise SelectionError(f"no dead letter {sequence} in {DEAD_LETTERS.name} (redriven, or never there)") from None
    assert raw.subject is not None
    assert raw.time is not None
    letter = _letter(sequence, raw.time, raw.subject, raw.headers or {}, raw.data or b"")
    if letter.kind == "advisory" and with_original and letter.stream and letter.stream_seq:
        with contextlib.suppress(NotFoundError):
            original = await bus.js.get_msg(letter.stream, letter.stream_seq)
            letter = DeadLetter(
                letter.sequence,
                letter.time,
                letter.consumer,
                letter.reason,
                letter.stream,
                letter.stream_seq,
                original.subject,
                letter.deliveries,
                {k: v for k, v in (original.headers or {}).items() if k != "Nats-Stream-Source"},
                original.data or b"",
            )
    return letter


def redrive_headers(letter: DeadLetter) -> dict[str, str]:
    headers = {k: v for k, v in letter.headers.items() if k != MSG_ID_HEADER}
    ce = letter.ce
    key = f"{_decode_value(ce['source'])}/{_decode_value(ce['id'])}" if "source" in ce and "id" in ce else None
    key = key or f"{letter.stream}/{letter.stream_seq}"
    headers[MSG_ID_HEADER] = f"{key}:redrive:{letter.sequence}"
    headers[REDRIVE_OF] = f"{DEAD_LETTERS.name}#{letter.sequence}"
    return headers


@dataclass(frozen=True)
class Redriven:
    letter: DeadLetter
    stream: str
    stream_seq: int
    duplicate: bool


async def redrive(bus: Bus, sequences: Sequence[int]) -> list[Redriven]:
    """Publishes each dead letter's original again and deletes the dead letter (see the module docstring)."""
    done = []
    for sequence in sequences:
        letter = await get_letter(bus, sequence)
        if letter.consumer == "events-import":
            raise SelectionError(
                f"dead letter {sequence}: a malformed line of an import ({letter.reason}): fix it and import it again"
            )
        if letter.subject is None or letter.body is None:
            raise SelectionError(
                f"dead letter {sequence}: the original ({letter.stream}#{letter.stream_seq}) is no longer stored"
            )
        try:
            ack = await bus.js.publish(letter.subject, letter.body, headers=redrive_headers(letter))
        except Exception as exc:
            raise PublishError(f"dead letter {sequence}: not republished ({exc!r}); nothing deleted") from exc
        await bus.js.delete_msg(DEAD_LETTERS.name, sequence)
        done.append(Redriven(letter, ack.stream, ack.seq, bool(ack.duplicate)))
    return done
