"""A deadline fires on the partner's time, not on the hub's lag: timers wait for unread inputs.

The pipeline on in-memory ports with the deadline service of tests/support/deadline.py: asked,
the answer due within two minutes, judged when the timer comes back.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from deadline import REGISTRY, AnsweredV1, AskedV1, JudgedV1, deadline_service
from fakes import FakeClock, InMemorySink, InMemoryStateStore
from kernel_kit import as_read, event_record, kernel_settings

from hub.core import deadletter
from hub.core.pipeline import TIMER_RECHECK_MAX_S, TIMER_RECHECK_MIN_S, Outcome, Pipeline
from hub.core.store.base import KafkaRecord
from hub.core.topics import retry_topic, timer_topic

GROUP, INPUT, OUTPUT = "deadline", "test.deadline", "test.deadline-judged"
DEADLINE = timedelta(minutes=2)
TIMERS = timer_topic(GROUP, DEADLINE)


def deadline_pipeline() -> tuple[Pipeline, InMemorySink, FakeClock]:
    clock = FakeClock()
    sink = InMemorySink()
    pipeline = Pipeline(
        deadline_service(GROUP, INPUT, OUTPUT, DEADLINE),
        registry=REGISTRY,
        store=InMemoryStateStore(clock),
        sink=sink,
        settings=kernel_settings(),
        clock=clock,
    )
    return pipeline, sink, clock


async def asked(pipeline: Pipeline, sink: InMemorySink) -> tuple[KafkaRecord, datetime]:
    """Ask for case-1's answer; returns its timer as the group reads it back, and its due time."""
    ask = event_record(0, AskedV1(case_id="case-1"), key=b"case-1")
    assert (await pipeline.process_batch([ask])).outcomes == (Outcome.PROCESSED,)
    (timer,) = sink.on(TIMERS)
    due = deadletter.due_at(as_read(timer, offset=0))
    assert due is not None
    return as_read(timer, offset=0), due


def judged(sink: InMemorySink) -> list[bool]:
    return [JudgedV1.model_validate_json(r.value or b"").answered for r in sink.on(OUTPUT)]


async def test_a_due_timer_waits_while_inputs_before_its_deadline_are_unread() -> None:
    pipeline, sink, clock = deadline_pipeline()
    timer, due = await asked(pipeline, sink)
    clock.now = due + timedelta(minutes=1)  # the hub fell a minute behind

    held = await pipeline.process_batch([timer], inputs_read_to=due - timedelta(seconds=30))

    assert (held.outcomes, held.resume_at) == ((), 0)
    assert held.due is not None
    # Looked at again about when reading should reach the deadline (30 s), within bounds.
    assert held.due - clock.now == timedelta(seconds=TIMER_RECHECK_MAX_S)
    assert judged(sink) == []

    # Inputs read past the deadline (or all of them): now it fires, and nothing was answered.
    fired = await pipeline.process_batch([timer], inputs_read_to=due + timedelta(seconds=1))
    assert (fired.outcomes, fired.resume_at, fired.due) == ((Outcome.PROCESSED,), 1, None)
    assert judged(sink) == [False]


async def test_a_timer_held_just_short_of_its_deadline_is_looked_at_again_soon() -> None:
    pipeline, sink, clock = deadline_pipeline()
    timer, due = await asked(pipeline, sink)
    clock.now = due

    held = await pipeline.process_batch([timer], inputs_read_to=due - timedelta(milliseconds=10))

    assert held.due is not None
    assert held.due - clock.now == timedelta(seconds=TIMER_RECHECK_MIN_S)


async def test_an_answer_read_in_the_same_poll_as_its_deadline_is_judged_first() -> None:
    pipeline, sink, clock = deadline_pipeline()
    timer, due = await asked(pipeline, sink)
    clock.now = due
    answer = event_record(1, AnsweredV1(case_id="case-1"), key=b"case-1")

    # The timer's partition comes first in the poll; its inputs are all read (None).
    timer_result, answer_result = await pipeline.process_poll([[timer], [answer]])

    assert timer_result.outcomes == answer_result.outcomes == (Outcome.PROCESSED,)
    assert judged(sink) == [True]


async def test_a_timer_fires_on_the_clock_when_every_input_is_read() -> None:
    pipeline, sink, clock = deadline_pipeline()
    timer, due = await asked(pipeline, sink)
    clock.now = due - timedelta(seconds=1)

    early = await pipeline.process_batch([timer])
    assert (early.outcomes, early.due) == ((), due)

    clock.now = due
    assert (await pipeline.process_batch([timer])).outcomes == (Outcome.PROCESSED,)
    assert judged(sink) == [False]


async def test_a_retry_waits_for_its_delay_only_never_for_unread_inputs() -> None:
    pipeline, _, clock = deadline_pipeline()
    tier = retry_topic(INPUT, GROUP, timedelta(seconds=10))
    answer = event_record(5, AnsweredV1(case_id="case-2"), key=b"case-2")
    retry = KafkaRecord(
        tier, 0, 0, answer.timestamp_ms, answer.key, answer.value,
        (*answer.headers, ("x-hub-due-at", clock.now.isoformat().encode())),
    )  # fmt: skip

    result = await pipeline.process_batch([retry], inputs_read_to=clock.now - timedelta(hours=1))

    assert (result.outcomes, result.due) == ((Outcome.PROCESSED,), None)
