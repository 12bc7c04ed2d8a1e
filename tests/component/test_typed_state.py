"""Handlers get their key's state as the service's model; the kernel stores what they return."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from kernel_kit import EVENT_TIME, GROUP, Kernel, done_seqs, hub_headers, probe_record
from probe import ProbeState, ProbeV1

from hub.core.pipeline import Outcome
from hub.core.store.base import EventId

if TYPE_CHECKING:
    from datetime import datetime

    from hub.core.handler import Decision

P, X = Outcome.PROCESSED, Outcome.DEAD_LETTERED


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
