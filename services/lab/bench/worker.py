"""One measured variant per process: its own event loop and heap, so its peak RSS is its own.

Run by the bench runner as `python -m lab.bench.worker SPEC_JSON`; it prints the result as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream import AckPolicy
from faststream.kafka import KafkaBroker

# FastStream resolves handler annotations at run time (dependency injection).
from faststream.kafka.annotations import KafkaMessage  # noqa: TC002
from pydantic import BaseModel, ConfigDict

from hub.core.handler import Route
from hub.core.logging import configure_logging
from hub.core.loop import run_on_uvloop
from hub.core.service import ServiceRuntime
from hub.core.settings import HubSettings
from hub.messages import CATALOGUE
from hub.ops.actions import Ops
from hub.ops.dlq import Selection
from intake.domain import case_id_for
from intake.service import build_service as build_intake
from lab.bench.fixtures import storefront_request

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
    from datetime import datetime

    from aiokafka import ConsumerRecord
    from faststream.message import StreamMessage

    from hub.core.handler import Decision, Handler, Service
    from hub.core.registry import Event

log = structlog.get_logger(__name__)

Variant = Literal[
    "raw-batch",
    "raw-single",
    "faststream-batch",
    "faststream-single",
    "hub",
    "replay",
    "dlq-replay",
    "e2e",
]
PRODUCER_OPTIONS: dict[str, Any] = {"acks": "all", "enable_idempotence": True}
"""The client's limit: acks=all and idempotence as the hub, otherwise aiokafka's defaults."""
PROBE_FETCH_MAX_WAIT_MS = 5
"""How long the e2e load's consumer of the courier topics lets a fetch wait for records."""
TAIL_POLL_S = 0.002
EARLY_POLL_S = 0.5
DRAIN_S = 15.0
"""How long the cases still in flight when the offer ends may take to come through."""


class WorkerSpec(BaseModel):
    """What one worker process measures."""

    model_config = ConfigDict(frozen=True)

    variant: Variant
    bootstrap: str
    group: str = ""
    input_topic: str = ""
    output_topic: str = ""
    count: int = 0
    max_records: int = 500
    """The batch bound of the batch variants (getmany's and FastStream's `max_records`)."""
    timeout_s: float = 300.0
    deadline_ms: float = 1000.0
    """e2e: a case counts as in time when its pickup order is out within this."""
    rate: float = 0.0
    duration_s: float = 0.0
    warmup: int = 0
    first_number: int = 0
    result_topics: tuple[str, ...] = ()
    via_topic: str = ""
    """e2e: where the first hop's outputs go (their send times split the latency into legs)."""


class Throughput(BaseModel):
    """Messages handled between the first record's arrival and the last record's commit."""

    variant: str
    messages: int
    seconds: float
    rate: float
    complete: bool


class Latency(BaseModel):
    """End-to-end latency of cases offered at a fixed rate (ms, from the scheduled send time).

    Cases still missing when the drain ends count with the time they waited so far.
    """

    offered_rate: float
    achieved_rate: float
    duration_s: float
    sent: int
    received: int
    in_time: int
    deadline_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    legs_ms: dict[str, dict[str, float]] = {}
    """p50 and p99 of each leg: to the first hop's send, between the hops' sends, to arrival."""


