"""FastStream adapter: runs a Service's pipeline on Kafka and commits each offset after its work."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker

# A broker passed in (TestKafkaBroker in component tests) resolves annotations at run time.
from faststream.kafka.annotations import KafkaMessage  # noqa: TC002

from hub.core.connection import faststream_security, kafka_security, raise_if_refused
from hub.core.lifecycle import AsyncResource
from hub.core.pipeline import Outcome, Pipeline
from hub.core.settings import parse_duration
from hub.core.store.base import KafkaRecord
from hub.core.store.factory import open_store
from hub.core.topics import HUB_RECORD_MAX_BYTES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from contextlib import AbstractAsyncContextManager

    from aiokafka import ConsumerRecord
    from faststream.message import StreamMessage

    from hub.core.handler import Service
    from hub.core.outbound import OutRecord, RecordSink
    from hub.core.registry import Registry
    from hub.core.settings import HubSettings
    from hub.core.store.base import StateStore

log = structlog.get_logger(__name__)

UNRESOLVED_BACKOFF_S = 1.0
INBOX_PURGE_EVERY_S = 3600.0


class KafkaSink(AsyncResource):
    """An idempotent aiokafka producer with acks=all; headers are produced byte for byte."""

    def __init__(self, settings: HubSettings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect to the cluster (aiokafka needs the running loop, so not in __init__)."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            # No linger: records are produced one input at a time and awaited, so a linger
            # only delays each send (2 ms cost ~2.5 ms a record, most of the hop; `make bench`).
            linger_ms=0,
            max_request_size=HUB_RECORD_MAX_BYTES + 64 * 1024,
            **kafka_security(self._settings),
        )
        try:
            await self._producer.start()
        except KafkaError:
            await raise_if_refused(self._settings)
            raise

    async def stop(self) -> None:
        """Flush and disconnect."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, records: Sequence[OutRecord]) -> None:
        """Produce every record, then wait for all acknowledgements."""
        if self._producer is None:
            raise RuntimeError("KafkaSink.send before start")
        pending = [
            await self._producer.send(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
            for record in records
        ]
        await asyncio.gather(*pending)


class BrokerSink:
    """Publishes through a FastStream broker; for component tests under `TestKafkaBroker`.

    FastStream headers are text, so non-UTF-8 header bytes are replaced: never use it for real.
    """

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(self, records: Sequence[OutRecord]) -> None:
        """Publish every record through the broker."""
        for record in records:
            await self._broker.publish(
                record.value,
                record.topic,
                key=record.key,
                headers={name: value.decode(errors="replace") for name, value in record.headers},
            )


async def _the_message(message: StreamMessage[Any]) -> StreamMessage[Any]:
    return message


def _text_or_empty(value: bytes | None) -> bytes:
    if value is None:
        return b""
    try:
        value.decode()
    except UnicodeDecodeError:
        return b""
    return value


async def _tolerant_parse(
    raw: ConsumerRecord[bytes, bytes],
    original: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    # FastStream decodes every header value as UTF-8 before our handler runs, and a null or
    # non-UTF-8 value would fail there, out of the pipeline's reach (the record would be skipped
    # when a later offset commits). It reads only a cleaned copy; the pipeline gets the original.
    cleaned = [(name, _text_or_empty(value)) for name, value in raw.headers]
    message = await original(dataclasses.replace(raw, headers=cleaned))
    message.raw_message = raw
    return message


def to_record(raw: ConsumerRecord[bytes, bytes]) -> KafkaRecord:
    """The transport-free view of an aiokafka record."""
    return KafkaRecord(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        timestamp_ms=raw.timestamp,
        key=raw.key,
        value=raw.value,
        # Kafka allows a null header value; reading it as empty keeps the record (and its
        # partition) moving: the envelope check then judges it like any other bad header.
        headers=tuple(
            (name, b"" if value is None else bytes(value)) for name, value in raw.headers
        ),
    )


class ServiceRuntime(AsyncResource):
    """One running service: its store, sink, pipeline and FastStream subscriber."""

    def __init__(
        self,
        service: Service,
        settings: HubSettings,
        *,
        registry: Registry,
        broker: KafkaBroker | None = None,
        store: StateStore | None = None,
        sink: RecordSink | None = None,
        resources: Sequence[AbstractAsyncContextManager[object]] = (),
    ) -> None:
        self.service = service
        self._resources = resources
        self._stack = contextlib.AsyncExitStack()
        self.settings = settings
        self.broker = broker or KafkaBroker(
            # A list: FastStream wraps a string as one server, "a:1,b:2" included.
            settings.kafka_bootstrap_servers.split(","),
            graceful_timeout=settings.shutdown_grace_s,
            allow_auto_create_topics=False,
            client_id=f"hub-{service.group}",
            # The pipeline writes one canonical line per message; FastStream's own go to DEBUG,
            # and its other logs obey the root level configure_logging sets.
            log_level=logging.DEBUG,
            logger=logging.getLogger("faststream.hub"),
            security=faststream_security(settings),
            apply_types=False,
        )
        self.store = store or open_store(
            settings.database_url,
            default_path=Path(settings.state_dir) / f"{service.group}.db",
        )
        self._own_sink = sink is None
        self.sink: RecordSink = sink or KafkaSink(settings, client_id=f"hub-{service.group}")
        self.pipeline = Pipeline(
            service, registry=registry, store=self.store, sink=self.sink, settings=settings
        )
        self._resume_handles: set[asyncio.TimerHandle] = set()
        self._purging: asyncio.Task[None] | None = None
        subscriber = self.broker.subscriber(
            *self.pipeline.topics,
            group_id=service.group,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
        )
        # The pipeline decodes; FastStream must not, or a malformed record would fail before it.
        # Its "decoded body" is the message itself, handed over without dependency injection
        # (which resolved the parameter in a worker thread, once per message: `make bench`).
        subscriber(self._consume, parser=_tolerant_parse, decoder=_the_message)

    async def _consume(self, message: KafkaMessage) -> None:
        raw: ConsumerRecord[bytes, bytes] = message.raw_message  # type: ignore[assignment]
        consumer = message.consumer
        partition = TopicPartition(raw.topic, raw.partition)
        try:
            verdict = await self.pipeline.process(to_record(raw))
        except Exception:
            # Not even the dead letter could be written: commit nothing, read it again later.
            log.exception("message_unresolved", topic=raw.topic, offset=raw.offset)
            consumer.seek(partition, raw.offset)
            await asyncio.sleep(UNRESOLVED_BACKOFF_S)
            return
        if verdict.outcome is Outcome.NOT_DUE and verdict.due is not None:
            self._hold(consumer, partition, raw.offset, verdict.due)
            return
        await self._commit(consumer, partition, raw.offset + 1)

    @staticmethod
    async def _commit(consumer: object, partition: TopicPartition, next_offset: int) -> None:
        if not isinstance(consumer, AIOKafkaConsumer):
            return  # TestKafkaBroker's fake consumer has no offsets to commit
        try:
            await consumer.commit({partition: next_offset})
        except (CommitFailedError, IllegalStateError) as error:
            # The partition moved to another member, which will read the record again;
            # the inbox makes that second delivery a counted duplicate.
            log.warning("commit_skipped", partition=str(partition), reason=str(error))

    def _hold(
        self, consumer: object, partition: TopicPartition, offset: int, due: datetime
    ) -> None:
        """Wait for a retry record's due time without blocking other partitions."""
        if not isinstance(consumer, AIOKafkaConsumer):
            return
        consumer.seek(partition, offset)
        consumer.pause(partition)
        delay = max(0.0, (due - datetime.now(UTC)).total_seconds())

        def resume() -> None:
            self._resume_handles.discard(handle)
            with contextlib.suppress(IllegalStateError, KafkaError):
                # A rebalance may have taken the partition away; its next owner waits instead.
                if partition in consumer.assignment():
                    consumer.resume(partition)

        handle = asyncio.get_running_loop().call_later(delay, resume)
        self._resume_handles.add(handle)

    async def _open(self) -> None:
        await self.store.open()
        if self._own_sink and isinstance(self.sink, KafkaSink):
            await self.sink.start()
        for resource in self._resources:
            await self._stack.enter_async_context(resource)
        self._purging = asyncio.create_task(self._purge_inbox_periodically())

    async def _close(self) -> None:
        if self._purging is not None:
            self._purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purging
            self._purging = None
        await self._stack.aclose()
        if self._own_sink and isinstance(self.sink, KafkaSink):
            await self.sink.stop()
        await self.store.close()

    async def purge_inbox(self) -> int:
        """Forget processed ids older than `inbox_retention`; returns how many went.

        A duplicate arriving later than the retention is no longer recognised, so the retention
        outlives every redelivery, retry tier and dead-letter replay window.
        """
        cutoff = datetime.now(UTC) - parse_duration(self.settings.inbox_retention)
        removed = await self.store.purge_inbox(self.service.group, cutoff)
        log.info("inbox_purged", group=self.service.group, removed=removed, before=str(cutoff))
        return removed

    async def _purge_inbox_periodically(self) -> None:
        while True:
            try:
                await self.purge_inbox()
            except Exception:  # a busy database must not stop the service; next round retries
                log.exception("inbox_purge_failed", group=self.service.group)
            await asyncio.sleep(INBOX_PURGE_EVERY_S)

    async def start(self) -> None:
        """Open the store, producer and resources (e.g. an API client), then start consuming."""
        await self._open()
        await self.broker.start()
        log.info("service_started", group=self.service.group, topics=self.pipeline.topics)

    async def stop(self) -> None:
        """Drain in-flight messages (up to the grace period), then close everything."""
        await self.broker.stop()
        for handle in self._resume_handles:
            handle.cancel()
        await self._close()
        log.info("service_stopped", group=self.service.group, counts=dict(self.pipeline.counts))

    def application(self) -> FastStream:
        """A FastStream app (SIGTERM/SIGINT drain and stop) around this runtime."""
        return FastStream(self.broker, on_startup=[self._open], after_shutdown=[self._close])
