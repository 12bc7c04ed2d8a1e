"""Replay records, parking, checkpoints, the rate limit, and how the pipeline takes a replay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import pytest
import structlog
from probe import REGISTRY, FaultPlan, ProbeDoneV1, ProbeV1, probe_service

from hub.core import pipeline as pipeline_module
from hub.core.logging import merge_record_context
from hub.core.outbound import OutRecord, event_record
from hub.core.pipeline import Outcome, Pipeline
from hub.core.settings import HubSettings
from hub.core.store.base import KafkaRecord
from hub.core.store.sqlite import SqliteStateStore
from hub.core.topics import dead_letter_topic, parking_topic, replay_topic
from hub.ops.dlq import DeadLetter, Selection
from hub.ops.replay import (
    Checkpoint,
    RateLimiter,
    checkpoint_path,
    chunk_size,
    park_record,
    replay_record,
    route,
    run_replay,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from pathlib import Path

    from aiokafka import TopicPartition

    from hub.ops.kafka_io import TopicReader

AT = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
GROUP, INPUT, OUTPUT = "probe", "test.probe", "test.probe-done"


class CollectingSink:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def send(self, records: Sequence[OutRecord]) -> None:
        self.records.extend(records)


def as_read(record: OutRecord, offset: int, partition: int = 0) -> KafkaRecord:
    return KafkaRecord(
        record.topic, partition, offset, 1_000, record.key, record.value, record.headers
    )


def headers(record: OutRecord | KafkaRecord) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


@pytest.fixture
async def pipeline_parts(
    tmp_path: Path,
) -> AsyncIterator[tuple[Pipeline, FaultPlan, CollectingSink]]:
    plan = FaultPlan(permanent={7})
    store = SqliteStateStore(tmp_path / "probe.db")
    await store.open()
    sink = CollectingSink()
    settings = HubSettings(retry_tiers=("1s",), code_version="test", inline_attempts=1)
    pipeline = Pipeline(
        probe_service(GROUP, INPUT, OUTPUT, plan),
        registry=REGISTRY,
        store=store,
        sink=sink,
        settings=settings,
    )
    yield pipeline, plan, sink
    await store.close()


async def dead_letter_of(pipeline: Pipeline, sink: CollectingSink) -> DeadLetter:
    original = event_record(INPUT, ProbeV1(seq=7), key="case-7", source="urn:t", event_id="e-7")
    assert (await pipeline.process_batch([as_read(original, offset=41)])).outcomes == (
        Outcome.DEAD_LETTERED,
    )
    (dlq,) = sink.records
    sink.records.clear()
    assert dlq.topic == dead_letter_topic(INPUT, GROUP)
    return DeadLetter.from_record(as_read(dlq, offset=0))


async def test_a_replay_record_carries_the_original_origin_and_lineage(
    pipeline_parts: tuple[Pipeline, FaultPlan, CollectingSink],
) -> None:
    pipeline, _plan, sink = pipeline_parts
    dead = await dead_letter_of(pipeline, sink)
    record = replay_record(dead, replay_id="r1", by="alice", at=AT)
    assert record.topic == replay_topic(GROUP)
    assert (record.key, record.value) == (dead.record.key, dead.record.value)
    assert record.headers[: len(dead.original_headers)] == dead.original_headers
    sent = headers(record)
    assert sent["x-hub-origin-topic"] == INPUT
    assert sent["x-hub-origin-offset"] == "41"
    assert sent["x-hub-origin-group"] == GROUP
    assert (sent["x-hub-replay-id"], sent["x-hub-replay-count"]) == ("r1", "1")
    assert (sent["x-hub-replay-by"], sent["x-hub-replay-at"]) == ("alice", AT.isoformat())
    assert not {"x-hub-error-class", "x-hub-attempts", "x-hub-first-failure-at"} & set(sent)


async def test_the_pipeline_takes_a_replay_as_the_original_and_keeps_its_lineage(
    pipeline_parts: tuple[Pipeline, FaultPlan, CollectingSink],
) -> None:
    pipeline, plan, sink = pipeline_parts
    dead = await dead_letter_of(pipeline, sink)
    replayed = as_read(replay_record(dead, replay_id="r1", by="alice", at=AT), offset=0)

    # Still broken: dead-lettered to the same place, origin unchanged, lineage kept.
    assert (await pipeline.process_batch([replayed])).outcomes == (Outcome.DEAD_LETTERED,)
    (again,) = sink.records
    sink.records.clear()
    second = DeadLetter.from_record(as_read(again, offset=1))
    assert again.topic == dead.ref.topic
    assert second.origin == dead.origin
    assert second.replay_count == 1
    assert second.attempts == 1  # a replay starts a fresh retry budget
    assert headers(again)["x-hub-replay-id"] == "r1"

    # Fixed: processed once, with the output id a first delivery would have had.
    plan.permanent.clear()
    assert (await pipeline.process_batch([replayed])).outcomes == (Outcome.PROCESSED,)
    (output,) = sink.records
    assert ProbeDoneV1.model_validate_json(output.value or b"").seq == 7
    assert (await pipeline.process_batch([replayed])).outcomes == (Outcome.DUPLICATE,)


async def test_a_letter_replayed_too_often_is_parked_as_it_is(
    pipeline_parts: tuple[Pipeline, FaultPlan, CollectingSink],
) -> None:
    pipeline, _plan, sink = pipeline_parts
    dead = await dead_letter_of(pipeline, sink)
    assert route(dead, max_replays=1) == "replay"
    replayed = as_read(replay_record(dead, replay_id="r1", by="alice", at=AT), offset=0)
    await pipeline.process_batch([replayed])
    (again,) = sink.records
    second = DeadLetter.from_record(as_read(again, offset=1))
    assert route(second, max_replays=1) == "park"
    assert route(second, max_replays=2) == "replay"
    parked = park_record(second)
    assert parked.topic == parking_topic(GROUP)
    assert (parked.key, parked.value, parked.headers) == (again.key, again.value, again.headers)
    assert (
        headers(replay_record(second, replay_id="r2", by="bob", at=AT))["x-hub-replay-count"] == "2"
    )


def test_a_checkpoint_saves_and_loads(tmp_path: Path) -> None:
    checkpoint = Checkpoint(
        replay_id="abc123",
        actor="alice",
        selection={"group": "dispatch"},
        started_at=AT,
        updated_at=AT,
        start={"t.dlq:0": 0},
        end={"t.dlq:0": 10, "t.dlq:1": 5},
        position={"t.dlq:0": 4, "t.dlq:1": 0},
    )
    path = checkpoint.save(tmp_path)
    assert path == tmp_path / "ops" / "replays" / "abc123.json"
    assert not path.with_suffix(".tmp").exists()
    loaded = Checkpoint.load(tmp_path, "abc123")
    assert loaded == checkpoint
    assert loaded.remaining == 11
    with pytest.raises(ValueError, match="letters and digits"):
        checkpoint_path(tmp_path, "../../etc/passwd")
    with pytest.raises(FileNotFoundError):
        Checkpoint.load(tmp_path, "missing")


async def test_the_rate_limiter_spreads_chunks_over_time(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))
        now[0] += seconds

    monkeypatch.setattr("hub.ops.replay.asyncio.sleep", fake_sleep)
    limiter = RateLimiter(100.0, clock=lambda: now[0])
    for _ in range(4):
        await limiter.acquire(10)
    assert waits == [0.1, 0.1, 0.1]  # 40 records at 100/s: 0.3 s after the first chunk
    unlimited = RateLimiter(None, clock=lambda: now[0])
    await unlimited.acquire(10_000)
    assert len(waits) == 3


def test_chunks_are_a_tenth_of_a_second_of_the_rate() -> None:
    assert chunk_size(None) == 1000
    assert chunk_size(500) == 50
    assert chunk_size(3) == 1
    assert chunk_size(1_000_000) == 1000


async def test_a_record_that_does_not_decode_is_not_logged_as_the_case_before_it(
    pipeline_parts: tuple[Pipeline, FaultPlan, CollectingSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, _, _ = pipeline_parts
    good = event_record(INPUT, ProbeV1(seq=1), key="case-1", source="urn:t", event_id="e-1")
    assert (await pipeline.process_batch([as_read(good, offset=1)])).outcomes == (
        Outcome.PROCESSED,
    )
    warnings: list[dict[str, object]] = []

    class Recorder:
        """Stands in for the pipeline's logger: what a warning would carry, context included."""

        def warning(self, event: str, **values: object) -> None:
            bound = dict(structlog.contextvars.get_contextvars())
            context = merge_record_context(None, event, bound)
            warnings.append({**context, **values, "event": event})

        info = debug = error = exception = warning

    monkeypatch.setattr(pipeline_module, "log", Recorder())
    bad = KafkaRecord(INPUT, 0, 2, 1_000, b"case-2", b"not json", ())
    assert (await pipeline.process_batch([bad])).outcomes == (Outcome.DEAD_LETTERED,)
    (logged,) = [w for w in warnings if w["event"] == "message_dead_lettered"]
    assert logged["offset"] == 2
    assert "case_id" not in logged
    assert "ce_id" not in logged


