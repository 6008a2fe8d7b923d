"""The CloudEvents binary-mode codec: round trips, the binding's percent-encoding, and one typed error per failure."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from conftest import observed

from ballast.events import DecodeFailure, EventDecodeError, decode, encode
from ballast.events.catalogue import REGISTRY
from ballast.events.contracts.k8s import ObservedObject
from ballast.events.envelope import Envelope


def test_round_trip_keeps_every_attribute_and_the_typed_payload() -> None:
    event = observed("web", resource_version="42")
    headers, body = encode(event)
    decoded = decode(headers, body, REGISTRY)
    assert decoded == event
    assert isinstance(decoded.data, ObservedObject)
    assert decoded.data.object.name == "web"


def test_headers_follow_the_nats_binding() -> None:
    headers, body = encode(observed("web"))
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "io.k8s.deployment.updated.v1"
    assert headers["ce-subject"] == "shop/web"
    assert headers["ce-datacontenttype"] == "application/json"
    assert headers["ce-time"].endswith("Z")
    assert json.loads(body)["object"]["kind"] == "Deployment"


def test_values_are_percent_encoded_as_the_binding_example_shows() -> None:
    event = observed("web").model_copy(update={"subject": "Euro € 😀"})
    headers, body = encode(event)
    assert headers["ce-subject"] == "Euro%20%E2%82%AC%20%F0%9F%98%80"
    assert decode(headers, body, REGISTRY).subject == "Euro € 😀"


def test_header_names_are_case_insensitive_and_quoted_values_accepted() -> None:
    headers, body = encode(observed("web"))
    shouted = {k.upper(): v for k, v in headers.items()}
    shouted["CE-SUBJECT"] = '"shop/web"'
    assert decode(shouted, body, REGISTRY).subject == "shop/web"


def test_a_header_repeated_in_another_case_counts_last_and_each_value_is_checked() -> None:
    headers, body = encode(observed("web"))
    assert decode({**headers, "CE-SUBJECT": "shop/api"}, body, REGISTRY).subject == "shop/api"
    assert decode({**headers, "CE-SUBJECT": "shop%2Fapi"}, body, REGISTRY).subject == "shop/api"
    assert decode({**headers, "ce-subject": "%20a", "CE-SUBJECT": "b"}, body, REGISTRY).subject == "b"
    error = _failure({**headers, "ce-subject": "%FF", "CE-SUBJECT": "shop/web"}, body)  # overridden, yet refused
    assert error.failure is DecodeFailure.BAD_HEADER
    assert "ce-subject" in error.detail
    # The same names again (any message after the first goes the remembered way): the same answers.
    assert decode({**headers, "ce-subject": "%20a", "CE-SUBJECT": "b"}, body, REGISTRY).subject == "b"
    assert decode(headers, body, REGISTRY).subject == "shop/web"


def test_extensions_travel_as_ce_headers() -> None:
    event = observed("web").model_copy(update={"extensions": {"replayrun": "run-7"}})
    headers, body = encode(event)
    assert headers["ce-replayrun"] == "run-7"
    assert decode(headers, body, REGISTRY).extensions == {"replayrun": "run-7"}


def _failure(headers: dict[str, str], body: bytes) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as caught:
        decode(headers, body, REGISTRY)
    return caught.value


def test_missing_header_names_the_header() -> None:
    headers, body = encode(observed("web"))
    del headers["ce-source"]
    error = _failure(headers, body)
    assert error.failure is DecodeFailure.MISSING_HEADER
    assert "ce-source" in error.detail


def test_unknown_type_is_refused() -> None:
    headers, body = encode(observed("web"))
    headers["ce-type"] = "io.k8s.deployment.exploded.v1"
    error = _failure(headers, body)
    assert error.failure is DecodeFailure.UNKNOWN_TYPE
    assert "io.k8s.deployment.exploded.v1" in error.detail


def test_bad_json_is_refused() -> None:
    headers, _ = encode(observed("web"))
    assert _failure(headers, b"{not json").failure is DecodeFailure.BAD_JSON


def test_schema_violation_names_the_field() -> None:
    headers, body = encode(observed("web"))
    data = json.loads(body)
    data["replicas"] = "three"
    del data["resource_version"]
    error = _failure(headers, json.dumps(data).encode())
    assert error.failure is DecodeFailure.SCHEMA_VIOLATION
    assert "replicas" in error.detail
    assert "resource_version" in error.detail


def test_unknown_fields_are_a_schema_violation() -> None:
    headers, body = encode(observed("web"))
    data = json.loads(body) | {"replcas": 3}
    assert _failure(headers, json.dumps(data).encode()).failure is DecodeFailure.SCHEMA_VIOLATION


def test_wrong_spec_version_and_content_type_are_refused() -> None:
    headers, body = encode(observed("web"))
    assert _failure(headers | {"ce-specversion": "0.3"}, body).failure is DecodeFailure.UNSUPPORTED_SPEC_VERSION
    assert _failure(headers | {"ce-datacontenttype": "text/xml"}, body).failure is DecodeFailure.BAD_HEADER
    assert _failure(headers | {"ce-time": "yesterday"}, body).failure is DecodeFailure.BAD_HEADER


def test_empty_required_attributes_are_refused_naming_them() -> None:
    headers, body = encode(observed("web"))
    error = _failure(headers | {"ce-id": "", "ce-source": ""}, body)
    assert error.failure is DecodeFailure.BAD_HEADER
    assert "ce-id" in error.detail
    assert "ce-source" in error.detail


def test_message_id_is_source_and_id() -> None:
    event = observed("web", resource_version="7", verb="deleted")
    assert event.msg_id == "/clusters/test/reconciler/uid-web:7:deleted"


def test_envelope_is_immutable() -> None:
    event: Envelope[ObservedObject] = observed("web")
    with pytest.raises(ValueError, match="frozen"):
        event.id = "other"  # type: ignore[misc]
    assert event.time <= datetime.now(UTC)


def test_decoded_envelope_serialises_its_concrete_payload() -> None:
    headers, body = encode(observed("web"))
    decoded = decode(headers, body, REGISTRY)
    assert json.loads(decoded.model_dump_json())["data"]["object"]["name"] == "web"
