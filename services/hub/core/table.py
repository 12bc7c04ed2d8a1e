"""A table: the latest event per key of a compacted topic, read whole by every instance.

A consumer group splits a topic's partitions between its instances, so reference data keyed
by something else than the records a service handles (a courier's scorecard, read while
dispatching a case) cannot come through the group: each instance would see only its share.
A table reads every partition without a group, from the start, before the service consumes,
and then follows the topic: every instance holds the same latest values (Kafka Streams calls
this a global table).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from hub.core.connection import kafka_security
from hub.core.envelope import Envelope
from hub.core.errors import HubError
from hub.core.lifecycle import AsyncResource

if TYPE_CHECKING:
    from aiokafka import ConsumerRecord, TopicPartition

    from hub.core.registry import Event, Registry
    from hub.core.settings import HubSettings

log = structlog.get_logger(__name__)

EventT = TypeVar("EventT", bound="Event")
RESTORE_TIMEOUT_S = 60.0
FOLLOW_WAIT_MS = 500


class LatestTable(Mapping[str, EventT], Generic[EventT]):
    """The latest `model` event of each key of `topic`; empty until a reader fills it."""

    def __init__(self, topic: str, model: type[EventT]) -> None:
        self.topic = topic
        self.model = model
        self._latest: dict[str, EventT] = {}

    def __getitem__(self, key: str) -> EventT:
        return self._latest[key]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._latest))

    def __len__(self) -> int:
        return len(self._latest)

    def put(self, key: str, event: Event | None) -> None:
        """Keep `event` as the latest of `key` (None, a tombstone, forgets the key)."""
        if event is None:
            self._latest.pop(key, None)
        elif isinstance(event, self.model):
            self._latest[key] = event

    def reader(self, settings: HubSettings, registry: Registry) -> TableReader:
        """What fills the table: started with the service, before it consumes."""
        return TableReader(self, settings, registry)


class TableReader(AsyncResource):
    """Reads a table's topic from the start to its end, then follows it until stopped."""

    def __init__(self, table: LatestTable[Any], settings: HubSettings, registry: Registry) -> None:
        self.table = table
        self._settings = settings
        self._registry = registry
        self._consumer: AIOKafkaConsumer | None = None
        self._following: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Restore the table (every partition to its end now), then follow in the background."""
        topic = self.table.topic
        consumer = self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"hub-table-{topic}",
            **kafka_security(self._settings),
        )
        await consumer.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTORE_TIMEOUT_S
        # Without a group, every partition is assigned once the topic's metadata is known.
        while not consumer.assignment() and loop.time() < deadline:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.05)
        assigned = sorted(consumer.assignment())
        if not assigned:
            await consumer.stop()
            raise TimeoutError(f"topic {topic} has no partitions: is it declared?")
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        pending = {tp for tp in assigned if await consumer.position(tp) < ends[tp]}
        while pending and loop.time() < deadline:
            self._apply(await consumer.getmany(*pending, timeout_ms=FOLLOW_WAIT_MS))
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        log.info("table_restored", topic=topic, keys=len(self.table), behind=len(pending))
        self._following = asyncio.create_task(self._follow(consumer))

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                self._apply(await consumer.getmany(timeout_ms=FOLLOW_WAIT_MS))
            except KafkaError as error:
                # The last values stay in use meanwhile; the consumer reconnects by itself.
                log.warning("table_follow_failed", topic=self.table.topic, error=str(error)[:300])
                await asyncio.sleep(FOLLOW_WAIT_MS / 1000)

    def _apply(self, batches: Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        for records in batches.values():
            for record in records:
                key = (record.key or b"").decode("utf-8", "replace")
                if record.value is None:
                    self.table.put(key, None)
                    continue
                try:
                    envelope = Envelope.from_headers(record.headers)
                    event = self._registry.decode(envelope.type, record.value)
                except HubError as error:
                    # Nothing to dead-letter to: the writer is ours; the last good value stays.
                    log.warning("table_record_unreadable", topic=record.topic, key=key,
                                offset=record.offset, error=str(error)[:300])  # fmt: skip
                    continue
                self.table.put(key, event)

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        if self._following is not None:
            self._following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._following
            self._following = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
