"""CloudEvents 1.0 in binary mode over NATS headers (the NATS protocol binding, `ce-` prefixed attributes).

Attributes travel as `ce-*` headers with percent-encoded values; `data` is the JSON body, validated by the pydantic
model that the registry names for `ce-type`. Decoding failures raise one error type that says which check failed.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Generic, TypeVar
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from ballast.events.registry import TypeRegistry

SPEC_VERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
REQUIRED_HEADERS = ("ce-specversion", "ce-id", "ce-source", "ce-type")
_CORE_ATTRIBUTES = {"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema"}
# Percent-encode space, double quote, percent and anything outside printable ASCII (binding spec, header values).
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')

D = TypeVar("D", bound=BaseModel, covariant=True)  # envelopes are immutable
P = TypeVar("P", bound=BaseModel)


class DecodeFailure(enum.StrEnum):
    MISSING_HEADER = "missing_header"
    UNSUPPORTED_SPEC_VERSION = "unsupported_spec_version"
    UNKNOWN_TYPE = "unknown_type"
    BAD_HEADER = "bad_header"
    BAD_JSON = "bad_json"
    SCHEMA_VIOLATION = "schema_violation"


class EventDecodeError(Exception):
    """A message that is not a valid Ballast event; `failure` says which check failed and `detail` why."""

    def __init__(self, failure: DecodeFailure, detail: str, ce_type: str | None = None) -> None:
        super().__init__(f"{failure.value}: {detail}")
        self.failure = failure
        self.detail = detail
        self.ce_type = ce_type


class Envelope(BaseModel, Generic[D]):
    """A CloudEvent whose `data` is a typed payload."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    specversion: str = SPEC_VERSION
    time: datetime
    subject: str | None = None
    datacontenttype: str = JSON_CONTENT_TYPE
    dataschema: str | None = None
    extensions: dict[str, str] = Field(default_factory=dict)
    data: SerializeAsAny[D]  # an Envelope[BaseModel] must still serialise its concrete payload

    @property
    def msg_id(self) -> str:
        """The JetStream de-duplication key: CloudEvents makes (source, id) unique."""
        return f"{self.source}/{self.id}"


_AnyEnvelope = Envelope[BaseModel]


def new_event(
    ce_type: str,
    source: str,
    data: P,
    *,
    subject: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
    extensions: Mapping[str, str] | None = None,
) -> Envelope[P]:
    """Builds an envelope; pass `event_id` derived from the fact it reports so that retries collapse."""
    return Envelope(
        id=event_id or uuid.uuid4().hex,
        source=source,
        type=ce_type,
        time=time or datetime.now(UTC),
        subject=subject,
        extensions=dict(extensions or {}),
        data=data,
    )


_NEEDS_QUOTING = re.compile(r'[^\x21-\x7e]|["%]')


def _encode_value(value: str) -> str:
    return quote(value, safe=_SAFE) if _NEEDS_QUOTING.search(value) else value


def _decode_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return unquote(value, errors="strict") if "%" in value else value


def encode(event: Envelope[BaseModel]) -> tuple[dict[str, str], bytes]:
    """Returns the NATS headers and body for `event` (binary content mode)."""
    headers = {
        "ce-specversion": event.specversion,
        "ce-id": _encode_value(event.id),
        "ce-source": _encode_value(event.source),
        "ce-type": _encode_value(event.type),
        "ce-time": event.time.isoformat().replace("+00:00", "Z"),
        "ce-datacontenttype": _encode_value(event.datacontenttype),
    }
    if event.subject is not None:
        headers["ce-subject"] = _encode_value(event.subject)
    if event.dataschema is not None:
        headers["ce-dataschema"] = _encode_value(event.dataschema)
    for name, value in event.extensions.items():
        headers[f"ce-{name}"] = _encode_value(value)
    return headers, event.data.model_dump_json().encode()


# Which headers carry CloudEvents attributes, worked out once per list of header names (a producer sends the same few
# in the same order on every message, so a consumer sees a handful of lists): the (header, attribute) pairs in order,
# and whether any attribute is an extension. NATS keeps header case as sent, and the binding says names are
# case-insensitive.
_Plan = tuple[tuple[tuple[str, str], ...], bool]
_PLANS: dict[tuple[str, ...], _Plan] = {}
_REQUIRED_ATTRIBUTES = frozenset(h[3:] for h in REQUIRED_HEADERS)


