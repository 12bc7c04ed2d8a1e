"""Lanes: a group that calls partners handles several keys of one poll at once.

A slow or failing partner call must hold its own key, not every record of the poll behind it
(at scale, a serial poll let pickup acceptance deadlines expire). What must not change: each
key's records in offset order, one outcome per record, one effect per event, and no inbox row
written before its outputs are acknowledged.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from typing import TYPE_CHECKING

import pytest
from fakes import FakeClock, InMemorySink, InMemoryStateStore
from kernel_kit import (
    GROUP,
    INPUT,
    OUTPUT,
    Kernel,
    done_seqs,
    header_map,
    probe_record,
)
from probe import FaultPlan, ProbeDoneV1, ProbeState, ProbeV1, probe_service
from prometheus_client import REGISTRY

from hub.core.envelope import derive_event_id
from hub.core.errors import TransientError
from hub.core.handler import Decision, Emit
from hub.core.pipeline import Outcome
from hub.core.store.base import StaleBatchError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from hub.core.handler import Service
    from hub.core.outbound import OutRecord
    from hub.core.store.base import EventId, JsonObject

P, D, R = Outcome.PROCESSED, Outcome.DUPLICATE, Outcome.RETRYING
WITHIN_S = 2.0
"""A poll that waits longer than this is stuck (a lane waits on another it is queued behind)."""


@dataclasses.dataclass
class Partner:
    """An async handler calling a partner: each seq may wait for a gate or sleep first."""

    gates: dict[int, asyncio.Event] = dataclasses.field(default_factory=dict)
    delays: dict[int, float] = dataclasses.field(default_factory=dict)
    started: list[int] = dataclasses.field(default_factory=list)
    answered: list[int] = dataclasses.field(default_factory=list)
    opens: set[int] = dataclasses.field(default_factory=set)
    """Seqs whose answer opens every gate."""

    async def call(
        self, event: ProbeV1, state: ProbeState | None, _at: datetime
    ) -> Decision[ProbeState]:
        seq = event.seq
        self.started.append(seq)
        if seq in self.gates:
            await self.gates[seq].wait()
        await asyncio.sleep(self.delays.get(seq, 0))
        self.answered.append(seq)
        if seq in self.opens:
            for gate in self.gates.values():
                gate.set()
        count = (state.handled if state is not None else 0) + 1
        return Decision(
            emits=(Emit(role="done", event=ProbeDoneV1(seq=seq, handled_count=count)),),
            state=ProbeState(handled=count, last_seq=seq),
        )


def lanes_kernel(
    partner: Partner,
    *,
    concurrency: int,
    store: InMemoryStateStore | None = None,
    sink: InMemorySink | None = None,
) -> Kernel:
    plan = FaultPlan()
    service = dataclasses.replace(
        probe_service(GROUP, INPUT, OUTPUT, plan),
        handlers={ProbeV1.event_type: partner.call},
        concurrency=concurrency,
    )
    kernel = Kernel(plan=plan, service=service, sink=sink or InMemorySink())
    if store is not None:
        kernel.store = kernel.pipeline._store = store
    return kernel


def stale_units() -> float:
    return REGISTRY.get_sample_value("hub_stale_units_total", {"group": GROUP}) or 0.0


def by_key(records: Sequence[OutRecord]) -> dict[bytes | None, list[int]]:
    seqs: dict[bytes | None, list[int]] = defaultdict(list)
    for record in records:
        seqs[record.key].append(ProbeDoneV1.model_validate_json(record.value or b"").seq)
    return dict(seqs)


async def test_a_slow_partner_call_holds_its_own_key_not_the_poll() -> None:
    # The first record's call answers only once the second's has: one record at a time, the
    # poll would never end.
    partner = Partner(gates={1: asyncio.Event()}, opens={2})
    kernel = lanes_kernel(partner, concurrency=4)
    records = [probe_record(0, 1, key=b"case-a"), probe_record(1, 2, key=b"case-b")]

    result = await asyncio.wait_for(kernel.feed(records), WITHIN_S)

    assert result.outcomes == (P, P)
    assert result.resume_at == 2
    assert partner.started == [1, 2]
    assert partner.answered == [2, 1]
    assert done_seqs(kernel.outputs()) == [2, 1]


async def test_one_lane_is_one_record_at_a_time() -> None:
    partner = Partner(gates={1: asyncio.Event()}, opens={2})
    kernel = lanes_kernel(partner, concurrency=1)
    records = [probe_record(0, 1, key=b"case-a"), probe_record(1, 2, key=b"case-b")]

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(kernel.feed(records), 0.2)
    assert partner.started == [1]


async def test_each_key_keeps_its_order_while_keys_overlap() -> None:
    partner = Partner(delays={1: 0.05, 2: 0.01, 5: 0.02})
    kernel = lanes_kernel(partner, concurrency=8)
    keys = [b"case-a", b"case-b", b"case-a", b"case-c", b"case-b", b"case-a"]
    records = [probe_record(offset, offset + 1, key=key) for offset, key in enumerate(keys)]

    result = await kernel.feed(records)

    assert result.outcomes == (P,) * 6
    assert by_key(kernel.outputs()) == {b"case-a": [1, 3, 6], b"case-b": [2, 5], b"case-c": [4]}
    # The keys overlapped: case-c answered before case-a's first call did.
    assert partner.answered.index(4) < partner.answered.index(1)
    counts = [
        ProbeDoneV1.model_validate_json(r.value or b"").handled_count
        for r in kernel.outputs()
        if r.key == b"case-a"
    ]
    assert counts == [1, 2, 3]  # each read the state its key's previous record left
    assert len(kernel.store.processed(GROUP)) == 6


async def test_one_event_twice_in_a_poll_under_two_keys_has_one_effect() -> None:
    # A partner that re-sent an event with another key: the inbox check must see the first.
    partner = Partner(delays={1: 0.02})
    kernel = lanes_kernel(partner, concurrency=4)
    records = [
        probe_record(0, 1, key=b"case-a", event_id="evt-same"),
        probe_record(1, 1, key=b"case-b", event_id="evt-same"),
    ]

    result = await kernel.feed(records)

    assert result.outcomes == (P, D)
    assert len(kernel.outputs()) == 1
    assert partner.started == [1]


async def test_an_outage_in_one_lane_fails_the_poll_with_its_own_error() -> None:
    # Lane a's failure parks its key; the store is down then. The caller sees the outage
    # itself (it pauses the partition and reads the poll again), not a group of errors.
    partner = Partner(delays={2: 0.05})
    kernel = lanes_kernel(partner, concurrency=4)
    kernel.pipeline.service = failing_first_call(kernel, partner)
    kernel.store.faults.fail_next("park")
    records = [probe_record(0, 1, key=b"case-a"), probe_record(1, 2, key=b"case-b")]

    with pytest.raises(ConnectionError):
        await kernel.feed(records)

    assert not kernel.store.processed(GROUP)
    assert kernel.outputs() == []
    assert await kernel.store.park_head(GROUP, "case-a") is None


class SlowSink(InMemorySink):
    """Acknowledges a send only after a while, as acks=all does."""

    async def send(self, records: Sequence[OutRecord]) -> None:
        await asyncio.sleep(0.02)
        await super().send(records)


class WatchingStore(InMemoryStateStore):
    """Fails the test when an inbox row is written before the event's output was acknowledged."""

    def __init__(self, clock: FakeClock, sink: InMemorySink) -> None:
        super().__init__(clock)
        self.sink = sink
        self.early_rows: list[str] = []

    def _commit(
        self,
        group: str,
        events: Sequence[EventId],
        states: Mapping[str, JsonObject],
        read_versions: Mapping[str, int] | None = None,
    ) -> None:
        sent = {header_map(record)["ce_id"] for record in self.sink.records}
        self.early_rows += [
            e.id for e in events if derive_event_id(e.source, e.id, "done") not in sent
        ]
        super()._commit(group, events, states, read_versions)


