"""Reading and preparing topics on the real broker, for tests."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer

from hub.core.service import KafkaSink
from hub.core.topics import CASES, STOREFRONT_REQUESTS, Subscription, apply_topics, declare

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from aiokafka import ConsumerRecord

    from hub.core.outbound import OutRecord
    from hub.core.settings import HubSettings


async def create_topics(
    settings: HubSettings, subscriptions: Iterable[Subscription], extra: Iterable[str] = ()
) -> None:
    """Apply the declared topics of `subscriptions` (inputs, retry tiers, dead letters, replay).

    The storefront and case topics always exist: most services read or write them.
    """
    shared = (STOREFRONT_REQUESTS, CASES, *extra)
    await apply_topics(settings.kafka_bootstrap_servers, declare(settings, subscriptions, shared))


async def publish(settings: HubSettings, records: Sequence[OutRecord]) -> None:
    """Produce `records` as the hub does (acks=all, idempotent), then close the producer."""
    sink = KafkaSink(settings, client_id="test-publisher")
    await sink.start()
    try:
        await sink.send(records)
    finally:
        await sink.stop()


async def read_records(
    bootstrap: str,
    topic: str,
    *,
    count: int,
    timeout_s: float = 30.0,
    match: Callable[[ConsumerRecord[bytes, bytes]], bool] = lambda _record: True,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read `topic` from the beginning until `count` matching records arrived (or time runs out)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < count:
                batches = await consumer.getmany(timeout_ms=500)
                found.extend(r for batch in batches.values() for r in batch if match(r))
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return found


async def settle_and_read(
    bootstrap: str, topic: str, *, quiet_s: float = 2.0, timeout_s: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read every record of `topic` until nothing new arrived for `quiet_s`."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last_new = loop.time()
    try:
        while loop.time() - last_new < quiet_s and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                found.extend(batch)
                last_new = loop.time()
    finally:
        await consumer.stop()
    return found
