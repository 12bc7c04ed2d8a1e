"""KafkaSink on the real broker: every record lands once, on its key's partition, in order."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import pytest
from aiokafka.partitioner import DefaultPartitioner
from kafka_io import create_topics, publish, read_records

from hub.core.outbound import OutRecord
from hub.core.service import BATCHED_SEND_MIN_RECORDS, PRODUCER_BATCH_BYTES

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.settings import HubSettings

pytestmark = pytest.mark.integration

PARTITIONS = 6


@pytest.mark.parametrize(
    "count", [BATCHED_SEND_MIN_RECORDS - 1, 3_000], ids=["one-by-one", "built-batches"]
)
async def test_a_send_lands_every_record_once_on_its_keys_partition_in_order(
    make_settings: Callable[..., HubSettings], unique: str, count: int
) -> None:
    settings = make_settings(partitions=PARTITIONS)
    topics = (f"test.sink-a.{unique}", f"test.sink-b.{unique}")
    await create_topics(settings, [], topics)
    large = b"x" * (PRODUCER_BATCH_BYTES + PRODUCER_BATCH_BYTES // 2)  # a batch of its own
    records = [
        OutRecord(
            topic=topics[n % 2],
            key=None if n % 7 == 0 else f"case-{n % 40}".encode(),
            value=large if n == count // 2 else f"{n}".encode(),
            headers=(("seq", str(n).encode()), ("ce_id", b"\xff\x00 raw"), ("seq", b"again")),
        )
        for n in range(count)
    ]
    await publish(settings, records)
    landed = [
        record
        for topic in topics
        for record in await read_records(
            settings.kafka_bootstrap_servers, topic, count=(count + 1 - topics.index(topic)) // 2
        )
    ]
    numbers = [int(record.headers[0][1]) for record in landed]
    assert sorted(numbers) == list(range(count))  # each once
    partitions = list(range(PARTITIONS))
    by_key: dict[tuple[str, bytes], list[int]] = defaultdict(list)
    for record, number in zip(landed, numbers, strict=True):
        sent = records[number]
        assert (record.key, record.value) == (sent.key, sent.value)
        assert list(record.headers) == list(sent.headers)  # repeated, raw bytes, in order
        if record.key is not None:
            # Where any Kafka client would put the key: a consumer of it sees all its records.
            assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)
            by_key[record.topic, record.key].append(number)
    assert all(sent_order == sorted(sent_order) for sent_order in by_key.values())
