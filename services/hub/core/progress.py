"""How far in time a member has read its group's inputs: what its timers are judged against.

A deadline ("the courier did not accept within 2 minutes") is about the partner, not about
the hub: while the group is behind, the answer may already be on its input, unread. A timer
therefore fires only once every input partition the member reads is read up to its due time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from aiokafka import TopicPartition

    from hub.core.store.base import KafkaRecord


class InputProgress:
    """The time of the last record read on each input partition of a member."""

    def __init__(self, inputs: Iterable[str]) -> None:
        self._inputs = frozenset(inputs)
        self._last_read_ms: dict[TopicPartition, int] = {}

    def read(self, partition: TopicPartition, records: Sequence[KafkaRecord]) -> None:
        """Note a poll's records of `partition` as read (they are handled before its timers)."""
        if records and partition.topic in self._inputs:
            self._last_read_ms[partition] = records[-1].timestamp_ms

    async def read_to(self, consumer: object) -> datetime | None:
        """The oldest last-read time among input partitions with records left; None if none."""
        if not isinstance(consumer, AIOKafkaConsumer):
            return None  # FastStream's test broker: no fetch positions, nothing to wait for
        oldest: int | None = None
        for partition in consumer.assignment():
            if partition.topic not in self._inputs:
                continue
            highwater = consumer.highwater(partition)
            try:
                position = await consumer.position(partition)
            except IllegalStateError:
                continue  # revoked meanwhile: its next owner judges its own timers
            if highwater is not None and position >= highwater:
                continue
            # Records left unread (or its end not known yet): the last one read bounds what
            # was read; a partition not read at all bounds nothing yet.
            last = self._last_read_ms.get(partition, 0)
            oldest = last if oldest is None else min(oldest, last)
        return None if oldest is None else datetime.fromtimestamp(oldest / 1000, UTC)