async def test_no_inbox_row_is_written_before_its_outputs_are_acknowledged() -> None:
    # Lane a parks its key (a flush, waiting for acks) while lane b handles its record: b's
    # inbox row must wait for b's output, not go with a's flush.
    sink = SlowSink()
    clock = FakeClock()
    store = WatchingStore(clock, sink)
    partner = Partner()
    kernel = lanes_kernel(partner, concurrency=4, store=store, sink=sink)
    kernel.pipeline.service = failing_first_call(kernel, partner)
    records = [probe_record(0, 1, key=b"case-a"), probe_record(1, 2, key=b"case-b")]

    result = await kernel.feed(records)

    assert result.outcomes == (R, P)
    assert store.early_rows == []
    assert done_seqs(kernel.outputs()) == [2]
    assert kernel.pipeline.counts[R] == 1


def failing_first_call(kernel: Kernel, partner: Partner) -> Service:
    """The kernel's service, its partner timing out once on seq 1."""
    failed: set[int] = set()

    async def call(event: ProbeV1, state: ProbeState | None, at: datetime) -> Decision[ProbeState]:
        if event.seq == 1 and not failed:
            failed.add(1)
            raise TransientError("courier API timed out")
        return await partner.call(event, state, at)

    return dataclasses.replace(kernel.pipeline.service, handlers={ProbeV1.event_type: call})