def _plan(names: tuple[str, ...]) -> _Plan:
    carried = tuple((name, name[3:].lower()) for name in names if name[:3].lower() == "ce-")
    plan = carried, any(attribute not in _CORE_ATTRIBUTES for _, attribute in carried)
    if len(_PLANS) < 256:
        _PLANS[names] = plan
    return plan


def decode(headers: Mapping[str, str] | None, body: bytes, registry: TypeRegistry) -> Envelope[BaseModel]:
    """Validates a received message and returns its typed envelope, or raises `EventDecodeError`."""
    headers = headers or {}
    names = tuple(headers)
    carried, extended = _PLANS.get(names) or _plan(names)
    attrs = {attribute: headers[name] for name, attribute in carried}  # a name repeated in other case: the last
    joined = "".join(attrs.values())
    if '"' in joined or "%" in joined or len(attrs) < len(carried):  # most are plain, none repeated (hot path)
        attrs = {}
        for name, attribute in carried:
            raw = headers[name]
            if raw[:1] == '"' or "%" in raw:
                try:
                    raw = _decode_value(raw)
                except UnicodeDecodeError as exc:
                    raise EventDecodeError(
                        DecodeFailure.BAD_HEADER, f"header {name} is not valid UTF-8: {exc}"
                    ) from exc
            attrs[attribute] = raw
    if not attrs.keys() >= _REQUIRED_ATTRIBUTES:
        missing = [h for h in REQUIRED_HEADERS if h[3:] not in attrs]
        raise EventDecodeError(DecodeFailure.MISSING_HEADER, f"missing required header(s) {', '.join(missing)}")
    ce_type = attrs["type"]
    if attrs["specversion"] != SPEC_VERSION:
        raise EventDecodeError(
            DecodeFailure.UNSUPPORTED_SPEC_VERSION,
            f"ce-specversion {attrs['specversion']!r} is not {SPEC_VERSION}",
            ce_type,
        )
    event_type = registry.get(ce_type)
    if event_type is None:
        raise EventDecodeError(DecodeFailure.UNKNOWN_TYPE, f"ce-type {ce_type!r} is not registered", ce_type)
    content_type = attrs.get("datacontenttype", JSON_CONTENT_TYPE)
    if content_type != JSON_CONTENT_TYPE and content_type.split(";")[0].strip() != JSON_CONTENT_TYPE:
        raise EventDecodeError(
            DecodeFailure.BAD_HEADER, f"ce-datacontenttype {content_type!r} is not {JSON_CONTENT_TYPE}", ce_type
        )
    try:
        data = event_type.model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors()
        if any(err["type"] == "json_invalid" for err in errors):
            raise EventDecodeError(DecodeFailure.BAD_JSON, f"body is not JSON: {errors[0]['msg']}", ce_type) from exc
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in errors)
        raise EventDecodeError(
            DecodeFailure.SCHEMA_VIOLATION, f"data does not match {event_type.model.__name__}: {problems}", ce_type
        ) from exc
    try:
        time = datetime.fromisoformat(attrs["time"]) if "time" in attrs else datetime.now(UTC)
    except ValueError as exc:
        raise EventDecodeError(DecodeFailure.BAD_HEADER, f"ce-time is not RFC 3339: {exc}", ce_type) from exc
    # Validated by pydantic-core, which costs less than model_construct's Python loop; `data` is taken as it is.
    try:
        return _AnyEnvelope.model_validate(
            {
                "id": attrs["id"],
                "source": attrs["source"],
                "type": ce_type,
                "specversion": attrs["specversion"],
                "time": time,
                "subject": attrs.get("subject"),
                "datacontenttype": content_type,
                "dataschema": attrs.get("dataschema"),
                "extensions": {k: v for k, v in attrs.items() if k not in _CORE_ATTRIBUTES} if extended else {},
                "data": data,
            }
        )
    except ValidationError as exc:  # an attribute present but empty
        problems = "; ".join(f"ce-{err['loc'][0]}: {err['msg']}" for err in exc.errors())
        raise EventDecodeError(DecodeFailure.BAD_HEADER, problems, ce_type) from exc
