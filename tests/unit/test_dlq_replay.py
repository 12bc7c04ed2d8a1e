"""Replay records, parking, checkpoints, the rate limit, and how the pipeline takes a replay."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import structlog
from probe import REGISTRY, FaultPlan, ProbeDoneV1, ProbeV1, probe_service

from hub.core import pipeline as pipeline_module
from hub.core.outbound import OutRecord, event_record
from hub.core.pipeline import Outcome, Pipeline
from hub.core.settings import HubSettings
from hub.core.store.base import KafkaRecord
from hub.core.store.sqlite import SqliteStateStore
from hub.core.topics import dead_letter_topic, parking_topic, replay_topic
from hub.ops.dlq import DeadLetter
from hub.ops.replay import (
    Checkpoint,
    RateLimiter,
    checkpoint_path,
    chunk_size,
    park_record,
    replay_record,
    route,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

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
    assert chunk_size(None) == 200
    assert chunk_size(500) == 50
    assert chunk_size(3) == 1
    assert chunk_size(1_000_000) == 200


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
            warnings.append({**structlog.contextvars.get_contextvars(), **values, "event": event})

        info = debug = error = exception = warning

    monkeypatch.setattr(pipeline_module, "log", Recorder())
    bad = KafkaRecord(INPUT, 0, 2, 1_000, b"case-2", b"not json", ())
    assert (await pipeline.process_batch([bad])).outcomes == (Outcome.DEAD_LETTERED,)
    (logged,) = [w for w in warnings if w["event"] == "message_dead_lettered"]
    assert logged["offset"] == 2
    assert "case_id" not in logged
    assert "ce_id" not in logged
