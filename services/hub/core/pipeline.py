"""Records in, one outcome each: decode, deduplicate, park, handle, publish, retry or dead-letter.

Transport-free: the FastStream adapter (`hub.core.service`) feeds each partition's records as a
batch and commits after it. Decisions stay per record; the round trips are paid per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from hub.core import deadletter, tracing
from hub.core.envelope import Envelope, derive_event_id
from hub.core.errors import (
    EarlyEventError,
    FailureClass,
    PermanentError,
    Stage,
    UndecodableError,
    classify,
    stage_of,
)
from hub.core.handler import Decision
from hub.core.logging import bind_record, unbind_record
from hub.core.metrics import NoMetrics, PipelineMetrics
from hub.core.outbound import OutRecord, RecordSink
from hub.core.store.base import EventId, StaleBatchError
from hub.core.topics import COMPACTED, dead_letter_topic, replay_topic, retry_topic

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from pydantic import BaseModel

    from hub.core.handler import Emit, Handler, Service
    from hub.core.registry import Event, Registry
    from hub.core.settings import HubSettings
    from hub.core.store.base import Headers, JsonObject, KafkaRecord, ParkedRecord, StateStore

log = structlog.get_logger(__name__)

TIMER_RECHECK_MIN_S = 0.5
TIMER_RECHECK_MAX_S = 5.0
"""How soon a timer held back by unread inputs is looked at again."""


class Outcome(StrEnum):
    """What became of one record; offsets may be committed after every outcome but NOT_DUE."""

    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    PARKED = "parked"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"
    NOT_DUE = "not_due"


_ROUTINE = frozenset({Outcome.PROCESSED, Outcome.IGNORED})
"""Outcomes logged at DEBUG: the rest (duplicates, parks, retries, dead letters) at INFO."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What became of a partition's batch: an outcome per record handled, in offset order.

    `resume_at` is the offset the partition goes on from (every record before it is done);
    `due` is set when the record at `resume_at` waits for its due time.
    """

    outcomes: tuple[Outcome, ...]
    resume_at: int | None
    due: datetime | None = None


@dataclass(slots=True)
class _Read:
    """One record as read: its original form, retry history, and its event or why not."""

    original: KafkaRecord
    tier: int | None
    attempts: int
    first_failure: datetime | None
    envelope: Envelope | None = None
    event: Event | None = None
    state_key: str | None = None
    failure: BaseException | None = None
    ignored: bool = False
    """A known event of a family this service has no handler for: not even its body is read."""
    hop: str | None = None
    """The hop's traceparent, once asked for (`Pipeline._traceparent`)."""
    retry_of: str | None = None
    """On a retry record, where the record it was made from was read."""
    key: str | None = field(init=False)
    """The record key as text (decoded once: it is read five times a record)."""
    raw: KafkaRecord = field(init=False)
    """The record as read, before `original` took its origin's place (`Pipeline._read`)."""

    def __post_init__(self) -> None:
        self.key = _text(self.original.key)

    @property
    def identity(self) -> EventId | None:
        return EventId(self.envelope.source, self.envelope.id) if self.envelope else None

    @property
    def position(self) -> str:
        """Where this record was read (topic:partition:offset), for a retry record made of it."""
        raw = self.raw
        return f"{raw.topic}:{raw.partition}:{raw.offset}"

    @property
    def chain_marks(self) -> tuple[EventId, EventId] | None:
        """The inbox rows a retry record takes when read: its hop of the chain, and itself.

        Its twin (the same record made into a retry record twice, by a batch read again after
        a crash) finds the hop taken but not itself, and stops: one retry chain per event.
        The record read again after a crash finds both and goes on as any record read again.
        """
        if self.retry_of is None or self.envelope is None:
            return None
        source, event_id = self.envelope.source, self.envelope.id
        return (
            EventId(source, f"{event_id}{_HOP_MARK}{self.retry_of}"),
            EventId(source, f"{event_id}{_READ_MARK}{self.position}"),
        )


_HOP_MARK, _READ_MARK = " retry-of ", " read-at "


def is_chain_mark(event: EventId) -> bool:
    """Whether an inbox row stands for a retry record read, not for an event handled."""
    return _HOP_MARK in event.id or _READ_MARK in event.id


class _StageTracker:
    """Remembers which stage an attempt reached, so a failure is reported at the right stage."""

    __slots__ = ("stage",)

    def __init__(self) -> None:
        self.stage: Stage = "handle"


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


