"""The reliability kernel on in-memory ports: a probe pipeline, records to feed it, retries."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from fakes import FakeClock, InMemorySink, InMemoryStateStore
from probe import REGISTRY, FaultPlan, ProbeDoneV1, ProbeV1, probe_service

from hub.core import deadletter
from hub.core.envelope import Envelope
from hub.core.pipeline import Outcome, Pipeline
from hub.core.settings import HubSettings
from hub.core.store.base import KafkaRecord
from hub.core.topics import dead_letter_topic

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hub.core.handler import Service
    from hub.core.outbound import OutRecord
    from hub.core.pipeline import BatchResult
    from hub.core.registry import Event
    from hub.core.store.base import Headers

GROUP, INPUT, OUTPUT = "probe", "test.probe", "test.probe-done"
SOURCE = "urn:test:storefront"
EVENT_TIME = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
DLQ = dead_letter_topic(INPUT, GROUP)


def kernel_settings(**overrides: object) -> HubSettings:
    """Settings for a kernel test: every field the pipeline reads is set, none from the env."""
    values: dict[str, object] = {
        "retry_tiers": ("10s", "1m", "10m"),
        "max_attempts": 5,
        "inline_attempts": 1,
        "inline_backoff_s": 0.001,
        "inline_deadline_s": 5.0,
        "code_version": "component-test",
    }
    values.update(overrides)
    return HubSettings.model_validate(values)


def envelope_headers(
    event_id: str, *, ce_type: str = ProbeV1.ce_type(), source: str = SOURCE
) -> Headers:
    """The CloudEvents headers of an input produced by a partner."""
    envelope = Envelope(id=event_id, source=source, type=ce_type, time=EVENT_TIME, dataschema=None)
    return tuple(envelope.to_headers())


def event_record(
    offset: int,
    event: Event,
    *,
    key: bytes | None,
    event_id: str | None = None,
    topic: str = INPUT,
    partition: int = 0,
    extra_headers: Headers = (),
) -> KafkaRecord:
    """A well-formed input record carrying `event`."""
    headers = envelope_headers(event_id or f"evt-{offset}", ce_type=event.ce_type())
    return KafkaRecord(
        topic, partition, offset, 1_700_000_000_000 + offset, key, event.to_bytes(),
        (*headers, *extra_headers),
    )  # fmt: skip


def probe_record(
    offset: int, seq: int, *, key: bytes | None = b"case-1", event_id: str | None = None
) -> KafkaRecord:
    """A probe input; its event id is `evt-<offset>` unless given."""
    return event_record(offset, ProbeV1(seq=seq), key=key, event_id=event_id)


def as_read(record: OutRecord, offset: int, partition: int = 0) -> KafkaRecord:
    """A produced record as a consumer reads it back."""
    return KafkaRecord(
        record.topic, partition, offset, 1_800_000_000_000 + offset, record.key, record.value,
        record.headers,
    )  # fmt: skip


def header_map(record: OutRecord | KafkaRecord) -> dict[str, str]:
    """Header values as text (the last one wins: only for hub-written headers)."""
    return {name: value.decode(errors="replace") for name, value in record.headers}


def hub_headers(record: OutRecord | KafkaRecord) -> dict[str, str]:
    """The `x-hub-*` headers of a retried or dead-lettered record."""
    return {name: value.decode() for name, value in record.headers if deadletter.is_transit(name)}


def done_seqs(records: Sequence[OutRecord]) -> list[int]:
    """The `seq` of every ProbeDone output among `records`, in order."""
    return [ProbeDoneV1.model_validate_json(r.value or b"").seq for r in records]


@dataclass
class Kernel:
    """A probe pipeline on an in-memory store and sink, a fake clock and a fault plan."""

    settings: HubSettings = field(default_factory=kernel_settings)
    plan: FaultPlan = field(default_factory=FaultPlan)
    clock: FakeClock = field(default_factory=FakeClock)
    service: Service | None = None
    store: InMemoryStateStore = field(init=False)
    sink: InMemorySink = field(default_factory=InMemorySink)
    pipeline: Pipeline = field(init=False)
    fed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Next offset of each topic the kernel read back from the sink."""
    taken: int = 0
    """How many sink records `take_retries` has already looked at."""
    outages: list[tuple[str, int]] = field(default_factory=list)
    """Outages to plan, one before each batch is fed: (store operation or "sink", calls that
    pass first). A batch an outage fails is fed again, as the adapter does."""
    crashes: int = 0
    max_crashes: int = 0
    """How many failed batches `feed` takes again before it lets the error out."""

    def __post_init__(self) -> None:
        self.store = InMemoryStateStore(self.clock)
        service = self.service or probe_service(GROUP, INPUT, OUTPUT, self.plan)
        self.pipeline = Pipeline(
            service,
            registry=REGISTRY,
            store=self.store,
            sink=self.sink,
            settings=self.settings,
            clock=self.clock,
        )

    async def feed(self, records: Sequence[KafkaRecord]) -> BatchResult:
        """One partition's batch through the pipeline (again after each planned outage)."""
        while True:
            if self.outages:
                operation, after = self.outages.pop(0)
                if operation == "sink":
                    self.sink.fail_next(after=after)
                else:
                    self.store.faults.fail_next(operation, after=after)
            try:
                return await self.pipeline.process_batch(records)
            except ConnectionError:
                if self.crashes >= self.max_crashes:
                    raise
                self.crashes += 1

    def outputs(self) -> list[OutRecord]:
        """What the probe emitted on its output topic."""
        return self.sink.on(OUTPUT)

    def dead_letters(self) -> list[OutRecord]:
        """What was dead-lettered from the input topic."""
        return self.sink.on(DLQ)

    def take_retries(self) -> dict[str, list[KafkaRecord]]:
        """Retry records produced since the last call, read back per retry topic with offsets."""
        retries = self.peek_retries()
        self.taken = len(self.sink.records)
        for topic, records in retries.items():
            self.fed[topic] += len(records)
        return retries

    def peek_retries(self) -> dict[str, list[KafkaRecord]]:
        """What `take_retries` would return, leaving it to be taken."""
        retries: dict[str, list[KafkaRecord]] = defaultdict(list)
        for record in self.sink.records[self.taken :]:
            if ".retry." in record.topic:
                offset = self.fed[record.topic] + len(retries[record.topic])
                retries[record.topic].append(as_read(record, offset))
        return dict(retries)

    async def retry_round(self) -> list[Outcome] | None:
        """Feed the retry records produced so far once they are due; None when there are none."""
        retries = self.take_retries()
        if not retries:
            return None
        self.clock.advance(max(self.settings.retry_delays) + timedelta(seconds=1))
        outcomes: list[Outcome] = []
        for records in retries.values():
            result = await self.feed(records)
            assert (len(result.outcomes), result.resume_at) == (
                len(records),
                records[-1].offset + 1,
            )
            outcomes.extend(result.outcomes)
        return outcomes

    async def drain_retries(self, rounds: int = 50) -> list[Outcome]:
        """Feed every retry record once it is due (moving the clock), until none is left."""
        outcomes: list[Outcome] = []
        for _ in range(rounds):
            handled = await self.retry_round()
            if handled is None:
                return outcomes
            outcomes.extend(handled)
        raise AssertionError(f"retries still produced after {rounds} rounds")
