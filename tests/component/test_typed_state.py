"""Handlers get their key's state as the service's model; the kernel stores what they return."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from kernel_kit import EVENT_TIME, GROUP, Kernel, done_seqs, hub_headers, probe_record
from probe import ProbeDoneV1, ProbeState, ProbeV1

from hub.core.pipeline import Outcome
from hub.core.store.base import EventId

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    import pytest

    from hub.core.handler import Decision
    from hub.core.outbound import OutRecord

P, X = Outcome.PROCESSED, Outcome.DEAD_LETTERED
T = TypeVar("T")


async def test_a_handler_receives_its_key_state_as_the_declared_model_and_the_input_time() -> None:
    kernel = Kernel()
    calls: list[tuple[ProbeState | None, datetime]] = []

    def handle(event: ProbeV1, state: ProbeState | None, at: datetime) -> Decision[ProbeState]:
        calls.append((state, at))
        return kernel.plan.handle(event, state, at)

    service = kernel.pipeline.service
    kernel = Kernel(service=replace(service, handlers={ProbeV1.event_type: handle}))
    # Two batches: the second state comes from the store, the first from nothing.
    assert (await kernel.feed([probe_record(0, 1)])).outcomes == (P,)
    assert (await kernel.feed([probe_record(1, 2)])).outcomes == (P,)
    assert calls == [(None, EVENT_TIME), (ProbeState(handled=1, last_seq=1), EVENT_TIME)]
    # Stored as the model's JSON, fields in model order.
    assert kernel.store.state(GROUP, "case-1") == {"handled": 2, "last_seq": 2}
    assert list(kernel.store.state(GROUP, "case-1") or {}) == ["handled", "last_seq"]


async def test_a_stored_state_that_no_longer_validates_is_dead_lettered_with_its_message() -> None:
    kernel = Kernel()
    # Written by an older model: `handled` was a word then.
    old = {"handled": "many", "last_seq": 1}
    await kernel.store.record_processed(GROUP, EventId("urn:old", "e0"), key="case-1", state=old)
    result = await kernel.feed(
        [probe_record(0, 1), probe_record(1, 2, key=b"case-2"), probe_record(2, 3)]
    )
    # The partition goes on: the other key is handled, and the bad key fails each time.
    assert result.outcomes == (X, P, X)
    assert kernel.plan.seen == [2]  # the handler never saw the state it could not read
    assert done_seqs(kernel.outputs()) == [2]
    first, second = (hub_headers(dead) for dead in kernel.dead_letters())
    assert first["x-hub-error-class"] == "hub.core.errors.InvalidStateError"
    assert first["x-hub-error-stage"] == "handle"
    assert first["x-hub-attempts"] == "1"  # permanent: no retry tier
    message = first["x-hub-error-message"]
    assert message.startswith("the probe state of case-1 no longer validates: 1 validation error")
    assert "handled\n  Input should be a valid integer" in message
    assert second["x-hub-error-fingerprint"] == first["x-hub-error-fingerprint"]
    assert kernel.store.state(GROUP, "case-1") == old  # left as it was, to fix and replay


async def test_one_batch_carries_a_key_state_typed_and_writes_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = Kernel()
    service = kernel.pipeline.service
    loads: list[object] = []
    dumps: list[object] = []
    monkeypatch.setattr(
        type(service), "load_state", counting(type(service).load_state, loads), raising=True
    )
    monkeypatch.setattr(
        type(service), "dump_state", counting(type(service).dump_state, dumps), raising=True
    )
    records = [probe_record(offset, offset + 1) for offset in range(5)]

    assert (await kernel.feed(records)).outcomes == (P,) * 5

    # Read from the store once, then handed from record to record; written once, the last.
    assert (len(loads), len(dumps)) == (1, 1)
    assert [o.handled_count for o in map(done, kernel.outputs())] == [1, 2, 3, 4, 5]
    assert kernel.store.state(GROUP, "case-1") == {"handled": 5, "last_seq": 5}


async def test_a_state_of_another_model_is_that_record_s_permanent_failure() -> None:
    kernel = Kernel()

    def handle(event: ProbeV1, state: ProbeState | None, at: datetime) -> Decision[ProbeState]:
        decision = kernel.plan.handle(event, state, at)
        if event.seq == 2:
            return replace(decision, state=ProbeDoneV1(seq=2, handled_count=0))  # type: ignore[arg-type]
        return decision

    kernel.pipeline.service = replace(
        kernel.pipeline.service, handlers={ProbeV1.event_type: handle}
    )
    result = await kernel.feed([probe_record(0, 1), probe_record(1, 2), probe_record(2, 3)])

    assert result.outcomes == (P, X, P)
    (dead,) = kernel.dead_letters()
    headers = hub_headers(dead)
    assert headers["x-hub-error-class"] == "hub.core.errors.InvalidStateError"
    assert (
        headers["x-hub-error-message"] == "probe returned a ProbeDoneV1 state, not its state model"
    )
    assert kernel.store.state(GROUP, "case-1") == {"handled": 2, "last_seq": 3}


def counting(method: Callable[..., T], calls: list[object]) -> Callable[..., T]:
    def counted(*args: object, **kwargs: object) -> T:
        calls.append(args)
        return method(*args, **kwargs)

    return counted


def done(record: OutRecord) -> ProbeDoneV1:
    return ProbeDoneV1.model_validate_json(record.value or b"")
