"""FastStream adapter: a batch subscriber per service, committing each poll after its work.

Each partition's records go through the pipeline as one unit of work; only an outage of the
store or the broker pauses a partition, and it pauses alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker

# A broker passed in (TestKafkaBroker in component tests) resolves annotations at run time.
from faststream.kafka.annotations import KafkaMessage  # noqa: TC002
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY

from hub.core.connection import faststream_security, kafka_security, raise_if_refused
from hub.core.lifecycle import AsyncResource
from hub.core.metrics import CONSUMING, observe_lag
from hub.core.ops_http import OpsServer
from hub.core.partitioner import KeyPartitioner
from hub.core.pipeline import BatchResult, Pipeline
from hub.core.progress import InputProgress
from hub.core.store.base import EventId, KafkaRecord
from hub.core.store.factory import open_store
from hub.core.topics import HUB_RECORD_MAX_BYTES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from contextlib import AbstractAsyncContextManager

    from aiokafka import ConsumerRecord
    from aiokafka.producer.message_accumulator import BatchBuilder
    from faststream.message import StreamMessage

    from hub.core.handler import Service
    from hub.core.outbound import OutRecord, RecordSink
    from hub.core.registry import Registry
    from hub.core.settings import HubSettings
    from hub.core.store.base import StateStore

log = structlog.get_logger(__name__)

INBOX_PURGE_EVERY_S = 3600.0
OUTAGE_FIRST_BACKOFF_S = 0.5
READY_PING_S = 2.0
_READY_PROBE = EventId("urn:aftersales-hub:readyz", "readyz")
_faststream_metrics: KafkaPrometheusMiddleware | None = None


def faststream_metrics() -> KafkaPrometheusMiddleware:
    """FastStream's own consume metrics (per poll and subscriber), one middleware per process.

    The hub's per-record figures are the pipeline's (`hub.core.metrics`): a batch subscriber
    hands FastStream a whole poll, so its counts are polls, not records.
    """
    global _faststream_metrics  # noqa: PLW0603 - its metrics can be registered once only
    if _faststream_metrics is None:
        _faststream_metrics = KafkaPrometheusMiddleware(registry=REGISTRY, app_name="hub")
    return _faststream_metrics


PRODUCER_BATCH_BYTES = 1024 * 1024
"""aiokafka's default (16 KiB) holds a handful of hub records, and a partition has one batch in
flight at a time: a poll's outputs would queue behind each other's round trips. A batch stays
within a broker's default `message.max.bytes` (1 MiB and 12 bytes)."""


BATCHED_SEND_MIN_RECORDS = 16
"""From this many records, a send builds its producer batches itself (`_send_in_batches`);
fewer go through `producer.send`, which joins concurrent callers' records in one batch (the
ingress sends one record a request, many requests at once)."""


