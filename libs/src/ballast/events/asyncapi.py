"""Generates the AsyncAPI 3.0 document of the Ballast bus from the catalogue.

python -m ballast.events.asyncapi > docs/asyncapi.yaml
"""

from __future__ import annotations

import re
import sys
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ballast.events.catalogue import CATALOGUE, Catalogue, _matches

_PARAM = re.compile(r"\{(\w+)\}")
_CE_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents attributes as NATS headers (binary content mode); values percent-encoded.",
    "required": ["ce-specversion", "ce-id", "ce-source", "ce-type"],
    "properties": {
        "ce-specversion": {"type": "string", "const": "1.0", "description": "the CloudEvents version"},
        "ce-id": {"type": "string", "description": "unique per ce-source; derived from the fact reported"},
        "ce-source": {"type": "string", "description": "/clusters/<cluster>/<component>"},
        "ce-type": {"type": "string", "description": "the versioned event type; names the payload's schema"},
        "ce-time": {"type": "string", "format": "date-time", "description": "when the occurrence happened"},
        "ce-subject": {"type": "string", "description": "<namespace>/<name> of the object concerned"},
        "ce-datacontenttype": {"type": "string", "const": "application/json", "description": "the body's encoding"},
        "Nats-Msg-Id": {"type": "string", "description": "<ce-source>/<ce-id>; JetStream de-duplication"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
    },
}
_PARAM_DESCRIPTIONS = {
    "cluster": "the cluster's name",
    "namespace": "the object's namespace, or _ when cluster-scoped",
}


def _channel_id(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", _PARAM.sub(r"\1", address)).strip("_")


def _example_address(template: str) -> str:
    return _PARAM.sub("x", template)


def build(catalogue: Catalogue = CATALOGUE) -> dict[str, Any]:
    specs = (*catalogue.event_types, *catalogue.commands)
    models: dict[str, type[BaseModel]] = {}
    for model in (
        *(spec.model for spec in specs),
        *(m for endpoint in catalogue.endpoints for m in (endpoint.request, endpoint.response)),
    ):
        # Schemas are named by their model's class name: two models of one name would share a schema.
        if models.setdefault(model.__name__, model) is not model:
            raise ValueError(f"two payload models are named {model.__name__}")
    _, top = models_json_schema(
        [(model, "validation") for model in models.values()], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(sorted(top.get("$defs", {}).items()))

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in specs:
        message_id = spec.ce_type.replace(".", "_")
        messages[message_id] = {
            "name": spec.ce_type,
            "title": spec.ce_type,
            "summary": spec.description,
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            "payload": {"$ref": f"#/components/schemas/{spec.model.__name__}"},
        }
        channel_id = _channel_id(spec.subject)
        channel = channels.setdefault(
            channel_id,
            {
                "address": spec.subject,
                "description": f"Stream {catalogue.stream_for(_example_address(spec.subject)).name}.",
                "messages": {},
                "parameters": {
                    name: {"description": _PARAM_DESCRIPTIONS.get(name, name)} for name in _PARAM.findall(spec.subject)
                },
            },
        )
        channel["messages"][message_id] = {"$ref": f"#/components/messages/{message_id}"}
        operations[f"publish_{message_id}"] = {
            "action": "send",
            "summary": spec.description,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_id}"}],
        }
    for endpoint in catalogue.endpoints:
        channel_id = _channel_id(endpoint.subject)
        request_id, response_id = f"{channel_id}_request", f"{channel_id}_response"
        messages[request_id] = {
            "name": endpoint.request.__name__,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{endpoint.request.__name__}"},
        }
        messages[response_id] = {
            "name": endpoint.response.__name__,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{endpoint.response.__name__}"},
        }
        channels[channel_id] = {
            "address": endpoint.subject,
            "description": f"{endpoint.description} NATS micro service {endpoint.service} {endpoint.version}.",
            "messages": {
                request_id: {"$ref": f"#/components/messages/{request_id}"},
                response_id: {"$ref": f"#/components/messages/{response_id}"},
            },
        }
        operations[f"request_{channel_id}"] = {
            "action": "send",
            "summary": endpoint.description,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{request_id}"}],
            "reply": {"messages": [{"$ref": f"#/channels/{channel_id}/messages/{response_id}"}]},
        }
    for consumer in catalogue.consumers:
        for subject in consumer.filter_subjects:
            # A filter with wildcards receives on every channel it matches.
            for channel_id, channel in channels.items():
                if not _matches(subject, _example_address(channel["address"])):
                    continue
                operations[f"consume_{consumer.durable}_{channel_id}"] = {
                    "action": "receive",
                    "summary": f"{consumer.description} (durable {consumer.durable} on {consumer.stream})",
                    "channel": {"$ref": f"#/channels/{channel_id}"},
                }
    schemas["CloudEventHeaders"] = _CE_HEADERS_SCHEMA
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Ballast event bus",
            "version": "1.0.0",
            "description": (
                "Events and commands (CloudEvents 1.0, binary mode over NATS headers) and request/reply endpoints "
                "between Ballast services. Streams: "
                + "; ".join(
                    f"{s.name} ({', '.join(s.subjects)}, {s.retention.value}, max age {s.max_age.days} d)"
                    for s in catalogue.streams
                )
                + "."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:4222", "protocol": "nats", "description": "ballast up"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render(catalogue: Catalogue = CATALOGUE) -> str:
    header = "# Generated by `python -m ballast.events.asyncapi` from ballast/events/catalogue.py; do not edit.\n"
    return header + yaml.safe_dump(build(catalogue), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
