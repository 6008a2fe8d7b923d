"""Idempotent creation of the catalogue's streams, key-value buckets and durable consumers."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import KV_STREAM_TEMPLATE
from nats.js.errors import BadRequestError, NotFoundError

from ballast.events.catalogue import BucketSpec, ConsumerSpec, Retention, StreamSpec

log = logging.getLogger(__name__)

STREAM_NAME_IN_USE = 10058  # JSStreamNameExistErr: a stream of that name exists with another configuration

_RETENTION = {Retention.LIMITS: RetentionPolicy.LIMITS, Retention.WORK_QUEUE: RetentionPolicy.WORK_QUEUE}


def stream_config(spec: StreamSpec) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        description=spec.description,
        subjects=list(spec.subjects),
        retention=_RETENTION[spec.retention],
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=spec.max_age.total_seconds(),
        max_bytes=spec.max_bytes,
        duplicate_window=spec.duplicate_window.total_seconds(),
        allow_direct=True,
    )


def consumer_config(spec: ConsumerSpec) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=spec.durable,
        description=spec.description,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait,
        backoff=list(spec.backoff) or None,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        filter_subjects=list(spec.filter_subjects) if len(spec.filter_subjects) > 1 else None,
        filter_subject=spec.filter_subjects[0] if len(spec.filter_subjects) == 1 else None,
    )


async def ensure_stream(js: JetStreamContext, spec: StreamSpec) -> None:
    config = stream_config(spec)
    try:
        await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream created", extra={"stream": spec.name})
        return
    await js.update_stream(config)


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Creates the durable or brings its mutable settings up to date; every replica may call this at start."""
    await js.add_consumer(spec.stream, consumer_config(spec))


async def ensure_bucket(js: JetStreamContext, spec: BucketSpec) -> None:
    """Creates the bucket, or brings the settings a bucket may change (history, age, description) up to date."""
    max_age = spec.max_age.total_seconds() if spec.max_age else None
    config = KeyValueConfig(
        bucket=spec.name,
        description=spec.description,
        history=spec.history,
        ttl=max_age,
        storage=StorageType.FILE,
        # Reads as direct gets (answered from the stream's store, as `nats kv add` makes buckets), not the stream API
        # with its JSON and base64 body: about 40% less client CPU per read, and bots read on every signal.
        direct=True,
    )
    try:
        await js.create_key_value(config)  # the same settings again are accepted as they are
        return
    except BadRequestError as exc:
        if exc.err_code != STREAM_NAME_IN_USE:
            raise
    # nats-py lays the bucket's stream out; only the settings the spec owns are changed in it.
    stream = (await js.stream_info(KV_STREAM_TEMPLATE.format(bucket=spec.name))).config
    stream.description = spec.description
    stream.max_msgs_per_subject = spec.history
    stream.max_age = max_age or 0.0
    stream.allow_direct = True
    await js.update_stream(stream)
    log.info("bucket updated", extra={"bucket": spec.name})
