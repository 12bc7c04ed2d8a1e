"""A 3-node KRaft cluster: replication 3, min ISR 2, and it survives losing one node."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kafka_io import read_records

from hub.harness.kafka import LocalKafka

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=15000
    )
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"case-1")
    finally:
        await producer.stop()


async def test_a_replicated_topic_takes_acks_all_writes_with_one_node_down(
    tmp_path: Path,
) -> None:
    kafka = LocalKafka(base_dir=tmp_path / "cluster", nodes=3)
    await asyncio.to_thread(kafka.start)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic("cases.replicated", 3, 3, topic_configs={"min.insync.replicas": "2"})]
            )
            (described,) = await admin.describe_topics(["cases.replicated"])
        finally:
            await admin.close()
        assert all(len(partition["replicas"]) == 3 for partition in described["partitions"])

        before = [f"before-{n}".encode() for n in range(20)]
        await produce(kafka.bootstrap_servers, "cases.replicated", before)

        await asyncio.to_thread(kafka.stop_node, 3)
        assert kafka.alive() == {1: True, 2: True, 3: False}
        survivors = "127.0.0.1:{},127.0.0.1:{}".format(*(n.port for n in kafka.specs[:2]))
        after = [f"after-{n}".encode() for n in range(20)]
        await produce(survivors, "cases.replicated", after)

        records = await read_records(survivors, "cases.replicated", count=40)
        assert [record.value for record in records] == before + after
    finally:
        await asyncio.to_thread(kafka.stop)