# --- a replay without a rate: several chunks in flight, the checkpoint in order ----------------
DLQ = "t.in.g.dlq"


def letter_record(offset: int) -> KafkaRecord:
    letter_headers = (
        ("ce_id", f"e-{offset}".encode()),
        ("x-hub-origin-topic", b"t.in"),
        ("x-hub-origin-partition", b"0"),
        ("x-hub-origin-offset", str(offset).encode()),
        ("x-hub-origin-group", b"g"),
        ("x-hub-error-class", b"builtins.TimeoutError"),
    )
    return KafkaRecord(DLQ, 0, offset, 1_000 + offset, b"case", b"{}", letter_headers)


class LetterReader:
    """The dead-letter partition `DLQ:0` with `total` letters, read 100 at a time."""

    def __init__(self, total: int) -> None:
        self.records = [letter_record(offset) for offset in range(total)]

    async def scan(
        self, start: Mapping[TopicPartition, int], end: Mapping[TopicPartition, int]
    ) -> AsyncIterator[list[KafkaRecord]]:
        ((tp, first),) = start.items()
        for offset in range(first, end[tp], 100):
            yield self.records[offset : min(offset + 100, end[tp])]

    async def read_since(self, topics: Sequence[str], since_ms: int) -> list[KafkaRecord]:
        """No parking topic, and nothing sent before: nothing to find."""
        assert topics
        assert since_ms >= 0
        return []


