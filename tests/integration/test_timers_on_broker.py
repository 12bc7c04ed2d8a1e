"""Timers on a real broker: a deadline fires only once the group has read up to it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2
from deadline import REGISTRY, AnsweredV1, AskedV1, JudgedV1, deadline_service
from kafka_io import create_topics, publish, read_records

from hub.core.outbound import event_record
from hub.core.progress import InputProgress
from hub.core.service import ServiceRuntime, to_record
from hub.core.topics import Subscription, timer_topic

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.outbound import OutRecord
    from hub.core.settings import HubSettings

pytestmark = pytest.mark.integration

DEADLINE = timedelta(seconds=6)


def partition_of(key: str, partitions: int) -> int:
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions  # the producer's default partitioner


def answer(topic: str, case_id: str) -> OutRecord:
    return event_record(
        topic, AnsweredV1(case_id=case_id), key=case_id, source="urn:test:partner",
        event_id=f"answer-{case_id}",
    )  # fmt: skip


async def test_an_answer_given_in_time_but_read_after_the_deadline_still_counts(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    # Small polls: the group reads its backlog in many steps, the due timer among the first.
    settings = make_settings(batch_max_records=20)
    group, answers, judged = f"deadline-{unique}", f"test.answers.{unique}", f"test.judged.{unique}"
    service = deadline_service(group, answers, judged, DEADLINE)
    await create_topics(settings, [Subscription(group, service.all_inputs)], [judged])
    ask = event_record(
        answers, AskedV1(case_id="case-k"), key="case-k", source="urn:test:partner",
        event_id="ask-k",
    )  # fmt: skip
    async with ServiceRuntime(service, settings, registry=REGISTRY):
        await publish(settings, [ask])
        timers = await read_records(
            settings.kafka_bootstrap_servers, timer_topic(group, DEADLINE), count=1
        )
        assert len(timers) == 1
    # While the group is down, the partner answers in time, behind a backlog of other answers
    # on its partition: many polls to read, and the due timer comes in one of the first.
    backlog = [
        answer(answers, f"case-{n}")
        for n in range(6000)
        if partition_of(f"case-{n}", settings.partitions)
        == partition_of("case-k", settings.partitions)
    ]
    assert len(backlog) > 500
    await publish(settings, [*backlog, answer(answers, "case-k")])
    answered_at = datetime.now(UTC)
    assert answered_at - datetime.fromtimestamp(timers[0].timestamp / 1000, UTC) < DEADLINE
    await asyncio.sleep(DEADLINE.total_seconds() + 1)  # the deadline passes while it is down

    async with ServiceRuntime(service, settings, registry=REGISTRY):
        (verdict,) = await read_records(settings.kafka_bootstrap_servers, judged, count=1)

    assert JudgedV1.model_validate_json(verdict.value or b"") == JudgedV1(
        case_id="case-k", answered=True
    )


async def test_progress_reads_positions_and_the_times_of_what_was_read(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings()
    group, answers = f"deadline-{unique}", f"test.answers.{unique}"
    service = deadline_service(group, answers, f"test.judged.{unique}", DEADLINE)
    await create_topics(settings, [Subscription(group, service.all_inputs)])
    await publish(settings, [answer(answers, f"case-{n}") for n in range(40)])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(answers, p) for p in range(settings.partitions)]
        timer_partitions = [TopicPartition(timer_topic(group, DEADLINE), 0)]
        consumer.assign([*partitions, *timer_partitions])
        await consumer.seek_to_beginning()
        progress = InputProgress(service.inputs)

        # Nothing read yet: no bound known, so no timer may fire.
        assert await progress.read_to(consumer) == datetime.fromtimestamp(0, UTC)

        read: dict[TopicPartition, list[int]] = {}
        while sum(map(len, read.values())) < 40:
            for partition, records in (await consumer.getmany(timeout_ms=1000)).items():
                progress.read(partition, [to_record(r) for r in records])
                read.setdefault(partition, []).extend(r.timestamp for r in records)
        # Every input read to its end: the clock alone decides (timer partitions never count).
        assert await progress.read_to(consumer) is None

        first = min(read)
        consumer.seek(first, 0)
        (batch,) = (await consumer.getmany(first, timeout_ms=5000, max_records=1)).values()
        progress.read(first, [to_record(batch[0])])
        # One partition read only to its first record: that record's time bounds the rest.
        assert await progress.read_to(consumer) == datetime.fromtimestamp(
            read[first][0] / 1000, UTC
        )
    finally:
        await consumer.stop()
