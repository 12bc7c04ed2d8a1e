"""Kafka at the edge of the tooling: read dead-letter topics, produce, delete records."""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from hub.core.connection import kafka_security
from hub.core.lifecycle import AsyncResource
from hub.core.service import to_record
from hub.core.store.base import KafkaRecord
from hub.ops.dlq import DeadLetter, Ref, is_dead_letter_topic

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Mapping

    from aiokafka import ConsumerRecord

    from hub.core.settings import HubSettings

log = structlog.get_logger(__name__)

FETCH_TIMEOUT_MS = 500
_VALUE = itemgetter(1)


def read_record(raw: ConsumerRecord[bytes, bytes]) -> KafkaRecord:
    """`to_record`, without its per-header pass when no header value is null (the usual case).

    A replay reads every dead letter twice; the headers are most of a letter's fields.
    """
    headers = tuple(raw.headers)
    if None in map(_VALUE, headers):
        return to_record(raw)
    return KafkaRecord(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        timestamp_ms=raw.timestamp,
        key=raw.key,
        value=raw.value,
        headers=headers,
    )


def partition_key(partition: TopicPartition) -> str:
    """`topic:partition`, the form positions take in checkpoints and JSON output."""
    return f"{partition.topic}:{partition.partition}"


def parse_partition_key(text: str) -> TopicPartition:
    """The inverse of `partition_key`."""
    topic, _, number = text.rpartition(":")
    return TopicPartition(topic, int(number))


class TopicReader(AsyncResource):
    """Reads topics between offsets with a group-less consumer: it never commits anything."""

    def __init__(
        self, settings: HubSettings, progress: Callable[[int, int], None] | None = None
    ) -> None:
        self._progress = progress
        """Told (records scanned, records to scan) as a scan goes on: long scans show a bar."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="hub-ops",
            **kafka_security(settings),
        )
        # The consumer's metadata cache only knows topics it was asked about: ask the admin.
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="hub-ops",
            **kafka_security(settings),
        )

    async def start(self) -> None:
        """Connect the consumer and the admin client (a failed start leaves neither open)."""
        try:
            await self._consumer.start()
            await self._admin.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Disconnect both."""
        await self._admin.close()
        await self._consumer.stop()

    async def topic_names(self) -> set[str]:
        """Every topic on the cluster."""
        return set(await self._consumer.topics())

    async def committed(
        self, group: str, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The offsets `group` has committed on `partitions` (absent: none committed yet)."""
        wanted = list(partitions)
        if not wanted:
            return {}
        found = await self._admin.list_consumer_group_offsets(group, partitions=wanted)
        return {
            tp: meta.offset for tp, meta in found.items() if meta is not None and meta.offset >= 0
        }

    async def dead_letter_topics(self, group: str | None = None) -> list[str]:
        """Every dead-letter topic on the cluster (of `group`, when given)."""
        topics = await self._consumer.topics()
        return sorted(name for name in topics if is_dead_letter_topic(name, group))

    async def bounds(self, topics: Iterable[str]) -> dict[TopicPartition, tuple[int, int]]:
        """First and end offset of every partition of `topics`, as they are now."""
        described = await self._admin.describe_topics(list(topics))
        partitions = [
            TopicPartition(topic["topic"], partition["partition"])
            for topic in described
            if topic.get("error_code", 0) == 0
            for partition in sorted(topic["partitions"], key=lambda p: p["partition"])
        ]
        if not partitions:
            return {}
        first = await self._consumer.beginning_offsets(partitions)
        end = await self._consumer.end_offsets(partitions)
        return {tp: (first[tp], end[tp]) for tp in partitions}

    async def scan(
        self,
        start: Mapping[TopicPartition, int],
        end: Mapping[TopicPartition, int],
        *,
        max_records: int | None = None,
    ) -> AsyncIterator[list[KafkaRecord]]:
        """Batches of records from `start` up to (not including) `end`, per partition in order.

        `max_records` bounds a batch, so a caller sharing its event loop keeps it responsive.
        """
        wanted = {tp: offset for tp, offset in start.items() if offset < end[tp]}
        if not wanted:
            return
        self._consumer.assign(list(wanted))
        for tp, offset in wanted.items():
            self._consumer.seek(tp, offset)
        total = sum(end[tp] - offset for tp, offset in wanted.items())
        done = 0
        while wanted:
            batches = await self._consumer.getmany(
                *wanted, timeout_ms=FETCH_TIMEOUT_MS, max_records=max_records
            )
            records: list[KafkaRecord] = []
            for tp, batch in batches.items():
                records.extend(read_record(raw) for raw in batch if raw.offset < end[tp])
            for tp in list(wanted):
                # Deleted or compacted offsets leave gaps: the position is what counts.
                if await self._consumer.position(tp) >= end[tp]:
                    del wanted[tp]
                    self._consumer.pause(tp)
            done += len(records)
            if self._progress is not None:
                self._progress(min(done, total) if wanted else total, total)
            if records:
                yield records

    async def read_since(self, topics: Iterable[str], since_ms: int) -> list[KafkaRecord]:
        """Every record of `topics` written at or after `since_ms` (epoch milliseconds)."""
        bounds = await self.bounds(topics)
        if not bounds:
            return []
        found = await self._consumer.offsets_for_times(dict.fromkeys(bounds, since_ms))
        start = {
            tp: found[tp].offset if found.get(tp) is not None else last
            for tp, (_, last) in bounds.items()
        }
        end = {tp: last for tp, (_, last) in bounds.items()}
        return [record async for batch in self.scan(start, end) for record in batch]

    async def read_all(self, topics: Iterable[str]) -> list[KafkaRecord]:
        """Every record of `topics` as of now."""
        bounds = await self.bounds(topics)
        start = {tp: first for tp, (first, _) in bounds.items()}
        end = {tp: last for tp, (_, last) in bounds.items()}
        return [record async for batch in self.scan(start, end) for record in batch]

    async def dead_letters(self, group: str | None = None) -> list[DeadLetter]:
        """Every dead letter on the cluster (of `group`, when given)."""
        records = await self.read_all(await self.dead_letter_topics(group))
        return [DeadLetter.from_record(record) for record in records]

    async def read_one(self, ref: Ref) -> KafkaRecord | None:
        """The record at `ref`, or None when it is gone (purged or past retention)."""
        tp = TopicPartition(ref.topic, ref.partition)
        bounds = await self.bounds([ref.topic])
        first, end = bounds.get(tp, (0, 0))
        if not first <= ref.offset < end:
            return None
        async for batch in self.scan({tp: ref.offset}, {tp: ref.offset + 1}):
            for record in batch:
                if record.offset == ref.offset:
                    return record
        return None


async def delete_records(settings: HubSettings, upto: Mapping[TopicPartition, int]) -> None:
    """Delete every record below `upto[partition]` (Kafka's delete-records)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="hub-ops",
        **kafka_security(settings),
    )
    try:
        await admin.start()
        await admin.delete_records(
            {tp: RecordsToDelete(before_offset=offset) for tp, offset in upto.items()},
            timeout_ms=30_000,
        )
    finally:
        await admin.close()
    log.info("records_deleted", partitions=len(upto))