class SlowSink:
    """Acknowledges each chunk after a delay, later chunks sooner; fails on `fail_on` if set."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls = 0
        self.records: list[OutRecord] = []
        self.open = 0
        self.most_open = 0
        self.fail_on = fail_on

    async def send(self, records: Sequence[OutRecord]) -> None:
        self.calls += 1
        call = self.calls
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await asyncio.sleep(0.02 / call)
            if call == self.fail_on:
                raise RuntimeError("broker gone")
            self.records.extend(records)
        finally:
            self.open -= 1


def unlimited_plan(total: int) -> Checkpoint:
    return Checkpoint(
        replay_id="fast1",
        actor="alice",
        selection=Selection(group="g").describe(),
        rate=None,
        started_at=AT,
        updated_at=AT,
        start={f"{DLQ}:0": 0},
        end={f"{DLQ}:0": total},
        position={f"{DLQ}:0": 0},
    )


async def test_without_a_rate_chunks_overlap_but_progress_moves_in_order(tmp_path: Path) -> None:
    sink = SlowSink()
    seen: list[tuple[int, int, list[str]]] = []

    def progress(cp: Checkpoint) -> None:
        on_disk = Checkpoint.load(tmp_path, cp.replay_id)
        assert on_disk.position == cp.position  # saved before anyone is told
        seen.append((cp.sent, cp.position[f"{DLQ}:0"], cp.in_flight))

    done = await run_replay(
        unlimited_plan(1000),
        reader=cast("TopicReader", LetterReader(1000)),
        sink=sink,
        state_dir=tmp_path,
        progress=progress,
        clock=lambda: AT,
    )
    assert 1 < sink.most_open <= 4
    # A chunk ends at the size (200) or where a fetched batch (here 100 letters) ends.
    assert [(sent, position) for sent, position, _ in seen] == [
        (n, n) for n in range(100, 1001, 100)
    ]
    assert seen[0][2] == ["g"]  # later chunks were still in flight
    assert (done.done, done.sent, done.scanned, done.in_flight) == (True, 1000, 1000, [])
    origins = [int(dict(record.headers)["x-hub-origin-offset"]) for record in sink.records]
    assert sorted(origins) == list(range(1000))


async def test_without_a_rate_a_failed_chunk_leaves_the_later_ones_for_reconcile(
    tmp_path: Path,
) -> None:
    plan = unlimited_plan(1000)
    with pytest.raises(RuntimeError, match="broker gone"):
        await run_replay(
            plan,
            reader=cast("TopicReader", LetterReader(1000)),
            sink=SlowSink(fail_on=3),
            state_dir=tmp_path,
            clock=lambda: AT,
        )
    saved = Checkpoint.load(tmp_path, plan.replay_id)
    # Chunks 1 and 2 were acknowledged and counted; 3 (failed) and 4 may have reached the broker.
    assert (saved.sent, saved.position[f"{DLQ}:0"]) == (200, 200)
    assert saved.in_flight == ["g"]
    assert saved.in_flight_since_ms is not None
    assert not saved.done