class Pipeline:
    """The reliability kernel of one consumer group, written once for every service."""

    def __init__(
        self,
        service: Service,
        *,
        registry: Registry,
        store: StateStore,
        sink: RecordSink,
        settings: HubSettings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.service = service
        self._registry = registry
        self._store = store
        self._sink = sink
        self._settings = settings
        self._clock = clock
        self._delays = settings.retry_delays
        self._tier_of = {
            retry_topic(topic, service.group, delay): tier
            for topic in service.all_inputs
            for tier, delay in enumerate(self._delays)
        }
        self._input_of = {
            retry_topic(topic, service.group, delay): topic
            for topic in service.all_inputs
            for delay in self._delays
        }
        self._inputs = frozenset(service.all_inputs)
        # Records on these topics carry a due time and wait for it.
        self._scheduled = {*self._tier_of, *service.timer_topics}
        self._timers = frozenset(service.timer_topics)
        self.counts: Counter[Outcome] = Counter()
        # Metrics and spans are the kernel's: handlers stay pure and report nothing themselves.
        self.metrics = (
            PipelineMetrics(service.group, service.all_inputs) if settings.metrics else NoMetrics()
        )

    @property
    def topics(self) -> list[str]:
        """Every topic the group reads: inputs, their retry tiers, and its replay topic."""
        return [*self.service.all_inputs, *self._tier_of, replay_topic(self.service.group)]

    async def process_batch(
        self, records: Sequence[KafkaRecord], *, inputs_read_to: datetime | None = None
    ) -> BatchResult:
        """Take one partition's records (in offset order) to their outcomes, as one unit of work.

        Stops before the first record that is not yet due. Raises only when the store or the
        broker fails; then nothing after the last flush is done and the batch is read again.
        """
        (result,) = await self.process_poll([records], inputs_read_to=inputs_read_to)
        return result

    async def process_poll(
        self,
        partitions: Sequence[Sequence[KafkaRecord]],
        *,
        inputs_read_to: datetime | None = None,
    ) -> list[BatchResult]:
        """Several partitions' records as one unit of work: one read, one produce, one write.

        Each partition is taken in offset order, up to its first record not yet due. A timer
        is due only once the group's inputs are read up to its due time (`inputs_read_to`: the
        time the least-read input partition is read to; None when all are read to their end):
        a deadline never fires on the hub's own lag, before an answer given in time is read.
        Timers go last in a poll.
        """
        plans: list[tuple[list[_Read], int | None, datetime | None]] = []
        for records in partitions:
            reads: list[_Read] = []
            due: datetime | None = None
            resume_at = records[-1].offset + 1 if records else None
            for record in records:
                due = self._not_due_until(record, inputs_read_to)
                if due is not None:
                    resume_at = record.offset
                    break
                reads.append(self._read(record))
            plans.append((reads, resume_at, due))
        timers_last = sorted(
            range(len(plans)),
            key=lambda i: bool(partitions[i]) and partitions[i][0].topic in self._timers,
        )
        ordered = [read for i in timers_last for read in plans[i][0]]
        every = [read for read in ordered if not read.ignored]
        self.metrics.batch(len(every))
        work = UnitOfWork(self.service, self._store, self._sink)
        events = [identity for read in every if (identity := read.identity) is not None]
        # Retry records also take the rows of their hop (`_Read.chain_marks`).
        events += [mark for read in every if read.retry_of for mark in read.chain_marks or ()]
        await work.preload(
            events=events,
            keys={key for read in every for key in (read.key, read.state_key) if key is not None},
        )
        try:
            outcomes = iter(await self._process_all(ordered, work))
            outcomes_of = {i: tuple(next(outcomes) for _ in plans[i][0]) for i in timers_last}
            results = [
                BatchResult(outcomes_of[i], resume, due) for i, (_, resume, due) in enumerate(plans)
            ]
            await work.flush()
        except StaleBatchError:
            self.metrics.stale_unit()
            raise
        finally:
            # Counted as they happened, whether or not the poll is settled (as one at a time).
            self.metrics.flush()
        return results

    async def _process_all(self, reads: list[_Read], work: UnitOfWork) -> list[Outcome]:
        """The outcome of each read, in order; lanes of keys at once when the service allows."""
        limit = self.service.concurrency
        if limit <= 1 or len(reads) <= 1:
            return [await self._process(read, work) for read in reads]
        outcomes: list[Outcome] = [Outcome.IGNORED] * len(reads)
        lanes = deque(_lanes(reads))

        async def take_lanes() -> None:
            while lanes:
                for index in lanes.popleft():
                    outcomes[index] = await self._process(reads[index], work)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(limit, len(lanes))):
                    group.create_task(take_lanes())
        except ExceptionGroup as failed:
            # The first outage is what the caller acts on, as with one lane (the poll is read
            # again); the other lanes were cancelled and their work is not flushed.
            raise _first_leaf(failed) from None
        return outcomes

    def _not_due_until(
        self, record: KafkaRecord, inputs_read_to: datetime | None
    ) -> datetime | None:
        if record.topic not in self._scheduled:
            return None
        try:
            due = deadletter.due_at(record)
        except ValueError:
            return None  # an unreadable due time is judged, and dead-lettered, with the record
        if due is None:
            return None
        now = self._clock()
        if due > now:
            return due
        if inputs_read_to is not None and due > inputs_read_to and record.topic in self._timers:
            # Inputs written before the deadline are still unread (the hub is behind): look
            # again about when reading should have reached it, within bounds.
            behind = (due - inputs_read_to).total_seconds()
            return now + timedelta(
                seconds=min(max(behind, TIMER_RECHECK_MIN_S), TIMER_RECHECK_MAX_S)
            )
        return None

    def _read(self, record: KafkaRecord) -> _Read:
        """Read a record; never raises: whatever fails here makes the record a dead letter."""
        read = self._read_as_first(record)
        read.raw = record  # its position is spelled only for a retry record made of it
        if read.tier is not None:
            read.retry_of = deadletter.header(record.headers, deadletter.RETRY_OF)
        return read

    def _read_as_first(self, record: KafkaRecord) -> _Read:
        tier = self._tier_of.get(record.topic)
        if tier is None and record.topic in self._inputs and not _has_hub_headers(record.headers):
            # As its producer sent it (most records): its own origin, no history, no copy.
            return self._decode(record, None, 0, None)
        try:
            origin = deadletter.origin_of(record)
            attempts, first_failure = deadletter.previous_failure(record)
            deadletter.due_at(record)
        except Exception as error:  # noqa: BLE001 - any header the hub cannot read
            # Its dead letter goes where its input's would (a declared topic), and it keeps
            # the envelope it has, so that a retry record still releases its key's park.
            home = self._home_topic(self._input_of.get(record.topic, record.topic))
            original = replace(
                record, topic=home, headers=deadletter.original_headers(record.headers)
            )
            reason = UndecodableError(f"hub headers are unreadable: {error}")
            known: Envelope | None = None
            with contextlib.suppress(Exception):
                known = Envelope.from_headers(original.headers)
            return _Read(original, tier, 0, None, known, failure=reason)
        original = replace(
            record,
            topic=self._home_topic(origin.topic),
            partition=origin.partition,
            offset=origin.offset,
            timestamp_ms=origin.timestamp_ms,
            headers=deadletter.original_headers(record.headers),
        )
        return self._decode(original, tier, attempts, first_failure)

    def _decode(
        self,
        original: KafkaRecord,
        tier: int | None,
        attempts: int,
        first_failure: datetime | None,
    ) -> _Read:
        """The envelope and event of a record as first read; never raises (see `_read`)."""
        envelope: Envelope | None = None
        try:
            envelope, data = Envelope.from_record(original.headers, original.value)
            family = self._registry.family_of(envelope.type)
            if family is not None and family not in self.service.handlers:
                # Another service's event on a shared topic (a third of what dispatch reads):
                # its body is that service's to validate, so it costs no decoding here.
                return _Read(original, tier, attempts, first_failure, envelope, ignored=True)
            event = self._registry.decode(envelope.type, data)
            state_key = (
                self.service.state_key(event) if self.service.state_key else _text(original.key)
            )
        except PermanentError as error:
            return _Read(original, tier, attempts, first_failure, envelope, failure=error)
        except Exception as error:  # noqa: BLE001 - a reader's surprise is the record's fault
            # A decoder that chokes in a way nobody foresaw (RecursionError on deep JSON, a
            # digit limit) must not hold the partition: the record is what cannot be read.
            reason = UndecodableError(f"unreadable: {type(error).__name__}: {error}")
            reason.__cause__ = error
            return _Read(original, tier, attempts, first_failure, envelope, failure=reason)
        return _Read(original, tier, attempts, first_failure, envelope, event, state_key)

    async def _process(self, read: _Read, work: UnitOfWork) -> Outcome:
        started = time.perf_counter()
        record = read.original
        context: dict[str, object] = {
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "group": self.service.group,
        }  # fmt: skip
        if read.envelope is not None:
            context.update(ce_id=read.envelope.id, ce_type=read.envelope.type, case_id=read.key)
        token = bind_record(context)
        try:
            with tracing.record_span(
                group=self.service.group,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                envelope=read.envelope,
                traceparent=self._traceparent(read) if tracing.enabled() else None,
            ) as span:
                check_park = read.tier is None and self.service.ordered
                outcome = await self._run(read, work, check_park=check_park)
                self.counts[outcome] += 1
                seconds = time.perf_counter() - started
                self.metrics.handled(record.topic, outcome.value, seconds)
                tracing.set_outcome(span, outcome.value, failed=outcome is Outcome.DEAD_LETTERED)
                # A line per record processed or ignored cost a tenth of the hop's CPU, and
                # most of a group's records are one or the other; metrics count them.
                (log.debug if outcome in _ROUTINE else log.info)(
                    "message_handled", outcome=outcome.value, duration_ms=round(seconds * 1000, 2)
                )
        finally:
            unbind_record(token)
        return outcome

    def _home_topic(self, topic: str) -> str:
        # A replay without origin headers still belongs to this group's first input.
        return topic if topic in self._inputs else self.service.inputs[0]

    async def _run(self, read: _Read, work: UnitOfWork, *, check_park: bool) -> Outcome:
        original = read.original
        if read.ignored:
            await self._release_if_head(read, work)
            return Outcome.IGNORED
        if read.failure is not None or read.event is None or read.envelope is None:
            error = read.failure or UndecodableError("no event")
            failure = deadletter.Failure(
                error,
                stage_of(error, "decode"),
                read.attempts + 1,
                read.first_failure or self._clock(),
            )
            self._dead_letter(work, original, failure, handler_name="-", envelope=read.envelope)
            await self._release_if_head(read, work)
            return Outcome.DEAD_LETTERED
        if await self._is_duplicate(read, work, check_park=check_park):
            return Outcome.DUPLICATE
        key = read.key
        if check_park and key is not None:
            head = await work.park_head(key)
            if head is not None and await work.append_parked(key, original):
                log.info("message_parked", behind=head)
                return Outcome.PARKED
        # Read only when the service handles its family (see _read).
        handler = self.service.handlers[read.event.event_type]
        outcome = await self._attempt(read, handler, work)
        if outcome in {Outcome.PROCESSED, Outcome.DEAD_LETTERED}:
            await self._release_if_head(read, work)
        return outcome

    async def _is_duplicate(self, read: _Read, work: UnitOfWork, *, check_park: bool) -> bool:
        """Whether a decoded record was handled already, or is on its way in another copy."""
        envelope, key = read.envelope, read.key
        assert envelope is not None  # noqa: S101 - only decoded records get here
        if (marks := read.chain_marks) is not None:
            hop, itself = marks
            if await work.is_processed(hop) and not await work.is_processed(itself):
                # Its twin carries the chain (and the key's park): this copy only stops.
                log.info("duplicate_skipped", reason="a twin of this retry record was read")
                return True
            work.take(hop, itself)
        if await work.is_processed(EventId(envelope.source, envelope.id)):
            log.info("duplicate_skipped", reason="already processed")
            # Not from _release (a follower, neither checked for a park nor from a retry
            # topic): a parked copy of the key's head would start the release it is in again.
            if (
                (check_park or read.tier is not None)
                and key is not None
                and _is_head(await work.park_head(key), envelope)
            ):
                await self._release(key, work)
            return True
        if check_park and key is not None and _is_head(await work.park_head(key), envelope):
            log.info("duplicate_skipped", reason="already waiting in a retry topic")
            return True
        return False

    async def _release_if_head(self, read: _Read, work: UnitOfWork) -> None:
        """A retry record done with (handled or dead-lettered) lets its key's followers go."""
        key = read.key
        if read.tier is None or key is None or read.envelope is None:
            return
        if _is_head(await work.park_head(key), read.envelope):
            await self._release(key, work)

    async def _attempt(self, read: _Read, handler: Handler, work: UnitOfWork) -> Outcome:
        settings = self._settings
        tracker = _StageTracker()
        tries, error = 1, None
        try:
            # The common case pays nothing for the retry machinery (a fifth of a record's CPU
            # when every record went through tenacity).
            await self._handle(read, handler, tracker, work)
        except Exception as first:  # noqa: BLE001 - every failure is classified and routed below
            error = first
            # In-process attempts count against max_attempts like every other attempt.
            budget = min(settings.inline_attempts, settings.max_attempts - read.attempts)
            early = isinstance(first, EarlyEventError)
            if classify(first) is FailureClass.TRANSIENT and budget > 1 and not early:
                tries, error = await self._retry_inline(
                    read, handler, tracker, work, first_error=first, budget=budget
                )
        if error is None:
            return Outcome.PROCESSED
        failure = deadletter.Failure(
            error,
            stage_of(error, tracker.stage),
            read.attempts + tries,
            read.first_failure or self._clock(),
        )
        name = _handler_name(handler)
        if classify(error) is FailureClass.PERMANENT or failure.attempts >= settings.max_attempts:
            self._dead_letter(
                work, read.original, failure, handler_name=name, envelope=read.envelope
            )
            return Outcome.DEAD_LETTERED
        next_tier = 0 if read.tier is None else min(read.tier + 1, len(self._delays) - 1)
        self._schedule_retry(work, read, failure, next_tier, name)
        if isinstance(error, EarlyEventError):
            # Its key goes on (the cause is behind it); were it a park's head, its followers
            # go now.
            await self._release_if_head(read, work)
        elif read.key is not None and read.envelope is not None and self.service.ordered:
            # The unit produces the retry record before the park is stored: a park
            # without its head would wait forever.
            await work.park(read.key, _head_id(read.envelope))
            self.metrics.key_parked()
        return Outcome.RETRYING

    async def _retry_inline(
        self,
        read: _Read,
        handler: Handler,
        tracker: _StageTracker,
        work: UnitOfWork,
        *,
        first_error: Exception,
        budget: int,
    ) -> tuple[int, Exception | None]:
        """Retry a transient failure in process: (attempts made, the last error or None)."""
        settings = self._settings
        retrying = AsyncRetrying(
            stop=stop_after_attempt(budget) | stop_after_delay(settings.inline_deadline_s),
            wait=wait_exponential_jitter(
                multiplier=settings.inline_backoff_s, max=settings.inline_deadline_s
            ),
            retry=retry_if_exception(lambda error: classify(error) is FailureClass.TRANSIENT),
            reraise=True,
        )
        tries = 0
        try:
            async for attempt in retrying:
                with attempt:
                    tries += 1
                    if tries == 1:
                        # The attempt already made, replayed: tenacity counts it and waits.
                        raise first_error  # noqa: TRY301 - tenacity sees it as attempt one
                    await self._handle(read, handler, tracker, work)
        except Exception as error:  # noqa: BLE001 - the caller classifies and routes it
            return tries, error
        return tries, None

    async def _handle(
        self, read: _Read, handler: Handler, tracker: _StageTracker, work: UnitOfWork
    ) -> None:
        envelope, event, key = read.envelope, read.event, read.key
        if envelope is None or event is None:
            raise UndecodableError("no event")  # _run handles only decoded records
        tracker.stage = "handle"
        state = await work.state_of(read.state_key) if read.state_key is not None else None
        answer = handler(event, state, envelope.time)
        decision: Decision[Any] = (
            answer
            if isinstance(answer, Decision)  # most handlers are plain functions
            else await answer
            if inspect.isawaitable(answer)
            else answer
        )
        new_state = self.service.check_state(decision.state)
        tracker.stage = "publish"
        traceparent = self._traceparent(read)
        outputs = [self._render(emit, envelope, key, traceparent) for emit in decision.emits]
        self.metrics.emitted(emit.event.ce_type() for emit in decision.emits)
        # Rendered before anything is buffered: a bad output fails the attempt, not the batch.
        work.record_processed(
            EventId(envelope.source, envelope.id), outputs, key=read.state_key, state=new_state
        )

    def _traceparent(self, read: _Read) -> str | None:
        """The traceparent of this hop's outputs and span, derived once per record."""
        if read.hop is None and read.envelope is not None:
            read.hop = read.envelope.hop_traceparent(self.service.group)
        return read.hop

    def _render(
        self, emit: Emit, envelope: Envelope, key: str | None, traceparent: str | None
    ) -> OutRecord:
        out_key = emit.key if emit.key is not None else key
        topic, extra = self.service.topic_for(emit), cast("Headers", ())
        if emit.delay is not None:
            extra = ((deadletter.DUE_AT, (envelope.time + emit.delay).isoformat().encode()),)
        out = envelope.caused(
            event_id=derive_event_id(envelope.source, envelope.id, emit.role),
            source=self.service.source,
            type_=emit.event.ce_type(),
            dataschema=emit.event.dataschema(),
            subject=emit.subject or out_key,
            traceparent=traceparent or envelope.hop_traceparent(self.service.group),
        )
        return OutRecord(
            topic=topic,
            key=out_key.encode() if out_key is not None else None,
            value=emit.event.to_bytes(),
            headers=(*out.to_headers(), *extra),
        )

    async def _release(self, key: str, work: UnitOfWork) -> None:
        """Handle the followers of a released key in order, until one has to wait again."""
        released = 0
        while (parked := await work.next_parked(key)) is not None:
            read = self._read(parked.record)
            outcome = await self._run(read, work, check_park=False)
            await work.remove_parked(key, parked.seq)
            self.counts[outcome] += 1
            self.metrics.handled(read.original.topic, outcome.value)
            released += 1
            if (
                outcome is Outcome.RETRYING
                and read.envelope is not None
                and _is_head(await work.park_head(key), read.envelope)
            ):
                break  # that follower is the key's new head; the rest wait behind it
        self.metrics.key_released()
        log.info("park_released", key=key, released=released)

    def _schedule_retry(
        self,
        work: UnitOfWork,
        read: _Read,
        failure: deadletter.Failure,
        tier: int,
        handler_name: str,
    ) -> None:
        original = read.original
        delay: timedelta = self._delays[tier]
        topic = retry_topic(original.topic, self.service.group, delay)
        headers = self._failure_headers(
            original, failure, handler_name, read.envelope, due=self._clock() + delay
        )
        retry_of = ((deadletter.RETRY_OF, read.position.encode()),)
        work.send(OutRecord(topic, original.key, original.value, (*headers, *retry_of)))
        self.metrics.retry_scheduled(original.topic)
        log.warning(
            "message_retry_scheduled",
            retry_topic=topic,
            attempts=failure.attempts,
            error_class=type(failure.error).__name__,
            error_message=str(failure.error)[:300],
            stage=failure.stage,
        )

    def _dead_letter(
        self,
        work: UnitOfWork,
        original: KafkaRecord,
        failure: deadletter.Failure,
        *,
        handler_name: str,
        envelope: Envelope | None,
    ) -> None:
        topic = dead_letter_topic(original.topic, self.service.group)
        headers = self._failure_headers(original, failure, handler_name, envelope)
        work.send(OutRecord(topic, original.key, original.value, headers))
        self.metrics.dead_lettered(original.topic)
        log.warning(
            "message_dead_lettered",
            dead_letter_topic=topic,
            attempts=failure.attempts,
            error_class=type(failure.error).__name__,
            error_message=str(failure.error)[:300],
            stage=failure.stage,
        )

    def _failure_headers(
        self,
        original: KafkaRecord,
        failure: deadletter.Failure,
        handler_name: str,
        envelope: Envelope | None,
        due: datetime | None = None,
    ) -> Headers:
        origin = deadletter.Origin(
            original.topic, original.partition, original.offset, original.timestamp_ms
        )
        schema = (
            (envelope.dataschema or envelope.type)
            if envelope
            else deadletter.header(original.headers, "ce_type")
        )
        hub_headers = deadletter.failure_headers(
            origin=origin,
            group=self.service.group,
            handler=handler_name,
            failure=failure,
            code_version=self._settings.code_version,
            schema=schema,
            idempotency_key=envelope.id if envelope else None,
            due=due,
        )
        return original.headers + hub_headers