class _Clock:
    """First arrival, last completion, and how many completed."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.done = 0
        self.first: float | None = None
        self.last = 0.0
        self.finished = asyncio.Event()

    def arrived(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def completed(self, count: int = 1) -> None:
        self.done += count
        self.last = time.perf_counter()
        if self.done >= self.expected:
            self.finished.set()

    def result(self, variant: str) -> Throughput:
        seconds = self.last - self.first if self.first is not None else 0.0
        rate = self.done / seconds if seconds > 0 else 0.0
        return Throughput(
            variant=variant,
            messages=self.done,
            seconds=round(seconds, 3),
            rate=round(rate, 1),
            complete=self.done >= self.expected,
        )


async def _wait(clock: _Clock, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await clock.finished.wait()
    except TimeoutError:
        log.warning("bench_worker_timed_out", done=clock.done, expected=clock.expected)


# --- 1. raw aiokafka -----------------------------------------------------------------------
def _raw_consumer(spec: WorkerSpec) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        spec.input_topic,
        bootstrap_servers=spec.bootstrap,
        group_id=spec.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def _raw_loop(
    spec: WorkerSpec,
    clock: _Clock,
    passthrough: Callable[[AIOKafkaConsumer, AIOKafkaProducer], Coroutine[Any, Any, None]],
) -> None:
    consumer = _raw_consumer(spec)
    producer = AIOKafkaProducer(bootstrap_servers=spec.bootstrap, **PRODUCER_OPTIONS)
    await producer.start()
    await consumer.start()
    try:
        task = asyncio.create_task(passthrough(consumer, producer))
        await _wait(clock, spec.timeout_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await consumer.stop()
        await producer.stop()


async def run_raw_batch(spec: WorkerSpec) -> Throughput:
    """The client's limit: getmany (bounded), produce all, await all acks, one commit a batch.

    The commit carries, per partition, the highest offset of the batch + 1, after every output
    of the batch was acknowledged (acks=all, idempotent): commit-after-work, as the hub's.
    """
    clock = _Clock(spec.count)

    async def passthrough(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        while not clock.finished.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=spec.max_records)
            if not batches:
                continue
            clock.arrived()
            pending = [
                await producer.send(
                    spec.output_topic, record.value, key=record.key, headers=list(record.headers)
                )
                for records in batches.values()
                for record in records
            ]
            await asyncio.gather(*pending)
            await consumer.commit(
                {partition: records[-1].offset + 1 for partition, records in batches.items()}
            )
            clock.completed(len(pending))

    await _raw_loop(spec, clock, passthrough)
    return clock.result(spec.variant)


async def run_raw_single(spec: WorkerSpec) -> Throughput:
    """Reference: consume, produce, wait for the ack, commit offset+1, one record at a time."""
    clock = _Clock(spec.count)

    async def passthrough(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        async for record in consumer:
            clock.arrived()
            ack = await producer.send(
                spec.output_topic, record.value, key=record.key, headers=list(record.headers)
            )
            await ack
            partition = TopicPartition(record.topic, record.partition)
            await consumer.commit({partition: record.offset + 1})
            clock.completed()
            if clock.finished.is_set():
                return

    await _raw_loop(spec, clock, passthrough)
    return clock.result(spec.variant)


# --- 2. bare FastStream --------------------------------------------------------------------
async def _raw_body(message: StreamMessage[Any]) -> object:
    return message.body


def _bench_broker(spec: WorkerSpec) -> KafkaBroker:
    return KafkaBroker(
        spec.bootstrap,
        # Quiet as the hub's broker: no per-message lines from FastStream itself.
        log_level=logging.DEBUG,
        logger=logging.getLogger("faststream.bench"),
        **PRODUCER_OPTIONS,
    )


async def _serve(broker: KafkaBroker, clock: _Clock, timeout_s: float) -> None:
    await broker.start()
    try:
        await _wait(clock, timeout_s)
    finally:
        await broker.stop()


async def run_faststream_batch(spec: WorkerSpec) -> Throughput:
    """A batch subscriber (`batch=True`, `max_records`) and a publisher, one ack a batch.

    The batch's records are published together (each with `no_confirm=True`, then every
    confirmation awaited), then `message.ack()` (`AckPolicy.MANUAL`) commits the consumer's
    position, which getmany(max_records) advanced to the batch's highest offset + 1 per
    partition. (`AckPolicy.ACK` commits the same, only after the handler returns.)
    """
    broker = _bench_broker(spec)
    publisher = broker.publisher(spec.output_topic)
    clock = _Clock(spec.count)

    async def passthrough(message: KafkaMessage) -> None:
        clock.arrived()
        records: Sequence[ConsumerRecord[bytes, bytes]] = message.raw_message  # type: ignore[assignment]
        pending = [
            await publisher.publish(record.value, key=record.key, headers=headers, no_confirm=True)
            for record, headers in zip(records, message.batch_headers, strict=True)
        ]
        await asyncio.gather(*pending)
        await message.ack()
        clock.completed(len(records))

    subscriber = broker.subscriber(
        spec.input_topic,
        group_id=spec.group,
        batch=True,
        max_records=spec.max_records,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
    )
    subscriber(passthrough, decoder=_raw_body)
    await _serve(broker, clock, spec.timeout_s)
    return clock.result(spec.variant)


async def run_faststream_single(spec: WorkerSpec) -> Throughput:
    """Reference: a subscriber that publishes each body on and commits offset+1, one at a time."""
    broker = _bench_broker(spec)
    publisher = broker.publisher(spec.output_topic)
    clock = _Clock(spec.count)

    async def passthrough(message: KafkaMessage) -> None:
        clock.arrived()
        raw = message.raw_message
        if isinstance(raw, tuple):
            raise TypeError("a batch subscriber was not asked for")
        await publisher.publish(message.body, key=raw.key, headers=message.headers)
        consumer = message.consumer
        if isinstance(consumer, AIOKafkaConsumer):
            await consumer.commit({TopicPartition(raw.topic, raw.partition): raw.offset + 1})
        clock.completed()

    subscriber = broker.subscriber(
        spec.input_topic,
        group_id=spec.group,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
    )
    subscriber(passthrough, decoder=_raw_body)
    await _serve(broker, clock, spec.timeout_s)
    return clock.result(spec.variant)


# --- 3 and 5. the hub's hop and the replay path --------------------------------------------
class _HandlerClock:
    """Times a service from outside the kernel: through its handlers and its group's offsets.

    The first handler call is the first arrival; the end is the moment the group's committed
    offsets cover every record (polled with an admin client every 2 ms once each record has
    reached a handler; before that only every 0.5 s, to stay out of the measured loop's way).
    Only ServiceRuntime's public API is used, so the measurement holds whatever the kernel
    does inside (one record at a time, or batches).
    """

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.clock = _Clock(spec.count)
        self.handled = 0
        self.all_handled = asyncio.Event()

    def timed(self, handler: Handler) -> Handler:
        def handle(
            event: Event, state: BaseModel | None, at: datetime
        ) -> Decision[Any] | Awaitable[Decision[Any]]:
            self.clock.arrived()
            self.handled += 1
            if self.handled >= self.spec.count:
                self.all_handled.set()
            return handler(event, state, at)

        return handle

    async def watch(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.spec.bootstrap)
        await admin.start()
        try:
            while True:
                if self.all_handled.is_set():
                    await asyncio.sleep(TAIL_POLL_S)
                else:
                    # Also polled before, in case some record never reaches a handler.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.all_handled.wait(), EARLY_POLL_S)
                offsets: Mapping[TopicPartition, Any] = await admin.list_consumer_group_offsets(
                    self.spec.group
                )
                committed = sum(max(0, meta.offset) for meta in offsets.values())
                if committed > self.clock.done:
                    self.clock.completed(committed - self.clock.done)
                if self.clock.finished.is_set():
                    return
        finally:
            await admin.close()


def bench_intake(settings: HubSettings, spec: WorkerSpec, timer: _HandlerClock) -> Service:
    """The intake service under its own group and topics, its handlers timed."""
    intake = build_intake(settings)
    # Its outputs go to the bench's own topic, so a bench run leaves the real topics alone.
    emits = dict.fromkeys(intake.emits, Route.to(spec.output_topic))
    handlers = {name: timer.timed(handler) for name, handler in intake.handlers.items()}
    return replace(
        intake, group=spec.group, inputs=(spec.input_topic,), emits=emits, handlers=handlers
    )


async def run_hub(spec: WorkerSpec) -> Throughput:
    """Intake through ServiceRuntime: envelope, upcast, validation, inbox, state, DLQ, logs."""
    settings = HubSettings()
    configure_logging(settings.log_level, settings.log_format)
    timer = _HandlerClock(spec)
    runtime = ServiceRuntime(bench_intake(settings, spec, timer), settings, registry=CATALOGUE)
    await runtime.start()
    watcher = asyncio.create_task(timer.watch())
    try:
        await _wait(timer.clock, spec.timeout_s)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await runtime.stop()
    return timer.clock.result(spec.variant)


# --- 7. `hub dlq replay` -------------------------------------------------------------------
class ReplayRate(BaseModel):
    """Letters `hub dlq replay` sent a second, from planning the run to its last checkpoint."""

    variant: str
    messages: int
    seconds: float
    rate: float
    complete: bool
    scanned: int
    parked: int
    cpu_us_per_letter: float
    """CPU time of this process (user and system) over the timed span, per letter sent."""


async def run_dlq_replay(spec: WorkerSpec) -> ReplayRate:
    """What `hub dlq replay --group G` does (no --rate): plan, then replay with checkpoints.

    The producer is connected before the clock starts; the scans of the dead-letter topic (one
    while the letters fit in HUB_REPLAY_MEMORY_MB), the sends, checkpoints and the audit event
    are timed.
    """
    settings = HubSettings()
    configure_logging(settings.log_level, settings.log_format)
    async with Ops(settings, actor="bench", reason="bench") as ops:
        started, cpu = time.perf_counter(), time.process_time()
        checkpoint = await ops.plan_replay(Selection(group=spec.group))
        checkpoint = await ops.replay(checkpoint)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return ReplayRate(
        variant=spec.variant,
        messages=checkpoint.sent,
        seconds=round(seconds, 3),
        rate=round(checkpoint.sent / seconds, 1) if seconds > 0 else 0.0,
        complete=checkpoint.done and checkpoint.sent + checkpoint.parked >= spec.count,
        scanned=checkpoint.scanned,
        parked=checkpoint.parked,
        cpu_us_per_letter=round(cpu / max(1, checkpoint.sent) * 1e6, 1),
    )


# --- 4. end-to-end latency -----------------------------------------------------------------
def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (sorted ascending)."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(values)))
    return values[rank - 1]


class CaseClock:
    """When each case was due to be sent, and when its pickup order arrived (loop time).

    Also when each hop sent its output on (the records' create times, on the wall clock the
    processes share): where the time of a case goes.
    """

    def __init__(self) -> None:
        self.scheduled: dict[str, float] = {}
        self.arrived: dict[str, float] = {}
        self.sent_on: dict[str, float] = {}
        self.ordered: dict[str, float] = {}
        self._waiting: set[str] = set()
        self.all_in = asyncio.Event()

    def expect(self, cases: list[str]) -> None:
        """Wait (see `all_in`) for those of `cases` that have not arrived."""
        self._waiting = {case for case in cases if case not in self.arrived}
        if self._waiting:
            self.all_in.clear()
        else:
            self.all_in.set()

    def seen(self, case_id: str, at: float, *, sent_at: float) -> None:
        """The pickup order of `case_id`, sent at `sent_at`, arrived at `at` (loop time)."""
        if case_id in self.scheduled and case_id not in self.arrived:
            self.arrived[case_id] = at
            self.ordered[case_id] = sent_at
            self._waiting.discard(case_id)
            if not self._waiting:
                self.all_in.set()

    async def drain(self, cases: list[str], timeout_s: float) -> None:
        """Until every one of `cases` arrived, or `timeout_s` passed."""
        self.expect(cases)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_in.wait(), timeout_s)

    def in_time(self, cases: list[str], deadline_ms: float) -> int:
        """How many of `cases` arrived within `deadline_ms` of their scheduled send time."""
        return sum(
            case in self.arrived
            and (self.arrived[case] - self.scheduled[case]) * 1000 <= deadline_ms
            for case in cases
        )

    def passed(self, case_id: str, sent_at: float) -> None:
        """The first hop's output for `case_id` was sent at `sent_at` (loop time)."""
        self.sent_on.setdefault(case_id, sent_at)

    def legs_ms(self, cases: list[str]) -> dict[str, dict[str, float]]:
        """p50 and p99 of each leg of the cases that went the whole way."""
        whole = [c for c in cases if c in self.arrived and c in self.sent_on and c in self.ordered]
        legs = {
            "to_first_send": [self.sent_on[c] - self.scheduled[c] for c in whole],
            "between_sends": [self.ordered[c] - self.sent_on[c] for c in whole],
            "to_arrival": [self.arrived[c] - self.ordered[c] for c in whole],
        }
        summary: dict[str, dict[str, float]] = {}
        for leg, values in legs.items():
            if values:
                values.sort()
                summary[leg] = {
                    "p50": round(percentile(values, 0.50) * 1000, 1),
                    "p99": round(percentile(values, 0.99) * 1000, 1),
                }
        return summary

    def latencies_ms(self, cases: list[str], until: float) -> list[float]:
        """Sorted latencies; a case that never arrived counts as waiting `until` (a lower bound)."""
        return sorted(
            (self.arrived.get(case, until) - self.scheduled[case]) * 1000 for case in cases
        )


class _Load:
    """Offers storefront requests at a fixed rate and watches the pickup-order topics."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.producer = AIOKafkaProducer(bootstrap_servers=spec.bootstrap, **PRODUCER_OPTIONS)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=spec.bootstrap,
            group_id=None,
            auto_offset_reset="latest",
            # The instrument adds no wait of its own (see HubSettings.fetch_max_wait_ms).
            fetch_max_wait_ms=PROBE_FETCH_MAX_WAIT_MS,
        )
        self.clock = CaseClock()
        self.loop = asyncio.get_running_loop()
        # Create times are wall-clock milliseconds; the schedule runs on the loop's clock.
        self._wall_minus_loop = time.time() - self.loop.time()

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        # Without a group, subscribe assigns every partition; read from their ends on.
        via = [self.spec.via_topic] if self.spec.via_topic else []
        self.consumer.subscribe([*self.spec.result_topics, *via])
        async with asyncio.timeout(30):
            while not self.consumer.assignment():  # noqa: ASYNC110 - aiokafka has no event for it
                await asyncio.sleep(0.05)
        await self.consumer.seek_to_end(*self.consumer.assignment())

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def watch(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            now = self.loop.time()
            for partition, batch in batches.items():
                for record in batch:
                    case_id = record.key.decode() if record.key else ""
                    sent_at = record.timestamp / 1000 - self._wall_minus_loop
                    if partition.topic == self.spec.via_topic:
                        self.clock.passed(case_id, sent_at)
                        continue
                    self.clock.seen(case_id, now, sent_at=sent_at)

    async def offer(self, first: int, count: int, rate: float) -> list[str]:
        records = [storefront_request(first + i) for i in range(count)]
        cases = [case_id_for(f"RQ-{first + i:08d}") for i in range(count)]
        started = self.loop.time()
        pending = []
        for i, (record, case_id) in enumerate(zip(records, cases, strict=True)):
            due = started + i / rate
            await asyncio.sleep(max(0.0, due - self.loop.time()))
            self.clock.scheduled[case_id] = due
            pending.append(
                await self.producer.send(
                    record.topic, record.value, key=record.key, headers=list(record.headers)
                )
            )
        await asyncio.gather(*pending)
        return cases


async def run_e2e(spec: WorkerSpec) -> Latency:
    """Offer storefront requests at a fixed rate; time each until its pickup order is on Kafka.

    Latency counts from the scheduled send time, so a stalled sender cannot hide queueing.
    """
    load = _Load(spec)
    await load.start()
    try:
        watcher = asyncio.create_task(load.watch())
        # Warm-up: both services have joined their groups once these cases came through.
        warm = await load.offer(spec.first_number, spec.warmup, rate=50.0)
        await load.clock.drain(warm, spec.timeout_s)
        if not load.clock.all_in.is_set():
            raise RuntimeError("the warm-up cases did not come through: are the services up?")
        total = int(spec.rate * spec.duration_s)
        started = load.loop.time()
        cases = await load.offer(spec.first_number + spec.warmup, total, spec.rate)
        offered_s = load.loop.time() - started
        await load.clock.drain(cases, DRAIN_S)
        watcher.cancel()
        ended = load.loop.time()
    finally:
        await load.stop()
    latencies = load.clock.latencies_ms(cases, ended)
    return Latency(
        offered_rate=spec.rate,
        achieved_rate=round(total / offered_s, 1),
        duration_s=round(offered_s, 1),
        sent=total,
        received=sum(case in load.clock.arrived for case in cases),
        in_time=load.clock.in_time(cases, spec.deadline_ms),
        deadline_ms=spec.deadline_ms,
        p50_ms=round(percentile(latencies, 0.50), 1),
        p95_ms=round(percentile(latencies, 0.95), 1),
        p99_ms=round(percentile(latencies, 0.99), 1),
        max_ms=round(latencies[-1], 1) if latencies else math.nan,
        legs_ms=load.clock.legs_ms(cases),
    )


RUNS: dict[Variant, Callable[[WorkerSpec], Awaitable[BaseModel]]] = {
    "raw-batch": run_raw_batch,
    "raw-single": run_raw_single,
    "faststream-batch": run_faststream_batch,
    "faststream-single": run_faststream_single,
    "hub": run_hub,
    "replay": run_hub,
    "dlq-replay": run_dlq_replay,
    "e2e": run_e2e,
}


async def run(spec: WorkerSpec) -> BaseModel:
    """Measure the variant `spec` names."""
    return await RUNS[spec.variant](spec)


def main() -> None:
    """Entry point of a worker process."""
    spec = WorkerSpec.model_validate_json(sys.argv[1])
    if spec.variant not in {"hub", "replay", "dlq-replay"}:
        configure_logging(os.environ.get("HUB_LOG_LEVEL", "WARNING"), "json")
    # Every variant on uvloop, as `hub run` runs: the rows stay side by side.
    result = run_on_uvloop(run(spec))
    sys.stdout.write(result.model_dump_json() + "\n")


if __name__ == "__main__":
    main()
