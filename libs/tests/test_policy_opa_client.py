"""The OPA client's own HTTP/1.1: responses read whole by length or chunks, kept-alive connections reused, an OPA that
gone reported as unavailable (the engine tests restart OPA under a kept-alive connection)."""

from __future__ import annotations

import pytest

from ballast.policy import ManagedOpa, OpaUnavailable, PolicyEngine
from ballast.policy.opa import OpaClient, _parse_response


def test_a_response_is_whole_only_once_its_length_or_last_chunk_is_in() -> None:
    plain = bytearray(b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"a":1')
    assert _parse_response(plain) is None
    plain += b"}HTTP/1.1"  # the start of a next response is not this one's
    assert _parse_response(plain) == (200, b'{"a":1}', True, len(plain) - len(b"HTTP/1.1"))
    chunked = bytearray(b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n")
    assert _parse_response(chunked) is None
    chunked += b"2\r\nde\r\n0\r\n\r\n"
    assert _parse_response(chunked) == (500, b"abcde", False, len(chunked))
    with pytest.raises(ValueError, match=r"not HTTP/1\.1"):
        _parse_response(bytearray(b"SSH-2.0\r\n\r\n"))


async def test_large_documents_round_trip_on_one_kept_alive_connection(
    managed_opa: tuple[ManagedOpa, PolicyEngine],
) -> None:
    opa, _ = managed_opa
    big = {f"key{i}": "x" * 100 for i in range(2000)}  # ~200 KB: Go's server answers it in chunks
    await opa.client.put_data("big", big)
    for _ in range(3):
        assert await opa.client.evaluate("big", None) == big
    assert len(opa.client._idle) == 1  # one connection, reused


async def test_an_opa_gone_is_unavailable(
    managed_opa: tuple[ManagedOpa, PolicyEngine],
) -> None:
    opa, _ = managed_opa
    await opa.client.put_data("x", 1)
    url = opa.client.url
    await opa.close()  # the kept-alive connection now leads nowhere
    client = OpaClient(url, timeout=2.0)
    with pytest.raises(OpaUnavailable):
        await client.evaluate("x", None)
    assert not await client.healthy(timeout=1.0)
    await client.close()
