"""The bus's header parser against nats-py's: the same names and values for every block, well-formed or not."""

from __future__ import annotations

import pytest
from conftest import observed
from nats.aio.client import Client

from ballast.bus.headers import BusClient, parse_header_lines
from ballast.events import encode


def cloudevent_block() -> bytes:
    headers, _ = encode(observed("web"))
    headers["Nats-Msg-Id"] = "/clusters/c/reconciler/u1:1:updated"
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in headers.items()) + b"\r\n"


BLOCKS = [
    b"ce-id: 1\r\nce-type: io.k8s.deployment.updated.v1\r\n\r\n",
    b"Name:Value\r\nTabbed:\tvalue\t\r\n  Padded  :  both sides  \r\n",
    b"no colon here\r\n\r\n\r\nEmpty:\r\n: no name\r\n",
    b"Has Space: dropped\r\nHas\tTab: dropped\r\n\x1cSeparator: dropped\r\nTrailing\x1f: dropped\r\nok: kept\r\n",
    b"Repeated: first\r\nRepeated: second\r\n",
    b"Colons: a:b:c\r\nVertical\x0bTab: dropped\r\nForm\x0c: stripped\r\n",
    "Utf8: Euro € 😀\r\nNämé: non-ASCII name skipped\r\nafter: kept\r\n".encode(),
    b"Invalid: \xff\xfe\r\nplain: text\r\n",
    b"",
]


@pytest.mark.parametrize("raw", [*BLOCKS, cloudevent_block()])
def test_headers_parse_as_nats_py_parses_them(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_the_bus_client_parses_received_headers_with_it() -> None:
    # nats-py looks the parser up on the client: a rename upstream would leave ours unused, and fails here.
    assert BusClient()._parse_header_lines is parse_header_lines
    assert "_parse_header_lines" in vars(Client)