class KafkaSink(AsyncResource):
    """An idempotent aiokafka producer with acks=all; headers are produced byte for byte."""

    def __init__(self, settings: HubSettings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = KeyPartitioner()

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
            max_batch_size=PRODUCER_BATCH_BYTES,
            partitioner=self._partitioner,
            max_request_size=HUB_RECORD_MAX_BYTES + 64 * 1024,
            **kafka_security(self._settings),
        )
        try:
            await self._producer.start()
        except KafkaError:
            # A producer that failed to start still holds its client: close it, or Python
            # warns "Unclosed AIOKafkaProducer" at exit.
            producer, self._producer = self._producer, None
            await producer.stop()
            await raise_if_refused(self._settings)
            raise

    async def stop(self) -> None:
        """Flush and disconnect."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def ping(self, timeout_s: float = READY_PING_S) -> bool:
        """Whether the cluster answers a metadata request (for /readyz)."""
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout_s)
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    async def send(self, records: Sequence[OutRecord]) -> None:
        """Produce every record, then wait for all acknowledgements."""
        if self._producer is None:
            raise RuntimeError("KafkaSink.send before start")
        producer = self._producer
        if len(records) >= BATCHED_SEND_MIN_RECORDS:
            pending = await self._send_in_batches(producer, records)
        else:
            pending = [
                await producer.send(
                    record.topic, record.value, key=record.key, headers=list(record.headers)
                )
                for record in records
            ]
        await asyncio.gather(*pending)

    async def _send_in_batches(
        self, producer: AIOKafkaProducer, records: Sequence[OutRecord]
    ) -> list[asyncio.Future[Any]]:
        """Build each partition's producer batches here and submit them whole.

        `producer.send` makes a future a record and resolves each with its metadata; a poll's
        outputs or a replay chunk need one a batch. Records keep their order within a
        partition; a record that no longer fits sends its partition's batch and opens the next
        (a first record always fits, however large, as with `send`).
        """
        partitions: dict[str, list[int]] = {}
        open_batches: dict[tuple[str, int], BatchBuilder] = {}
        submitted: list[asyncio.Future[Any]] = []
        for record in records:
            topic = record.topic
            known = partitions.get(topic)
            if known is None:
                known = partitions[topic] = sorted(await producer.partitions_for(topic))
            if record.key is None:
                available = list(producer.client.cluster.available_partitions_for_topic(topic))
            else:
                available = known  # a key's partition does not depend on availability
            partition = self._partitioner(record.key, known, available)
            batch = open_batches.get((topic, partition))
            if batch is None:
                batch = open_batches[topic, partition] = producer.create_batch()
            headers = list(record.headers)
            appended = batch.append(
                key=record.key, value=record.value, timestamp=None, headers=headers
            )
            if appended is not None:
                continue
            submitted.append(await producer.send_batch(batch, topic, partition=partition))
            batch = open_batches[topic, partition] = producer.create_batch()
            batch.append(key=record.key, value=record.value, timestamp=None, headers=headers)
        for (topic, partition), batch in open_batches.items():
            submitted.append(await producer.send_batch(batch, topic, partition=partition))
        return submitted


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
    raw: tuple[ConsumerRecord[bytes, bytes], ...],
    original: Callable[[tuple[ConsumerRecord[bytes, bytes], ...]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    # FastStream decodes every header value as UTF-8 before our handler runs, and a null or
    # non-UTF-8 value would fail there, out of the pipeline's reach (the whole poll would be
    # lost to an error log). It reads only a cleaned copy of the first record (its message
    # headers are the first record's; the rest it would decode for no reader: a copy and a
    # decode of every header of every record); the pipeline gets the originals.
    first = raw[0]
    cleaned = dataclasses.replace(
        first, headers=[(name, _text_or_empty(value)) for name, value in first.headers]
    )
    message = await original((cleaned,))
    message.raw_message = raw
    message.body = [record.value or b"" for record in raw]  # the size its metrics count
    return message


def _chunks(
    records: list[KafkaRecord], max_records: int, max_bytes: int
) -> list[list[KafkaRecord]]:
    """Split one partition's records into units of work bounded by count and bytes."""
    chunks: list[list[KafkaRecord]] = [[]]
    size = 0
    for record in records:
        weight = len(record.key or b"") + len(record.value or b"")
        if chunks[-1] and (len(chunks[-1]) >= max_records or size + weight > max_bytes):
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += weight
    return [chunk for chunk in chunks if chunk]


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
        # The tables its handlers look up are filled before it consumes.
        self._resources = (
            *(table.reader(settings, registry) for table in service.tables),
            *resources,
        )
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
            # The hub produces through its own sink: FastStream's publishers take headers as
            # text, one value a name, and a dead letter keeps the original's bytes and repeats.
            consumer_only=True,
            middlewares=(faststream_metrics(),) if settings.metrics else (),
        )
        self.store = store or open_store(
            settings.database_url,
            default_path=Path(settings.state_dir) / f"{service.group}.db",
        )
        # A sink passed in is its owner's to start and stop (shared by a process's services).
        self._own_sink: KafkaSink | None = None
        if sink is None:
            sink = self._own_sink = KafkaSink(settings, client_id=f"hub-{service.group}")
        self.sink: RecordSink = sink
        self.pipeline = Pipeline(
            service, registry=registry, store=self.store, sink=self.sink, settings=settings
        )
        self._progress = InputProgress(service.inputs)
        self._timers = frozenset(service.timer_topics)
        self._resume_handles: set[asyncio.TimerHandle] = set()
        self._outages: dict[TopicPartition, int] = {}
        self._purging: asyncio.Task[None] | None = None
        self._http: OpsServer | None = None
        self._subscriber = subscriber = self.broker.subscriber(
            *self.pipeline.topics,
            group_id=service.group,
            batch=True,
            max_records=settings.batch_max_records,
            batch_timeout_ms=settings.batch_wait_ms,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=settings.batch_max_bytes,
            fetch_max_bytes=settings.batch_max_bytes,
            # Acknowledged by the handler: only after every partition of the poll is settled.
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            # Partitions of one number go to one member: a case's inputs and its timers are
            # read together, so a timer waits only on the inputs its own case's answers are on.
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        # The pipeline decodes; FastStream must not, or a malformed record would fail before it.
        # Its "decoded body" is the message itself, handed over without dependency injection
        # (which resolved the parameter in a worker thread, once per message: `make bench`).
        subscriber(self._consume, parser=_tolerant_parse, decoder=_the_message)

    async def _consume(self, message: KafkaMessage) -> None:
        """Settle every partition of one poll, then commit what was handled through FastStream."""
        records: tuple[ConsumerRecord[bytes, bytes], ...] = message.raw_message  # type: ignore[assignment]
        # Pause and resume are aiokafka's; FastStream's consumer protocol has commit and seek only.
        consumer = cast("AIOKafkaConsumer", message.consumer)
        by_partition: dict[TopicPartition, list[KafkaRecord]] = {}
        for raw in records:
            by_partition.setdefault(TopicPartition(raw.topic, raw.partition), []).append(
                to_record(raw)
            )
        for partition, batch in by_partition.items():
            self._progress.read(partition, batch)
        inputs_read_to = (
            await self._progress.read_to(consumer)
            if any(partition.topic in self._timers for partition in by_partition)
            else None
        )
        try:
            # The whole poll as one unit of work: one store read, one produce, one transaction.
            results = await self.pipeline.process_poll(
                list(by_partition.values()), inputs_read_to=inputs_read_to
            )
        except Exception as error:  # noqa: BLE001 - the store or the broker failed for one of them
            # Each partition again on its own, so that only those that fail wait (and the
            # inbox turns what the failed unit already did into counted duplicates).
            log.info(
                "poll_taken_apart",
                partitions=len(by_partition),
                error_class=type(error).__name__,
                error_message=str(error)[:300],
            )
            for partition, batch in by_partition.items():
                await self._settle(consumer, partition, batch, inputs_read_to)
        else:
            for partition, result in zip(by_partition, results, strict=True):
                self._outages.pop(partition, None)
                self._hold_until_due(consumer, partition, result)
        for partition, batch in by_partition.items():
            # FastStream's test broker hands a fake consumer without aiokafka's fetch positions.
            highwater = getattr(consumer, "highwater", lambda _: None)(partition)
            if highwater is not None and self.settings.metrics:
                observe_lag(self.service.group, partition.topic, partition.partition,
                            highwater - batch[-1].offset - 1)  # fmt: skip
        try:
            # FastStream's ack commits every partition's position: past each handled record,
            # and at the first unhandled one of a partition that was sought back and paused.
            await message.ack()
        except (CommitFailedError, IllegalStateError) as error:
            # The partition moved to another member, which will read the records again;
            # the inbox makes that second delivery a counted duplicate.
            log.warning("commit_skipped", reason=str(error))

    async def _settle(
        self,
        consumer: AIOKafkaConsumer,
        partition: TopicPartition,
        records: list[KafkaRecord],
        inputs_read_to: datetime | None,
    ) -> None:
        """Run one partition's records, chunk by chunk; on a wait or an outage, seek and pause."""
        for chunk in _chunks(
            records, self.settings.batch_max_records, self.settings.batch_max_bytes
        ):
            try:
                result = await self.pipeline.process_batch(chunk, inputs_read_to=inputs_read_to)
            except Exception as error:  # noqa: BLE001 - the store or the broker failed: wait, retry
                outages = self._outages.get(partition, 0) + 1
                self._outages[partition] = outages
                delay = min(
                    self.settings.outage_backoff_max_s, OUTAGE_FIRST_BACKOFF_S * 2 ** (outages - 1)
                ) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrecy
                log.warning(
                    "partition_paused",
                    topic=partition.topic,
                    partition=partition.partition,
                    offset=chunk[0].offset,
                    retry_in_s=round(delay, 2),
                    outages=outages,
                    error_class=type(error).__name__,
                    error_message=str(error)[:300],
                )
                self._hold(consumer, partition, chunk[0].offset, delay)
                return
            self._outages.pop(partition, None)
            if self._hold_until_due(consumer, partition, result):
                return

    def _hold_until_due(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, result: BatchResult
    ) -> bool:
        """Pause a partition whose next record is not due yet; whether it was."""
        if result.due is None or result.resume_at is None:
            return False
        wait = (result.due - datetime.now(UTC)).total_seconds()
        self._hold(consumer, partition, result.resume_at, wait)
        return True

    def _hold(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int, seconds: float
    ) -> None:
        """Read `partition` again from `offset` after `seconds`; other partitions go on."""
        with contextlib.suppress(IllegalStateError):
            # A rebalance may have taken the partition away; its next owner reads it instead.
            consumer.seek(partition, offset)
            consumer.pause(partition)

        def resume() -> None:
            self._resume_handles.discard(handle)
            with contextlib.suppress(IllegalStateError, KafkaError):
                if partition in consumer.assignment():
                    consumer.resume(partition)

        handle = asyncio.get_running_loop().call_later(max(0.0, seconds), resume)
        self._resume_handles.add(handle)

    async def _open(self) -> None:
        await self.store.open()
        if self._own_sink is not None:
            await self._own_sink.start()
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
        if self._own_sink is not None:
            await self._own_sink.stop()
        await self.store.close()

    async def purge_inbox(self) -> int:
        """Forget processed ids older than `inbox_retention`; returns how many went.

        A duplicate arriving later than the retention is no longer recognised, so the retention
        outlives every redelivery, retry tier and dead-letter replay window.
        """
        cutoff = datetime.now(UTC) - self.settings.inbox_retention
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
        self._started()

    def _started(self) -> None:
        CONSUMING.labels(self.service.group).set(1)
        log.info("service_started", group=self.service.group, topics=self.pipeline.topics)

    async def stop(self) -> None:
        """Drain in-flight messages (up to the grace period), then close everything."""
        CONSUMING.labels(self.service.group).set(0)
        await self.broker.stop()
        for handle in self._resume_handles:
            handle.cancel()
        await self._close()
        self._stopped()

    def _stopped(self) -> None:
        log.info("service_stopped", group=self.service.group, counts=dict(self.pipeline.counts))

    async def readiness(self) -> dict[str, bool]:
        """Consuming, store answering, broker reachable: what /readyz reports."""
        consuming = bool(self._subscriber.running)
        try:
            await self.store.is_processed(self.service.group, _READY_PROBE)
            store = True
        except Exception:  # noqa: BLE001 - any failure means not ready; the store logs its own
            store = False
        # The producer's client, not FastStream's ping: a consumer-only broker starts no admin
        # client, and its ping then always says no.
        sink = self.sink
        if isinstance(sink, KafkaSink):
            broker = await sink.ping()
        else:
            broker = await self.broker.ping(timeout=READY_PING_S)
        return {"consuming": consuming, "store": store, "broker": broker}

    def application(self) -> FastStream:
        """A FastStream app (SIGTERM/SIGINT drain and stop) around this runtime, with /metrics.

        The HTTP endpoints come up first, so /healthz answers (and /readyz says 503) while the
        service connects, and go last.
        """
        http = self._http = OpsServer(self.settings, [self])

        async def stopping() -> None:
            CONSUMING.labels(self.service.group).set(0)

        return FastStream(
            self.broker,
            on_startup=[http.start, self._open],
            after_startup=[self._started],
            on_shutdown=[stopping],
            after_shutdown=[self._close, http.stop, self._stopped],
        )

    async def serve(self) -> None:
        """`hub run`: the application until SIGTERM/SIGINT; a failed start closes what it opened.

        FastStream runs no shutdown hooks when its start fails, and a producer, consumer or
        listening socket left open would end the process with resource warnings.
        """
        try:
            await self.application().run()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.broker.stop()
            with contextlib.suppress(Exception):
                await self._close()
            if self._http is not None:
                await self._http.stop()
            raise
