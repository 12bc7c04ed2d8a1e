"""Benchmark input: storefront requests as the storefront sends them, and replayed dead letters."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer

from hub.core import deadletter
from hub.core.errors import fingerprint
from hub.core.outbound import OutRecord, event_record
from hub.core.topics import STOREFRONT_REQUESTS
from lab.samples import sample_request_v2

if TYPE_CHECKING:
    from collections.abc import Iterable

STOREFRONT_SOURCE = "urn:storefront:mall"
REPLAYED_HANDLER = "intake.service.handle_request"


def storefront_request(number: int, *, topic: str = STOREFRONT_REQUESTS) -> OutRecord:
    """The `number`-th storefront request (about 0.8 KB of JSON plus 0.35 KB of headers)."""
    request = sample_request_v2(number)
    return event_record(topic, request, key=request.request_id, source=STOREFRONT_SOURCE)


def dead_letter(number: int, *, origin_topic: str, group: str, topic: str) -> OutRecord:
    """A storefront request that `group` dead-lettered (a timeout) onto `topic`."""
    original = storefront_request(number, topic=origin_topic)
    now = datetime.now(UTC)
    error_class = "builtins.TimeoutError"
    message = "partner did not answer within 2.0s"
    failure: list[tuple[str, str]] = [
        ("x-hub-origin-topic", origin_topic),
        ("x-hub-origin-partition", str(number % 3)),
        ("x-hub-origin-offset", str(number)),
        ("x-hub-origin-timestamp", str(int(now.timestamp() * 1000))),
        ("x-hub-origin-group", group),
        ("x-hub-origin-handler", REPLAYED_HANDLER),
        ("x-hub-error-class", error_class),
        ("x-hub-error-message", message),
        # A real dead letter carries a traceback; this is the typical size of one.
        ("x-hub-error-stacktrace", "Traceback (most recent call last):\n" + "  ...\n" * 60),
        ("x-hub-error-stage", "handle"),
        ("x-hub-error-fingerprint", fingerprint(error_class, message, "handle")),
        (deadletter.ATTEMPTS, "8"),
        (deadletter.FIRST_FAILURE_AT, now.isoformat()),
        ("x-hub-code-version", "bench"),
        ("x-hub-idempotency-key", dict(original.headers)["ce_id"].decode()),
    ]
    headers = (*original.headers, *((name, value.encode()) for name, value in failure))
    return replace(original, topic=topic, headers=headers)


def replayed_dead_letter(
    number: int, *, origin_topic: str, group: str, replay_topic: str
) -> OutRecord:
    """A storefront request that was dead-lettered (a timeout) and is now replayed to `group`."""
    letter = dead_letter(number, origin_topic=origin_topic, group=group, topic=replay_topic)
    now = datetime.now(UTC)
    lineage = [
        ("x-hub-replay-id", str(uuid.uuid4())),
        ("x-hub-replay-count", "1"),
        ("x-hub-replay-by", "bench"),
        ("x-hub-replay-at", now.isoformat()),
    ]
    return replace(
        letter, headers=(*letter.headers, *((name, value.encode()) for name, value in lineage))
    )


async def produce_all(bootstrap: str, records: Iterable[OutRecord]) -> int:
    """Produce `records` as fast as the broker takes them (acks=all); returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20
    )
    await producer.start()
    try:
        pending = [
            await producer.send(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
            for record in records
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(pending)
