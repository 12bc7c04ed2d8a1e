"""Replay dead letters to their group's replay topic: lineage, parking, checkpoints, rate limit."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from hub.core.deadletter import PREFIX as HUB_PREFIX
from hub.core.deadletter import header
from hub.core.outbound import OutRecord
from hub.core.topics import parking_topic, replay_topic
from hub.ops.dlq import (
    REPLAY_AT,
    REPLAY_BY,
    REPLAY_COUNT,
    REPLAY_ID,
    DeadLetter,
    Generations,
    Ref,
    Selection,
    group_of_topic,
)
from hub.ops.kafka_io import parse_partition_key, partition_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from aiokafka import TopicPartition

    from hub.core.outbound import RecordSink
    from hub.ops.kafka_io import TopicReader

log = structlog.get_logger(__name__)

ORIGIN_PREFIX = "x-hub-origin-"
DEFAULT_MAX_REPLAYS = 3
CHECKPOINT_DIR = Path("ops") / "replays"
REFS_KEPT = 1000
# Record timestamps are the producer's clock, which is ours; the margin only covers rounding.
IN_FLIGHT_MARGIN_MS = 1000
UNLIMITED_CHUNKS_IN_FLIGHT = 4
"""Chunks sent but not yet acknowledged at once, when no rate is set (one with a rate)."""

Route = Literal["replay", "park"]


def new_replay_id() -> str:
    """A short id naming one replay run (and its checkpoint file)."""
    return uuid.uuid4().hex[:12]


def route(letter: DeadLetter, max_replays: int) -> Route:
    """A letter already replayed `max_replays` times is parked, so that a bad one cannot loop."""
    return "park" if letter.replay_count >= max_replays else "replay"


def replay_record(
    letter: DeadLetter,
    *,
    replay_id: str,
    by: str,
    at: datetime,
    value: bytes | None = None,
) -> OutRecord:
    """The copy of `letter` for its group's replay topic.

    The original key, value and headers come first, byte for byte (`value` replaces the body
    for an edit). The origin headers follow: the pipeline reads them to treat the record as
    the original from its input topic, so a new failure is dead-lettered to the same place.
    Error, attempt and due headers are left behind: a replay starts a fresh retry budget.
    Lineage comes last, its count one higher than the letter's.
    """
    # One pass over the headers (a replay sends every letter through here): the original's own
    # are those without the hub's prefix, as `DeadLetter.original_headers` keeps them.
    original: list[tuple[str, bytes]] = []
    origin: list[tuple[str, bytes]] = []
    for name, content in letter.record.headers:
        if not name.startswith(HUB_PREFIX):
            original.append((name, content))
        elif name.startswith(ORIGIN_PREFIX):
            origin.append((name, content))
    run_id, *by_and_at = _run_lineage(replay_id, by, at)
    lineage = (run_id, (REPLAY_COUNT, str(letter.replay_count + 1).encode()), *by_and_at)
    return OutRecord(
        topic=replay_topic(letter.group),
        key=letter.record.key,
        value=letter.record.value if value is None else value,
        headers=(*original, *origin, *lineage),
    )


@functools.lru_cache(maxsize=4)
def _run_lineage(replay_id: str, by: str, at: datetime) -> tuple[tuple[str, bytes], ...]:
    """The lineage headers every letter of one chunk shares (made once a chunk, not a letter)."""
    return (
        (REPLAY_ID, replay_id.encode()),
        (REPLAY_BY, by.encode()),
        (REPLAY_AT, at.astimezone(UTC).isoformat().encode()),
    )


def park_record(letter: DeadLetter) -> OutRecord:
    """The letter as it is, on its group's parking topic, for a person to look at."""
    record = letter.record
    return OutRecord(parking_topic(letter.group), record.key, record.value, record.headers)