class UnitOfWork:
    """One batch's reads and writes: state carried in memory, outputs and inbox rows buffered.

    `flush` produces the buffered records (and waits for acks=all), then writes the inbox rows
    and states in one transaction. Park-by-key operations flush first and then go to the store
    at once, so that their order against produced records stays what a record at a time had.
    """

    def __init__(self, service: Service, store: StateStore, sink: RecordSink) -> None:
        self._service = service
        self._group = service.group
        self._store = store
        self._sink = sink
        self._processed: set[EventId] = set()
        self._checked: set[EventId] = set()
        self._known_keys: set[str] = set()
        self._states: dict[str, JsonObject | None] = {}
        # The version of every state this unit read (0: none stored). A flush commits only
        # while they are unchanged: after a rebalance, the partition's former owner may still
        # be deciding from the same keys, and one decision must not overwrite the other's.
        self._versions: dict[str, int] = {}
        # A key's state as this unit left it, typed: the next record of the key takes it as
        # is (state models are frozen), and it is dumped once, at the flush. A courier's
        # scorecard window validated and dumped per record cost 2 ms of every observation.
        self._carried: dict[str, BaseModel] = {}
        self._heads: dict[str, str | None] = {}
        self._outputs: list[OutRecord | None] = []
        # Where the latest buffered record of a key on a compacted topic sits: a later one
        # takes its place (None), as compaction would. The tracker emits a case's whole status
        # snapshot per event, and when it runs behind a poll holds many events of one case.
        self._latest: dict[tuple[str, bytes], int] = {}
        self._new_events: list[EventId] = []
        self._new_states: dict[str, BaseModel] = {}
        # Lanes flush concurrently: each flush takes outputs, inbox rows and states together,
        # so no inbox row is written before its outputs are acknowledged.
        self._flushing = asyncio.Lock()

    async def preload(self, *, events: Sequence[EventId], keys: set[str]) -> None:
        """Read what the batch needs in one store call."""
        if not events and not keys:
            return
        snapshot = await self._store.load_batch(self._group, events, keys)
        self._processed |= snapshot.processed
        self._checked |= set(events)
        self._known_keys |= keys
        self._states.update({key: snapshot.states.get(key) for key in keys})
        self._versions.update({key: snapshot.versions.get(key, 0) for key in keys})
        self._heads.update({key: snapshot.park_heads.get(key) for key in keys})

    async def is_processed(self, event: EventId) -> bool:
        """Whether `event` was processed, by this batch or before it."""
        if event in self._processed:
            return True
        if event in self._checked:
            return False  # looked up at preload, and this batch has not processed it since
        return await self._store.is_processed(self._group, event)

    async def load_state(self, key: str) -> JsonObject | None:
        """The key's state as this batch left it."""
        if key not in self._known_keys:
            snapshot = await self._store.load_batch(self._group, (), (key,))
            self._states[key] = snapshot.states.get(key)
            self._versions[key] = snapshot.versions.get(key, 0)
            self._known_keys.add(key)
        return self._states[key]

    async def state_of(self, key: str) -> BaseModel | None:
        """The key's typed state as this batch left it.

        A stored state that no longer validates raises InvalidStateError (the record's
        permanent failure).
        """
        carried = self._carried.get(key)
        if carried is not None:
            return carried
        return self._service.load_state(await self.load_state(key), key)

    async def park_head(self, key: str) -> str | None:
        """The event id `key` is parked behind, or None."""
        if key not in self._heads:
            self._heads[key] = await self._store.park_head(self._group, key)
        return self._heads[key]

    def send(self, record: OutRecord) -> None:
        """Buffer a record to produce at the next flush."""
        self._buffer((record,))

    def _buffer(self, records: Iterable[OutRecord]) -> None:
        for record in records:
            if record.key is not None and record.topic in COMPACTED:
                superseded = self._latest.get((record.topic, record.key))
                if superseded is not None:
                    self._outputs[superseded] = None
                self._latest[record.topic, record.key] = len(self._outputs)
            self._outputs.append(record)

    def record_processed(
        self,
        event: EventId,
        outputs: Sequence[OutRecord],
        *,
        key: str | None,
        state: BaseModel | None,
    ) -> None:
        """Buffer an event's outputs, its inbox row and its key's new state."""
        self._buffer(outputs)
        self.take(event)
        if key is not None and state is not None:
            self._carried[key] = state
            self._new_states[key] = state

    def take(self, *events: EventId) -> None:
        """Buffer the inbox rows of `events` not yet taken (alone: a retry record's marks)."""
        for event in events:
            if event not in self._processed:
                self._processed.add(event)
                self._new_events.append(event)

    async def park(self, key: str, head_event_id: str) -> None:
        """Park `key` behind `head_event_id`, after what is buffered is safe."""
        await self.flush()
        await self._store.park(self._group, key, head_event_id)
        self._heads[key] = head_event_id

    async def append_parked(self, key: str, record: KafkaRecord) -> bool:
        """Store `record` behind the park of `key`; False when the park is gone."""
        appended = await self._store.append_parked(self._group, key, record)
        if not appended:
            self._heads[key] = None  # released meanwhile (by another member, on a retry topic)
        return appended

    async def next_parked(self, key: str) -> ParkedRecord | None:
        """The oldest follower of `key`, once what is buffered is safe."""
        await self.flush()
        parked = await self._store.next_parked(self._group, key)
        if parked is None:
            self._heads[key] = None
        return parked

    async def remove_parked(self, key: str, seq: int) -> None:
        """Forget a follower, once its outcome is safe."""
        await self.flush()
        await self._store.remove_parked(self._group, key, seq)

    async def flush(self) -> None:
        """Produce the buffered records, then write inbox rows and states in one transaction.

        StaleBatchError, with nothing produced, when a state the unit read has changed.
        """
        async with self._flushing:
            outputs = [record for record in self._outputs if record is not None]
            self._outputs, self._latest = [], {}
            events, self._new_events = self._new_events, []
            states, self._new_states = self._new_states, {}
            documents = {key: self._dump(state) for key, state in states.items()}
            if not events:
                if outputs:
                    await self._sink.send(outputs)
                return

            async def publish() -> None:
                if outputs:
                    await self._sink.send(outputs)

            # A copy of the versions: lanes may read new keys while this flush waits.
            await self._store.commit_batch(
                self._group, events, documents, read_versions=dict(self._versions), publish=publish
            )
            for key in documents.keys() & self._versions.keys():
                self._versions[key] += 1

    def _dump(self, state: BaseModel) -> JsonObject:
        document = self._service.dump_state(state)
        assert document is not None  # noqa: S101 - a state model is declared (check_state)
        return document