async def test_a_group_without_key_order_lets_a_key_go_on_past_a_failure() -> None:
    # notify-sender: each notification stands alone, so a failed one holds no other and
    # costs no park (a store write per follower).
    plan = FaultPlan()
    service = dataclasses.replace(probe_service(GROUP, INPUT, OUTPUT, plan), ordered=False)
    kernel = Kernel(plan=plan, service=service)
    plan.transient[1] = 1
    records = [probe_record(0, 1), probe_record(1, 2), probe_record(2, 3)]

    assert (await kernel.feed(records)).outcomes == (R, P, P)
    assert await kernel.store.park_head(GROUP, "case-1") is None
    assert kernel.store.faults.calls["append_parked"] == 0
    assert await kernel.drain_retries() == [P]
    assert done_seqs(kernel.outputs()) == [2, 3, 1]
    assert len(kernel.store.handled(GROUP)) == 3


async def test_an_ordered_group_parks_the_key_behind_a_failure() -> None:
    plan = FaultPlan()
    kernel = Kernel(plan=plan)
    plan.transient[1] = 1
    records = [probe_record(0, 1), probe_record(1, 2), probe_record(2, 3)]

    assert (await kernel.feed(records)).outcomes == (R, Outcome.PARKED, Outcome.PARKED)
    assert await kernel.drain_retries() == [P]
    assert done_seqs(kernel.outputs()) == [1, 2, 3]


async def test_a_former_owner_deciding_from_an_old_state_sends_nothing_and_decides_again() -> None:
    # A rebalance hands the partition over while its former owner is deciding: the new owner
    # handles the key's next record from the same stored state. The former owner's decision
    # must neither go out nor overwrite the new owner's state (a pickup offered twice).
    store = InMemoryStateStore(FakeClock())
    gate = asyncio.Event()
    slow = Partner(gates={1: gate})
    former = lanes_kernel(slow, concurrency=1, store=store)
    new_owner = lanes_kernel(Partner(), concurrency=1, store=store)
    deciding = asyncio.create_task(former.feed([probe_record(0, 1, key=b"case-a")]))
    while slow.started != [1]:  # noqa: ASYNC110 - the partner records calls, it has no event
        await asyncio.sleep(0)

    assert (await new_owner.feed([probe_record(1, 2, key=b"case-a")])).outcomes == (P,)
    stale_before = stale_units()
    gate.set()
    with pytest.raises(StaleBatchError, match="changed since the batch read them: case-a"):
        await deciding
    assert former.outputs() == []
    assert stale_units() == stale_before + 1  # what an operator sees of it

    # Read again (as the adapter does after a failed poll), it decides from the new state.
    assert (await former.feed([probe_record(0, 1, key=b"case-a")])).outcomes == (P,)
    done = [ProbeDoneV1.model_validate_json(r.value or b"") for r in former.outputs()]
    assert [(d.seq, d.handled_count) for d in done] == [(1, 2)]
    assert (await store.load_state(GROUP, "case-a")) == {"handled": 2, "last_seq": 1}