class Checkpoint(BaseModel):
    """Progress of one replay run, saved after every acknowledged chunk so it can resume."""

    model_config = ConfigDict(extra="ignore")

    replay_id: str
    actor: str
    reason: str = ""
    selection: dict[str, str] = Field(default_factory=dict)
    max_replays: int = DEFAULT_MAX_REPLAYS
    rate: float | None = None
    started_at: AwareDatetime
    updated_at: AwareDatetime
    start: dict[str, int] = Field(default_factory=dict)
    """Per dead-letter partition, the first offset when the run started."""
    end: dict[str, int] = Field(default_factory=dict)
    """Per dead-letter partition, the end offset when the run started: later letters wait."""
    position: dict[str, int] = Field(default_factory=dict)
    """Per partition, the next offset to look at."""
    sent: int = 0
    parked: int = 0
    superseded: int = 0
    """Selected letters skipped because a newer generation of the same message exists."""
    already_parked: int = 0
    """Selected letters skipped because an earlier run parked them."""
    in_flight: list[str] = Field(default_factory=list)
    """Groups of the chunk being sent when this was saved; empty once the broker acknowledged."""
    in_flight_since_ms: int | None = None
    scanned: int = 0
    refs: list[str] = Field(default_factory=list)
    done: bool = False

    @property
    def remaining(self) -> int:
        """Records still to scan."""
        return sum(max(0, self.end[key] - self.position.get(key, 0)) for key in self.end)

    def save(self, state_dir: Path) -> Path:
        """Write atomically (a rename), so an interruption never leaves half a checkpoint."""
        path = checkpoint_path(state_dir, self.replay_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        temporary.replace(path)
        return path

    @classmethod
    def load(cls, state_dir: Path, replay_id: str) -> Checkpoint:
        """The saved progress of `replay_id`; FileNotFoundError when there is none."""
        text = checkpoint_path(state_dir, replay_id).read_text(encoding="utf-8")
        return cls.model_validate_json(text)


def saved_checkpoints(state_dir: Path) -> list[Checkpoint]:
    """Every saved replay run under `state_dir`, the latest started first."""
    folder = state_dir / CHECKPOINT_DIR
    found = [
        Checkpoint.model_validate_json(path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("*.json"))
    ]
    return sorted(found, key=lambda checkpoint: checkpoint.started_at, reverse=True)


def checkpoint_path(state_dir: Path, replay_id: str) -> Path:
    """Where the checkpoint of `replay_id` lives."""
    if not replay_id.isalnum():
        raise ValueError(f"a replay id is letters and digits only: {replay_id!r}")
    return state_dir / CHECKPOINT_DIR / f"{replay_id}.json"


class RateLimiter:
    """At most `rate` records per second on average (None: as fast as the broker takes them)."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._clock = clock
        self._start: float | None = None
        self._count = 0

    async def acquire(self, count: int) -> None:
        """Wait until `count` more records fit the rate."""
        if not self._rate or count <= 0:
            return
        now = self._clock()
        if self._start is None:
            self._start = now
        self._count += count
        # The first chunk goes at once; each later one waits for its share of time.
        wait = self._start + (self._count - count) / self._rate - now
        if wait > 0:
            await asyncio.sleep(wait)


def chunk_size(rate: float | None) -> int:
    """Records per acknowledged send: a tenth of a second's worth, between 1 and 1000."""
    return 1000 if not rate else max(1, min(1000, int(rate / 10)))


def chunks_in_flight(rate: float | None) -> int:
    """How many chunks may await their acknowledgements together.

    With a rate the limiter paces the chunks anyway: one at a time. Without one, the next
    chunks are read and sent while the broker acknowledges the earlier ones.
    """
    return 1 if rate else UNLIMITED_CHUNKS_IN_FLIGHT


@dataclass(eq=False)
class _Chunk:
    """Letters sent together; what the checkpoint learns once the broker acknowledged them."""

    letters: list[DeadLetter]
    routes: list[Route]
    scanned: dict[str, int]
    superseded: int
    groups: list[str] = field(default_factory=list)
    since_ms: int | None = None
    sending: asyncio.Task[None] | None = None


class _ReplayRun:
    """One pass of a replay over its dead-letter partitions, chunk by acknowledged chunk.

    A chunk is sent without waiting for the one before it (up to `chunks_in_flight`), but the
    checkpoint learns of chunks strictly in order, each once all its records are acknowledged:
    its position never passes a record the broker has not taken. While chunks are in flight,
    the saved checkpoint names their groups and the send time of the oldest, for `reconcile`.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        sink: RecordSink,
        state_dir: Path,
        progress: Callable[[Checkpoint], None] | None,
        clock: Callable[[], datetime],
        keep_bytes: int,
    ) -> None:
        self.checkpoint = checkpoint
        self.selection = Selection.from_description(checkpoint.selection)
        self.end: Mapping[TopicPartition, int] = {
            parse_partition_key(key): offset for key, offset in checkpoint.end.items()
        }
        self.generations = Generations()
        self._sink = sink
        self._state_dir = state_dir
        self._progress = progress
        self._clock = clock
        self._limiter = RateLimiter(checkpoint.rate)
        self.size = chunk_size(checkpoint.rate)
        self.depth = chunks_in_flight(checkpoint.rate)
        self._in_flight: deque[_Chunk] = deque()
        self.pending: list[DeadLetter] = []
        self._scanned: dict[str, int] = {}
        self._superseded = 0
        self._delivered: dict[tuple[str, str, int, int], Route] = {}
        self._parked_before: set[tuple[str, str, int, int]] = set()
        self._newest: set[Ref] = set()
        """Where the newest generation of each message lives, once `learn_generations` ran."""
        self._kept: list[list[DeadLetter]] | None = []
        """The letters `learn_generations` read, batch by batch; None once they outgrew
        `keep_bytes`: the send pass then reads them again."""
        self._kept_bytes = 0
        self._keep_bytes = keep_bytes

    async def learn_generations(self, reader: TopicReader) -> None:
        """Read every letter once to know the newest generation of each message."""
        first = {tp: self.checkpoint.start.get(partition_key(tp), 0) for tp in self.end}
        async for batch in reader.scan(first, self.end):
            letters = [DeadLetter.from_record(record) for record in batch]
            for letter in letters:
                self.generations.add(letter)
            self._keep(letters)
        self._newest = {ref for _, _, ref in self.generations.newest.values()}
        # A letter parked by an earlier run stays parked: parking it again would copy it twice.
        parking = sorted({parking_topic(group_of_topic(tp.topic)) for tp in self.end})
        for record in await reader.read_since(parking, 0):
            self._parked_before.add(DeadLetter.from_record(record).identity)

    def _keep(self, letters: list[DeadLetter]) -> None:
        if self._kept is None:
            return
        self._kept_bytes += sum(map(_size, letters))
        if self._kept_bytes > self._keep_bytes:
            self._kept = None
        else:
            self._kept.append(letters)

    async def letters_from(
        self, reader: TopicReader, start: Mapping[TopicPartition, int]
    ) -> AsyncIterator[list[DeadLetter]]:
        """The letters from `start` on, batch by batch: those kept, else read again."""
        if self._kept is None:
            async for batch in reader.scan(start, self.end):
                yield [DeadLetter.from_record(record) for record in batch]
            return
        kept, self._kept = deque(self._kept), None
        first = {(tp.topic, tp.partition): offset for tp, offset in start.items()}
        while kept:
            letters = kept.popleft()  # sent letters are let go as the run goes on
            yield [
                letter
                for letter in letters
                if letter.record.offset >= first[letter.record.topic, letter.record.partition]
            ]

    async def reconcile(self, reader: TopicReader) -> None:
        """After a crash mid-chunk, learn which of that chunk's records did reach the broker.

        They are recognised on the replay and parking topics by their origin (and, on the
        replay topic, this run's id), and skipped instead of sent again.
        """
        checkpoint = self.checkpoint
        if not checkpoint.in_flight or checkpoint.in_flight_since_ms is None:
            return
        topics = [
            topic
            for group in sorted(set(checkpoint.in_flight))
            for topic in (replay_topic(group), parking_topic(group))
        ]
        for record in await reader.read_since(topics, checkpoint.in_flight_since_ms):
            on_replay = record.topic.endswith(".replay")
            if on_replay and header(record.headers, REPLAY_ID) != checkpoint.replay_id:
                continue
            self._delivered[DeadLetter.from_record(record).identity] = (
                "replay" if on_replay else "park"
            )
        log.info(
            "replay_reconciled", replay_id=checkpoint.replay_id, delivered=len(self._delivered)
        )

    def take(self, letter: DeadLetter) -> None:
        """Look at one letter: pending when selected and newest, else only scanned."""
        if not self.selection.matches(letter):
            pass
        # The set answers for nearly every letter; `is_newest` for the rest (it knows them all).
        elif not (letter.ref in self._newest or self.generations.is_newest(letter)):
            self._superseded += 1
        elif not (self._parked_before or self._delivered):
            self.pending.append(letter)
        else:
            self._take_after_earlier_runs(letter)
        record = letter.record
        self._scanned[f"{record.topic}:{record.partition}"] = record.offset + 1

    def _take_after_earlier_runs(self, letter: DeadLetter) -> None:
        identity = letter.identity
        if identity in self._parked_before:
            self.checkpoint.already_parked += 1
        elif (delivered := self._delivered.pop(identity, None)) is not None:
            # Sent just before a crash: count it, do not send it again.
            if delivered == "park":
                self.checkpoint.parked += 1
            else:
                self.checkpoint.sent += 1
        else:
            self.pending.append(letter)

    async def flush(self) -> None:
        """Send the pending chunk; once too many are in flight, wait for the oldest one's acks."""
        checkpoint, at = self.checkpoint, self._clock()
        routes = [route(letter, checkpoint.max_replays) for letter in self.pending]
        chunk = _Chunk(list(self.pending), routes, dict(self._scanned), self._superseded)
        self.pending.clear()
        self._scanned.clear()
        self._superseded = 0
        out = [
            park_record(letter)
            if way == "park"
            else replay_record(letter, replay_id=checkpoint.replay_id, by=checkpoint.actor, at=at)
            for letter, way in zip(chunk.letters, routes, strict=True)
        ]
        if out:
            await self._limiter.acquire(len(out))
            chunk.groups = sorted({letter.group for letter in chunk.letters})
            chunk.since_ms = int(at.timestamp() * 1000) - IN_FLIGHT_MARGIN_MS
            # Saved before sending: a crash in between leaves a trace for `reconcile`. When
            # the saved checkpoint already names this chunk's groups and an earlier time (a
            # chunk before it is still in flight), it says all that `reconcile` needs.
            saved = (checkpoint.in_flight, checkpoint.in_flight_since_ms)
            self._note_in_flight([*self._in_flight, chunk])
            if (checkpoint.in_flight, checkpoint.in_flight_since_ms) != saved:
                checkpoint.save(self._state_dir)
            chunk.sending = asyncio.create_task(self._sink.send(out))
        self._in_flight.append(chunk)
        while len(self._in_flight) >= self.depth:
            await self._acknowledged()

    async def drain(self) -> None:
        """Wait for every chunk in flight: afterwards nothing is, and the checkpoint says so."""
        while self._in_flight:
            await self._acknowledged()

    def _note_in_flight(self, chunks: list[_Chunk]) -> None:
        sent = [chunk for chunk in chunks if chunk.since_ms is not None]
        self.checkpoint.in_flight = sorted({group for chunk in sent for group in chunk.groups})
        self.checkpoint.in_flight_since_ms = min(
            (chunk.since_ms for chunk in sent if chunk.since_ms is not None), default=None
        )

    async def _acknowledged(self) -> None:
        """Wait for the oldest chunk's acknowledgements, then count it and save the checkpoint."""
        chunk = self._in_flight[0]
        if chunk.sending is not None:
            try:
                await chunk.sending
            except BaseException:
                # As a crash: the saved checkpoint still names every chunk in flight.
                await self._abandon()
                raise
        self._in_flight.popleft()
        checkpoint = self.checkpoint
        self._note_in_flight(list(self._in_flight))
        parked = chunk.routes.count("park")
        checkpoint.sent += len(chunk.letters) - parked
        checkpoint.parked += parked
        checkpoint.superseded += chunk.superseded
        room = max(0, REFS_KEPT - len(checkpoint.refs))
        checkpoint.refs.extend(str(letter.ref) for letter in chunk.letters[:room])
        checkpoint.scanned += sum(
            offset - checkpoint.position.get(key, checkpoint.start.get(key, 0))
            for key, offset in chunk.scanned.items()
        )
        checkpoint.position.update(chunk.scanned)
        checkpoint.updated_at = self._clock()
        checkpoint.save(self._state_dir)
        if self._progress is not None:
            self._progress(checkpoint)

    async def _abandon(self) -> None:
        """Stop the sends still going (a failed one ends the run); nothing more is counted."""
        tasks = [chunk.sending for chunk in self._in_flight if chunk.sending is not None]
        self._in_flight.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    def finish(self) -> None:
        """Mark the run done and save it."""
        checkpoint = self.checkpoint
        checkpoint.position.update({partition_key(tp): end for tp, end in self.end.items()})
        checkpoint.done = True
        checkpoint.updated_at = self._clock()
        checkpoint.save(self._state_dir)


def _size(letter: DeadLetter) -> int:
    record = letter.record
    headers = sum(map(len, map(_CONTENT, record.headers)))
    return len(record.key or b"") + len(record.value or b"") + headers


_CONTENT = itemgetter(1)


async def _interrupted(run: _ReplayRun) -> Checkpoint:
    """Stop at a chunk boundary: the chunks in flight are acknowledged and counted first."""
    await run.drain()
    log.info("replay_interrupted", replay_id=run.checkpoint.replay_id)
    return run.checkpoint


async def run_replay(
    checkpoint: Checkpoint,
    *,
    reader: TopicReader,
    sink: RecordSink,
    state_dir: Path,
    stop: asyncio.Event | None = None,
    progress: Callable[[Checkpoint], None] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    keep_bytes: int = 0,
) -> Checkpoint:
    """Send the checkpoint's selection from its positions on; save progress after each chunk.

    Only the newest generation of each message is sent (see `Generations`). `stop` ends the
    run at the next chunk boundary (nothing in flight), ready to resume. Without a rate,
    a few chunks are in flight at once (`chunks_in_flight`); progress still moves chunk by
    acknowledged chunk, in order. Letters whose bytes fit in `keep_bytes` are read once.
    """
    run = _ReplayRun(
        checkpoint,
        sink=sink,
        state_dir=state_dir,
        progress=progress,
        clock=clock,
        keep_bytes=keep_bytes,
    )
    await run.learn_generations(reader)
    await run.reconcile(reader)
    start = {tp: checkpoint.position.get(partition_key(tp), 0) for tp in run.end}
    async for batch in run.letters_from(reader, start):
        for letter in batch:
            run.take(letter)
            if len(run.pending) >= run.size:
                await run.flush()
                if stop is not None and stop.is_set():
                    return await _interrupted(run)
        await run.flush()
        if stop is not None and stop.is_set():
            return await _interrupted(run)
    await run.drain()
    run.finish()
    log.info(
        "replay_finished",
        replay_id=checkpoint.replay_id,
        sent=checkpoint.sent,
        parked=checkpoint.parked,
        superseded=checkpoint.superseded,
    )
    return checkpoint