def _lanes(reads: Sequence[_Read]) -> list[list[int]]:
    """Indexes of `reads` in lanes: reads sharing a record key, state key or event share one.

    Each lane keeps the reads' order; lanes are ordered by their first read.
    """
    parent: dict[int, int] = {}

    def root(index: int) -> int:
        while parent.get(index, index) != index:
            index = parent[index]
        return index

    owner: dict[tuple[str, object], int] = {}
    for index, read in enumerate(reads):
        for mark in (("key", read.key), ("state", read.state_key), ("event", read.identity)):
            if mark[1] is None:
                continue
            first = owner.setdefault(mark, index)
            if first != index:
                a, b = root(first), root(index)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    lanes: dict[int, list[int]] = {}
    for index in range(len(reads)):
        lanes.setdefault(root(index), []).append(index)
    return list(lanes.values())


def _first_leaf(group: BaseExceptionGroup[Exception]) -> Exception:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _head_id(envelope: Envelope) -> str:
    """How a park names the event it waits for: its identity, source and id."""
    return f"{envelope.source} {envelope.id}"


def _is_head(head: str | None, envelope: Envelope) -> bool:
    # A park written before heads carried the source names the bare id.
    return head is not None and head in {_head_id(envelope), envelope.id}


def _has_hub_headers(headers: Headers) -> bool:
    # A plain loop: any() over a generator costs twice as much, on every record read.
    for name, _ in headers:  # noqa: SIM110
        if name.startswith(deadletter.PREFIX):
            return True
    return False


_BINARY_KEY = "\ufffd"
"""Starts the text of a key that is not UTF-8 text, its bytes in hex after it."""


def _text(key: bytes | None) -> str | None:
    # One to one, so that two keys never share a state document or a park: a UTF-8 key is
    # itself unless it starts with the mark, and every other key is the mark and its hex.
    # The text is still stored and logged as it is (PostgreSQL takes no lone surrogates).
    if key is None:
        return None
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return _BINARY_KEY + key.hex()
    return _BINARY_KEY + key.hex() if text.startswith(_BINARY_KEY) else text


def _handler_name(handler: Handler) -> str:
    # A handler bound to its configuration (functools.partial) is named by its function.
    named = getattr(handler, "func", handler)
    return f"{getattr(named, '__module__', '?')}.{getattr(named, '__qualname__', repr(named))}"
