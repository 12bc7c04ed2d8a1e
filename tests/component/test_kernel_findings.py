"""Kernel defects found by the component tier, each pinned by a test.

A defect still open is `xfail(strict=True)`, its reason saying where and why: the suite stays
green while it is there and turns red the day it is fixed, so that the mark goes and the test
guards the fix. The first six were fixed on main (105a292), then the recursion of a parked
copy of a key's head, and last the three that stayed open longest (output ids derived from the
input id alone, key text that was not one to one, two retry chains of one event). Each test
now guards its fix; none is open today.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from kernel_kit import (
    GROUP,
    INPUT,
    OUTPUT,
    SOURCE,
    Kernel,
    event_record,
    hub_headers,
    kernel_settings,
    probe_record,
)
from probe import ProbeDoneV1, ProbeV1

from hub.core.errors import DomainRejectionError
from hub.core.handler import Decision, Service
from hub.core.pipeline import Outcome, Pipeline
from hub.core.registry import Registry
from hub.core.store.base import KafkaRecord
from hub.core.topics import dead_letter_topic

P, X, R, PARKED = Outcome.PROCESSED, Outcome.DEAD_LETTERED, Outcome.RETRYING, Outcome.PARKED


# Was: the in-process retries ran inline_attempts times whatever was left of max_attempts.
async def test_in_process_retries_never_take_a_record_past_max_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_sleep(_seconds: float) -> None:
        return None

    monkeypatch.setattr("asyncio.sleep", no_sleep)  # tenacity's back-off between attempts
    kernel = Kernel(settings=kernel_settings(inline_attempts=3, max_attempts=4))
    kernel.plan.transient[1] = 99
    assert (await kernel.feed([probe_record(0, 1)])).outcomes == (R,)
    assert await kernel.drain_retries() == [X]
    (dead,) = kernel.dead_letters()
    # It was 6 handler calls (3 + 3) and x-hub-attempts 6 for max_attempts 4.
    assert hub_headers(dead)["x-hub-attempts"] == "4"
    assert len(kernel.plan.seen) == 4


def _rejecting_service() -> Service:
    def handle(event: ProbeV1, _state: None, _at: datetime) -> Decision[Any]:
        # Domain errors quote the event (as dispatch's "tracking for unknown order {id}" does).
        raise DomainRejectionError(f"cannot apply {event.payload}")

    return Service(
        group=GROUP,
        inputs=(INPUT,),
        handlers={ProbeV1.event_type: handle},
        source="urn:test",
        state_model=None,
    )


# Was: failure_headers encoded strictly; UnicodeEncodeError out of process_batch, which the
# adapter takes for an outage: the partition retried that batch forever.
async def test_an_error_message_quoting_a_lone_surrogate_is_dead_lettered() -> None:
    kernel = Kernel(service=_rejecting_service())
    template = event_record(0, ProbeV1(seq=1), key=b"k1")
    poisoned = KafkaRecord(
        INPUT, 0, 0, 0, b"k1", b'{"seq": 1, "payload": "\\ud800"}', template.headers
    )
    result = await kernel.feed([poisoned, probe_record(1, 2, key=b"k2")])
    assert result.outcomes == (X, X)
    assert "cannot apply" in hub_headers(kernel.dead_letters()[0])["x-hub-error-message"]


# Was: dead-lettered to '<retry topic>.<group>.dlq' (never declared: the produce fails and the
# partition stalls), and before the release check, so its key stayed parked.
async def test_a_retry_record_with_unreadable_hub_headers_goes_to_a_declared_dlq() -> None:
    kernel = Kernel()
    kernel.plan.transient[1] = 1
    await kernel.feed([probe_record(0, 1, key=b"k1")])
    (retry,) = kernel.take_retries()[next(iter(kernel.fed))]
    broken = KafkaRecord(
        retry.topic, 0, 0, 0, retry.key, retry.value,
        tuple((n, b"abc" if n == "x-hub-origin-offset" else v) for n, v in retry.headers),
    )  # fmt: skip
    kernel.clock.advance(timedelta(minutes=1))
    assert (await kernel.feed([broken])).outcomes == (X,)
    declared = {dead_letter_topic(topic, GROUP) for topic in kernel.pipeline.service.all_inputs}
    assert {r.topic for r in kernel.sink.records if r.topic.endswith(".dlq")} <= declared
    assert await kernel.store.parked_keys(GROUP) == []


# Was: a retry record dead-lettered before it was handled (e.g. after a deploy that dropped its
# schema) returned before the release check: its key stayed parked for good.
async def test_a_head_that_no_longer_decodes_releases_its_key() -> None:
    kernel = Kernel()
    kernel.plan.transient[1] = 1
    assert (await kernel.feed([probe_record(0, 1, key=b"k1")])).outcomes == (R,)
    (retry,) = kernel.take_retries()[next(iter(kernel.fed))]
    # The next deploy knows only the output event: the retry record now fails validation.
    registry = Registry()
    registry.register(ProbeDoneV1)
    deployed = Pipeline(
        kernel.pipeline.service, registry=registry, store=kernel.store, sink=kernel.sink,
        settings=kernel.settings, clock=kernel.clock,
    )  # fmt: skip
    kernel.clock.advance(timedelta(minutes=1))
    assert (await deployed.process_batch([retry])).outcomes == (X,)
    assert await kernel.store.parked_keys(GROUP) == []
    later = event_record(1, ProbeDoneV1(seq=5, handled_count=1), key=b"k1")
    assert (await deployed.process_batch([later])).outcomes == (Outcome.IGNORED,)


# Was: keys decoded with errors='replace', so b'\xff' and b'\xfe' shared a state and a park.
async def test_distinct_binary_keys_keep_distinct_state_and_parks() -> None:
    kernel = Kernel()
    kernel.plan.transient[1] = 1
    result = await kernel.feed([probe_record(0, 1, key=b"\xff"), probe_record(1, 2, key=b"\xfe")])
    # It was (RETRYING, PARKED): b'\xfe' waited behind a head of another key.
    assert result.outcomes == (R, P)
    (output,) = kernel.sink.on(OUTPUT)
    assert ProbeDoneV1.model_validate_json(output.value or b"").handled_count == 1


# Was: Envelope.from_headers decoded every header; a binary header of another system made the
# record undecodable.
async def test_a_binary_header_outside_cloudevents_does_not_make_a_record_unreadable() -> None:
    kernel = Kernel()
    record = event_record(0, ProbeV1(seq=1), key=b"k1", extra_headers=(("x-trace", b"\x00\xff"),))
    assert (await kernel.feed([record])).outcomes == (P,)


def _from_source(record: KafkaRecord, source: str, offset: int) -> KafkaRecord:
    headers = tuple((n, source.encode() if n == "ce_source" else v) for n, v in record.headers)
    return KafkaRecord(record.topic, 0, offset, 0, record.key, record.value, headers)


async def test_an_event_of_another_source_with_the_head_id_is_not_dropped() -> None:
    kernel = Kernel()
    kernel.plan.transient[1] = 1
    head = probe_record(0, 1, key=b"k1", event_id="order-1")
    other = _from_source(probe_record(1, 2, key=b"k1", event_id="order-1"), "urn:courier", 1)
    result = await kernel.feed([head, other])
    # Today: (RETRYING, DUPLICATE), and seq 2 is never seen by the handler.
    assert result.outcomes == (R, PARKED)
    await kernel.drain_retries()
    assert sorted(
        ProbeDoneV1.model_validate_json(r.value or b"").seq for r in kernel.outputs()
    ) == [
        1,
        2,
    ]


# Was: an output id was derived from the input id alone, and the next service dropped the
# output of the second of two events sharing an id as a duplicate of the first.
async def test_outputs_of_two_events_sharing_an_id_have_distinct_identities() -> None:
    kernel = Kernel()
    first = probe_record(0, 1, key=b"k1", event_id="order-1")
    second = _from_source(probe_record(1, 2, key=b"k2", event_id="order-1"), "urn:courier", 1)
    assert (await kernel.feed([first, second])).outcomes == (P, P)
    one, two = kernel.sink.on(OUTPUT)
    identity = {name: value for name, value in one.headers if name in {"ce_source", "ce_id"}}
    other = {name: value for name, value in two.headers if name in {"ce_source", "ce_id"}}
    assert identity != other


# Was: a parked follower that is a duplicate of the key's current head started _release again
# before it was removed; next_parked returned it again: RecursionError, the partition held.
async def test_a_parked_duplicate_of_the_new_head_is_released_once() -> None:
    kernel = Kernel()
    kernel.plan.transient.update({0: 1, 1: 1})
    head = probe_record(0, 0, key=b"k1")
    follower = probe_record(1, 1, key=b"k1")
    resent = probe_record(2, 1, key=b"k1", event_id="evt-1")  # the partner sends it again
    assert (await kernel.feed([head, follower, resent])).outcomes == (R, PARKED, PARKED)
    # The head succeeds; the follower fails in its turn and becomes the head (its copy waits).
    assert await kernel.retry_round() == [P]
    assert await kernel.store.park_head(GROUP, "k1") == f"{SOURCE} evt-1"
    # The follower succeeds from its retry topic: its parked copy is a duplicate to skip.
    assert await kernel.retry_round() == [P]
    assert await kernel.store.parked_keys(GROUP) == []
    assert [ProbeDoneV1.model_validate_json(r.value or b"").seq for r in kernel.outputs()] == [0, 1]


# Was: keys were decoded with errors='backslashreplace', and the non-UTF-8 key b'\xff' and the
# ASCII key b'\\xff' shared one state document and one park.
async def test_a_binary_key_and_its_escaped_spelling_stay_distinct() -> None:
    kernel = Kernel()
    kernel.plan.transient[1] = 1
    keys = (b"\xff", rb"\xff", "\ufffdff".encode())  # the last spells the binary key's text
    result = await kernel.feed([probe_record(o, o + 1, key=key) for o, key in enumerate(keys)])
    assert result.outcomes == (R, P, P)  # neither text key waits behind the binary one
    outputs = kernel.sink.on(OUTPUT)
    assert [ProbeDoneV1.model_validate_json(o.value or b"").handled_count for o in outputs] == [
        1,
        1,
    ]


# Was: the same recursion without a duplicate input, after a store blip on remove_parked left
# a follower that had become the head parked behind itself.
async def test_a_store_blip_while_a_follower_becomes_the_head_does_not_stall_its_key() -> None:
    kernel = Kernel()
    kernel.plan.transient.update({0: 1, 1: 1})
    assert (await kernel.feed([probe_record(o, o, key=b"k1") for o in range(2)])).outcomes == (
        R,
        PARKED,
    )
    (head,) = kernel.take_retries().popitem()[1]
    kernel.clock.advance(timedelta(minutes=1))
    kernel.store.faults.fail_next("remove_parked")  # right after the follower became the head
    with pytest.raises(ConnectionError):
        await kernel.feed([head])
    assert (await kernel.feed([head])).outcomes == (Outcome.DUPLICATE,)  # read again
    assert await kernel.store.park_head(GROUP, "k1") == f"{SOURCE} evt-1"
    assert await kernel.drain_retries() == [P]
    assert await kernel.store.parked_keys(GROUP) == []


# Was: the retry record was produced, then the park stored; an outage between the two made
# the batch run again and produce a second retry record, two retry chains of one event. When
# one ran out of attempts its dead letter released the key while the other was still in retry.
async def test_a_crash_between_retry_and_park_keeps_the_key_in_order() -> None:
    kernel = Kernel(settings=kernel_settings(max_attempts=2, retry_tiers=("10s",)))
    kernel.plan.transient[0] = 3  # calls 1-3 fail, call 4 succeeds
    head, follower = probe_record(0, 0, key=b"k1"), probe_record(1, 1, key=b"k1")
    kernel.store.faults.fail_next("park")
    with pytest.raises(ConnectionError):
        await kernel.feed([head])  # its retry record was produced, its park was not stored
    assert (await kernel.feed([head, follower])).outcomes == (R, PARKED)
    assert len(kernel.sink.on(f"{INPUT}.{GROUP}.retry.10s")) == 2
    await kernel.drain_retries()
    done = [ProbeDoneV1.model_validate_json(r.value or b"").seq for r in kernel.outputs()]
    dead = [hub_headers(d)["x-hub-origin-offset"] for d in kernel.dead_letters()]
    assert done == [1]  # the head given up on (attempts 2 and 3), then its follower
    assert dead == ["0"]
    assert kernel.pipeline.counts[Outcome.DUPLICATE] == 1  # the second chain, at its first hop
