"""One record in, one outcome out: decode, deduplicate, park, handle, publish, retry or dead-letter.

Transport-free: the FastStream adapter (`hub.core.service`) feeds records and commits offsets.
"""

from __future__ import annotations

import inspect
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, cast

import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from hub.core import deadletter
from hub.core.envelope import Envelope, derive_event_id
from hub.core.errors import FailureClass, PermanentError, Stage, classify, stage_of
from hub.core.handler import Decision, Emit, Handler, Incoming, Service
from hub.core.outbound import OutRecord, RecordSink
from hub.core.topics import dead_letter_topic, replay_topic, retry_topic, timer_topic

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.registry import Event, Registry
    from hub.core.settings import HubSettings
    from hub.core.store.base import Headers, KafkaRecord, StateStore

log = structlog.get_logger(__name__)


class Outcome(StrEnum):
    """What became of one record; offsets may be committed after every outcome but NOT_DUE."""

    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    PARKED = "parked"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"
    NOT_DUE = "not_due"


@dataclass(frozen=True, slots=True)
class Verdict:
    """An outcome, and for NOT_DUE the time the record becomes due."""

    outcome: Outcome
    due: datetime | None = None


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
        # Records on these topics carry a due time and wait for it.
        self._scheduled = {*self._tier_of, *service.timer_topics}
        self.counts: Counter[Outcome] = Counter()

    @property
    def topics(self) -> list[str]:
        """Every topic the group reads: inputs, their retry tiers, and its replay topic."""
        return [*self.service.all_inputs, *self._tier_of, replay_topic(self.service.group)]

    async def process(self, record: KafkaRecord) -> Verdict:
        """Take one record to an outcome; raises only when even dead-lettering failed."""
        started = time.perf_counter()
        # What the last record bound once it was read must not describe this one's failures.
        structlog.contextvars.unbind_contextvars("ce_id", "ce_type", "case_id")
        with structlog.contextvars.bound_contextvars(
            topic=record.topic, partition=record.partition, offset=record.offset
        ):
            tier = self._tier_of.get(record.topic)
            due = deadletter.due_at(record) if record.topic in self._scheduled else None
            if due is not None and due > self._clock():
                return Verdict(Outcome.NOT_DUE, due)
            origin = deadletter.origin_of(record)
            original = replace(
                record,
                topic=self._home_topic(origin.topic),
                partition=origin.partition,
                offset=origin.offset,
                timestamp_ms=origin.timestamp_ms,
                headers=deadletter.original_headers(record.headers),
            )
            attempts, first_failure = deadletter.previous_failure(record)
            with structlog.contextvars.bound_contextvars(group=self.service.group):
                outcome = await self._run(
                    original,
                    tier=tier,
                    attempts=attempts,
                    first_failure=first_failure,
                    check_park=tier is None,
                )
                self.counts[outcome] += 1
                log.info(
                    "message_handled",
                    outcome=outcome.value,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
        return Verdict(outcome)

    def _home_topic(self, topic: str) -> str:
        # A replay without origin headers still belongs to this group's first input.
        return topic if topic in self.service.all_inputs else self.service.inputs[0]

    async def _run(
        self,
        original: KafkaRecord,
        *,
        tier: int | None,
        attempts: int,
        first_failure: datetime | None,
        check_park: bool,
    ) -> Outcome:
        group = self.service.group
        try:
            envelope = Envelope.from_headers(original.headers)
            structlog.contextvars.bind_contextvars(ce_id=envelope.id, ce_type=envelope.type)
            event = self._registry.decode(envelope.type, original.value or b"")
        except PermanentError as error:
            failure = deadletter.Failure(
                error, error.stage, attempts + 1, first_failure or self._clock()
            )
            await self._dead_letter(original, failure, handler_name="-")
            return Outcome.DEAD_LETTERED

        key = original.key.decode(errors="replace") if original.key is not None else None
        structlog.contextvars.bind_contextvars(case_id=key)
        handler = self.service.handlers.get(event.event_type)
        if handler is None:
            return Outcome.IGNORED
        if await self._store.is_processed(group, envelope.id):
            log.info("duplicate_skipped", reason="already processed")
            if key is not None and await self._store.park_head(group, key) == envelope.id:
                await self._release(key)
            return Outcome.DUPLICATE
        if check_park and key is not None:
            head = await self._store.park_head(group, key)
            if head == envelope.id:
                log.info("duplicate_skipped", reason="already waiting in a retry topic")
                return Outcome.DUPLICATE
            if head is not None and await self._store.append_parked(group, key, original):
                log.info("message_parked", behind=head)
                return Outcome.PARKED

        outcome = await self._attempt(
            original=original,
            envelope=envelope,
            event=event,
            key=key,
            handler=handler,
            tier=tier,
            attempts=attempts,
            first_failure=first_failure,
        )
        if (
            outcome in {Outcome.PROCESSED, Outcome.DEAD_LETTERED}
            and key is not None
            and tier is not None
            and await self._store.park_head(group, key) == envelope.id
        ):
            await self._release(key)
        return outcome

    async def _attempt(
        self,
        *,
        original: KafkaRecord,
        envelope: Envelope,
        event: Event,
        key: str | None,
        handler: Handler,
        tier: int | None,
        attempts: int,
        first_failure: datetime | None,
    ) -> Outcome:
        settings = self._settings
        tracker = _StageTracker()
        tries = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.inline_attempts)
            | stop_after_delay(settings.inline_deadline_s),
            wait=wait_exponential_jitter(
                multiplier=settings.inline_backoff_s, max=settings.inline_deadline_s
            ),
            retry=retry_if_exception(lambda error: classify(error) is FailureClass.TRANSIENT),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    tries += 1
                    await self._handle(envelope, event, key, handler, tracker)
        except Exception as error:  # noqa: BLE001 - every failure is classified and routed below
            failure = deadletter.Failure(
                error,
                stage_of(error, tracker.stage),
                attempts + tries,
                first_failure or self._clock(),
            )
            name = _handler_name(handler)
            if (
                classify(error) is FailureClass.PERMANENT
                or failure.attempts >= settings.max_attempts
            ):
                await self._dead_letter(original, failure, handler_name=name, envelope=envelope)
                return Outcome.DEAD_LETTERED
            next_tier = 0 if tier is None else min(tier + 1, len(self._delays) - 1)
            await self._schedule_retry(original, failure, next_tier, name, envelope)
            if key is not None:
                # Only after the retry record is safe: a park without its head would wait forever.
                await self._store.park(self.service.group, key, envelope.id)
            return Outcome.RETRYING
        return Outcome.PROCESSED

    async def _handle(
        self,
        envelope: Envelope,
        event: Event,
        key: str | None,
        handler: Handler,
        tracker: _StageTracker,
    ) -> None:
        group = self.service.group
        tracker.stage = "handle"
        state_key = self.service.state_key(event) if self.service.state_key else key
        state = await self._store.load_state(group, state_key) if state_key is not None else None
        answer = handler(Incoming(event=event, envelope=envelope, key=key, state=state))
        decision: Decision = await answer if inspect.isawaitable(answer) else answer
        tracker.stage = "publish"
        await self._sink.send([self._render(emit, envelope, key) for emit in decision.emits])
        await self._store.record_processed(group, envelope.id, key=state_key, state=decision.state)

    def _render(self, emit: Emit, envelope: Envelope, key: str | None) -> OutRecord:
        out_key = emit.key if emit.key is not None else key
        topic, extra = emit.topic, cast("Headers", ())
        if emit.delay is not None:
            if emit.delay not in self.service.timers:
                raise ValueError(f"{self.service.group} declares no timer of {emit.delay}")
            topic = timer_topic(self.service.group, emit.delay)
            extra = ((deadletter.DUE_AT, (envelope.time + emit.delay).isoformat().encode()),)
        out = envelope.caused(
            event_id=derive_event_id(envelope.id, emit.role),
            source=self.service.source,
            type_=emit.event.ce_type(),
            dataschema=emit.event.dataschema(),
            subject=emit.subject or out_key,
        )
        return OutRecord(
            topic=topic,
            key=out_key.encode() if out_key is not None else None,
            value=emit.event.to_bytes(),
            headers=(*out.to_headers(), *extra),
        )

    async def _release(self, key: str) -> None:
        """Handle the followers of a released key in order, until one has to wait again."""
        group = self.service.group
        released = 0
        while (parked := await self._store.next_parked(group, key)) is not None:
            outcome = await self._run(
                parked.record, tier=None, attempts=0, first_failure=None, check_park=False
            )
            await self._store.remove_parked(group, key, parked.seq)
            self.counts[outcome] += 1
            released += 1
            if outcome is Outcome.RETRYING:
                break  # that follower is the key's new head; the rest wait behind it
        log.info("park_released", key=key, released=released)

    async def _schedule_retry(
        self,
        original: KafkaRecord,
        failure: deadletter.Failure,
        tier: int,
        handler_name: str,
        envelope: Envelope,
    ) -> None:
        delay: timedelta = self._delays[tier]
        topic = retry_topic(original.topic, self.service.group, delay)
        headers = self._failure_headers(
            original, failure, handler_name, envelope, due=self._clock() + delay
        )
        await self._sink.send([OutRecord(topic, original.key, original.value, headers)])
        log.warning(
            "message_retry_scheduled",
            retry_topic=topic,
            attempts=failure.attempts,
            error_class=type(failure.error).__name__,
            error_message=str(failure.error)[:300],
            stage=failure.stage,
        )

    async def _dead_letter(
        self,
        original: KafkaRecord,
        failure: deadletter.Failure,
        *,
        handler_name: str,
        envelope: Envelope | None = None,
    ) -> None:
        topic = dead_letter_topic(original.topic, self.service.group)
        headers = self._failure_headers(original, failure, handler_name, envelope)
        await self._sink.send([OutRecord(topic, original.key, original.value, headers)])
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


def _handler_name(handler: Handler) -> str:
    return (
        f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', repr(handler))}"
    )
