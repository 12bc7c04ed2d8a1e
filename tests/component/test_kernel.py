"""The reliability kernel on in-memory ports: retries, dead letters, parks, batches, crashes.

No broker and no database: a probe service (tests/support/probe.py) fails as each test plans,
the store and the sink fail when a test says so, and the clock moves only when it is moved.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from kernel_kit import (
    GROUP,
    INPUT,
    OUTPUT,
    SOURCE,
    Kernel,
    done_seqs,
    envelope_headers,
    header_map,
    hub_headers,
    kernel_settings,
    probe_record,
)
from probe import FaultPlan, ProbeDoneV1, ProbeV1, probe_service

from hub.core.envelope import derive_event_id
from hub.core.errors import fingerprint
from hub.core.pipeline import BatchResult, Outcome
from hub.core.service import to_record
from hub.core.store.base import EventId, KafkaRecord
from hub.core.topics import CASE_STATUS, retry_topic

P, D, R, X = Outcome.PROCESSED, Outcome.DUPLICATE, Outcome.RETRYING, Outcome.DEAD_LETTERED
PARKED = Outcome.PARKED
TIER_10S = retry_topic(INPUT, GROUP, timedelta(seconds=10))
TIER_1M = retry_topic(INPUT, GROUP, timedelta(minutes=1))
TIER_10M = retry_topic(INPUT, GROUP, timedelta(minutes=10))
CONTRACT = {
    "x-hub-origin-topic", "x-hub-origin-partition", "x-hub-origin-offset",
    "x-hub-origin-timestamp", "x-hub-origin-group", "x-hub-origin-handler", "x-hub-error-class",
    "x-hub-error-message", "x-hub-error-stacktrace", "x-hub-error-stage",
    "x-hub-error-fingerprint", "x-hub-attempts", "x-hub-first-failure-at", "x-hub-code-version",
    "x-hub-schema", "x-hub-idempotency-key",
}  # fmt: skip


def counts_of(kernel: Kernel) -> list[int]:
    return [ProbeDoneV1.model_validate_json(r.value or b"").handled_count for r in kernel.outputs()]


# --- retry tiers ---------------------------------------------------------------------------
async def test_a_transient_failure_waits_in_the_first_tier_and_is_handled_when_due() -> None:
    kernel = Kernel()
    kernel.plan.transient[1] = 1
    original = probe_record(7, 1, key=b"case-1")
    failed_at = kernel.clock()

    assert (await kernel.feed([original])).outcomes == (R,)
    (retry,) = kernel.sink.records
    assert retry.topic == TIER_10S
    assert (retry.key, retry.value) == (original.key, original.value)
    assert retry.headers[: len(original.headers)] == original.headers
    sent = hub_headers(retry)
    assert sent["x-hub-attempts"] == "1"
    assert sent["x-hub-due-at"] == (failed_at + timedelta(seconds=10)).isoformat()
    assert sent["x-hub-first-failure-at"] == failed_at.isoformat()
    assert (sent["x-hub-origin-topic"], sent["x-hub-origin-offset"]) == (INPUT, "7")
    assert await kernel.store.park_head(GROUP, "case-1") == f"{SOURCE} evt-7"
    assert not kernel.store.processed(GROUP)

    # Not yet due: the record is not touched and the partition waits at its offset.
    (read,) = kernel.take_retries()[TIER_10S]
    kernel.clock.advance(timedelta(seconds=9))
    early = await kernel.feed([read])
    assert (early.outcomes, early.resume_at) == ((), read.offset)
    assert early.due == failed_at + timedelta(seconds=10)
    assert kernel.plan.seen == [1]

    kernel.clock.advance(timedelta(seconds=1))  # due exactly now
    assert (await kernel.feed([read])).outcomes == (P,)
    assert kernel.plan.seen == [1, 1]
    (output,) = kernel.outputs()
    assert header_map(output)["ce_id"] == derive_event_id(SOURCE, "evt-7", "done")
    assert await kernel.store.park_head(GROUP, "case-1") is None
    # The event, and the retry record read: its hop (a second copy of it would stop there)
    # and where it was read (the same record read again goes on).
    assert kernel.store.processed(GROUP) == {
        EventId(SOURCE, "evt-7"),
        EventId(SOURCE, f"evt-7 retry-of {INPUT}:0:7"),
        EventId(SOURCE, f"evt-7 read-at {TIER_10S}:0:{read.offset}"),
    }
    assert hub_headers(retry)["x-hub-retry-of"] == f"{INPUT}:0:7"


async def test_each_failure_climbs_a_tier_and_the_last_tier_is_reused() -> None:
    kernel = Kernel(settings=kernel_settings(max_attempts=10))
    kernel.plan.transient[1] = 5
    first_failure = kernel.clock()
    assert (await kernel.feed([probe_record(3, 1)])).outcomes == (R,)
    outcomes = await kernel.drain_retries()

    assert outcomes == [R, R, R, R, P]
    retries = [r for r in kernel.sink.records if ".retry." in r.topic]
    assert [r.topic for r in retries] == [TIER_10S, TIER_1M, TIER_10M, TIER_10M, TIER_10M]
    assert [hub_headers(r)["x-hub-attempts"] for r in retries] == ["1", "2", "3", "4", "5"]
    assert {hub_headers(r)["x-hub-first-failure-at"] for r in retries} == {
        first_failure.isoformat()
    }
    # Every hop keeps the first origin, and the hub's headers once each, never piled up.
    assert {hub_headers(r)["x-hub-origin-topic"] for r in retries} == {INPUT}
    assert {hub_headers(r)["x-hub-origin-offset"] for r in retries} == {"3"}
    for retry in retries:
        names = [name for name, _ in retry.headers if name.startswith("x-hub-")]
        assert sorted(names) == sorted({*CONTRACT, "x-hub-due-at", "x-hub-retry-of"})
    assert done_seqs(kernel.outputs()) == [1]
    assert kernel.plan.seen == [1] * 6


async def test_in_process_attempts_count_toward_the_record_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("asyncio.sleep", no_sleep)  # tenacity's back-off between attempts
    kernel = Kernel(settings=kernel_settings(inline_attempts=2, max_attempts=4))
    kernel.plan.transient[1] = 3
    assert (await kernel.feed([probe_record(0, 1)])).outcomes == (R,)
    (retry,) = kernel.sink.records
    assert hub_headers(retry)["x-hub-attempts"] == "2"
    assert await kernel.drain_retries() == [P]
    assert kernel.plan.seen == [1, 1, 1, 1]
    assert len(waits) == 2


# --- dead letters --------------------------------------------------------------------------
async def test_a_record_out_of_attempts_is_dead_lettered_with_the_whole_contract() -> None:
    kernel = Kernel(settings=kernel_settings(max_attempts=3))
    kernel.plan.transient[1] = 99
    # The record as a partner sent it: spacing and unknown fields the model would not render,
    # repeated and empty headers, in an order of their own.
    value = b'{ "seq": 1,  "payload": "\xe4\xbf\xae", "unknown": [1, {"x": null}] }'
    headers = (
        ("traceparent", b"00-abc-01"), *envelope_headers("evt-9"), ("tag", b"a"), ("tag", b""),
        ("ce_id", b"a second id is ignored"),
    )  # fmt: skip
    original = KafkaRecord(INPUT, 2, 9, 1_700_000_000_123, b"\x00case\xc3\xa9", value, headers)
    first_failure = kernel.clock()
    assert (await kernel.feed([original])).outcomes == (R,)
    assert await kernel.drain_retries() == [R, X]

    (dead,) = kernel.dead_letters()
    assert dead.topic == f"{INPUT}.{GROUP}.dlq"
    assert (dead.key, dead.value) == (original.key, original.value)
    assert dead.headers[: len(headers)] == headers
    added = dead.headers[len(headers) :]
    assert sorted(name for name, _ in added) == sorted(CONTRACT)  # each once, no due time
    sent = {name: value.decode() for name, value in added}
    assert sent["x-hub-origin-topic"] == INPUT
    assert (sent["x-hub-origin-partition"], sent["x-hub-origin-offset"]) == ("2", "9")
    assert sent["x-hub-origin-timestamp"] == "1700000000123"
    assert sent["x-hub-origin-group"] == GROUP
    assert sent["x-hub-origin-handler"].endswith("FaultPlan.handle")
    assert sent["x-hub-error-class"] == "hub.core.errors.TransientError"
    assert sent["x-hub-error-message"] == "courier API timed out for probe 1"
    assert "TransientError: courier API timed out" in sent["x-hub-error-stacktrace"]
    assert sent["x-hub-error-stage"] == "handle"
    assert sent["x-hub-error-fingerprint"] == fingerprint(
        "hub.core.errors.TransientError", "courier API timed out for probe 1", "handle"
    )
    assert sent["x-hub-attempts"] == "3"
    assert sent["x-hub-first-failure-at"] == first_failure.isoformat()
    assert sent["x-hub-code-version"] == "component-test"
    assert sent["x-hub-schema"] == ProbeV1.ce_type()
    assert sent["x-hub-idempotency-key"] == "evt-9"
    assert kernel.plan.seen == [1, 1, 1]
    assert kernel.outputs() == []
    assert await kernel.store.parked_keys(GROUP) == []


async def test_a_permanent_failure_is_dead_lettered_at_once_and_the_key_goes_on() -> None:
    kernel = Kernel()
    kernel.plan.permanent.add(1)
    result = await kernel.feed([probe_record(0, 1), probe_record(1, 2)])
    assert result.outcomes == (X, P)
    (dead,) = kernel.dead_letters()
    sent = hub_headers(dead)
    assert (sent["x-hub-attempts"], sent["x-hub-error-stage"]) == ("1", "handle")
    assert sent["x-hub-error-class"] == "hub.core.errors.PermanentError"
    assert counts_of(kernel) == [1]


@pytest.mark.parametrize(
    ("value", "headers", "stage", "message"),
    [
        (b"[" * 100_000, envelope_headers("e"), "decode", "recursion depth"),
        (b'{"seq": 1' + b"0" * 5000 + b"}", envelope_headers("e"), "decode", "digits"),
        (b'{"seq": NaN}', envelope_headers("e"), "validate", "finite number"),
        (b"\xff{}", envelope_headers("e"), "decode", "not JSON"),
        (b"[1]", envelope_headers("e"), "decode", "not an object"),
        (None, envelope_headers("e"), "decode", "not JSON"),
        (b'{"seq": 1}', envelope_headers("e", ce_type="test.probe.v9"), "validate", "v9"),
        (b'{"seq": 1}', envelope_headers("e")[1:], "decode", "ce_specversion"),
        (b'{"seq": 1}', (("ce_id", b"\xc3"), *envelope_headers("e")), "decode", "UTF-8"),
    ],
    ids=["deep", "digits", "nan", "utf8", "array", "null", "version", "missing", "header"],
)
async def test_a_record_that_cannot_be_read_is_dead_lettered_as_it_came(
    value: bytes | None, headers: tuple[tuple[str, bytes], ...], stage: str, message: str
) -> None:
    kernel = Kernel()
    bad = KafkaRecord(INPUT, 0, 5, 1_000, b"case-1", value, headers)
    good = probe_record(6, 2)
    assert (await kernel.feed([bad, good])).outcomes == (X, P)
    (dead,) = kernel.dead_letters()
    assert (dead.key, dead.value) == (bad.key, bad.value)
    assert dead.headers[: len(headers)] == headers
    sent = hub_headers(dead)
    assert sent["x-hub-error-stage"] == stage
    assert message in sent["x-hub-error-message"]
    assert sent["x-hub-attempts"] == "1"
    assert kernel.plan.seen == [2]


async def test_a_retry_record_whose_due_time_cannot_be_read_is_dead_lettered() -> None:
    kernel = Kernel()
    kernel.plan.transient[1] = 1
    await kernel.feed([probe_record(0, 1)])
    (retry,) = kernel.take_retries()[TIER_10S]
    broken = KafkaRecord(
        retry.topic, 0, 0, 0, retry.key, retry.value,
        tuple((n, b"soon" if n == "x-hub-due-at" else v) for n, v in retry.headers),
    )  # fmt: skip
    assert (await kernel.feed([broken])).outcomes == (X,)  # judged, not waited for
    (dead,) = [r for r in kernel.sink.records if r.topic.endswith(".dlq")]
    assert (dead.key, dead.value) == (retry.key, retry.value)
    assert "hub headers are unreadable" in hub_headers(dead)["x-hub-error-message"]
    # Where it goes and what becomes of its key's park: see test_kernel_findings.py.


def test_a_null_header_value_is_read_as_empty_bytes() -> None:
    # Kafka allows a null header value; aiokafka's annotations say bytes, it hands over None.
    headers: list[tuple[str, Any]] = [("ce_id", None), ("x", b"\xff"), ("ce_id", b"second")]
    raw: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic=INPUT, partition=1, offset=4, timestamp=1_000, timestamp_type=0, key=None,
        value=b"{}", checksum=None, serialized_key_size=-1, serialized_value_size=2,
        headers=headers,
    )  # fmt: skip
    record = to_record(raw)
    assert record == KafkaRecord(
        INPUT, 1, 4, 1_000, None, b"{}", (("ce_id", b""), ("x", b"\xff"), ("ce_id", b"second"))
    )
    assert all(type(value) is bytes for _, value in record.headers)


async def test_a_null_ce_header_dead_letters_the_record_instead_of_holding_the_partition() -> None:
    kernel = Kernel()
    headers = tuple((n, b"" if n == "ce_id" else v) for n, v in envelope_headers("e"))
    bad = KafkaRecord(INPUT, 0, 0, 0, b"k", b'{"seq": 1}', headers)
    assert (await kernel.feed([bad, probe_record(1, 2)])).outcomes == (X, P)
    assert (
        "missing CloudEvents headers: ce_id"
        in hub_headers(kernel.dead_letters()[0])["x-hub-error-message"]
    )


# --- park by key ---------------------------------------------------------------------------
async def test_a_key_waits_behind_its_head_in_retry_and_other_keys_go_on() -> None:
    kernel = Kernel()
    kernel.plan.transient[0] = 1
    batch = [
        probe_record(0, 0, key=b"k1"),
        probe_record(1, 1, key=b"k1"),
        probe_record(2, 2, key=b"k2"),
        probe_record(3, 3, key=b"k1"),
        probe_record(4, 4, key=None),
    ]
    assert (await kernel.feed(batch)).outcomes == (R, PARKED, P, PARKED, P)
    assert kernel.store.followers(GROUP, "k1") == [batch[1], batch[3]]  # byte for byte
    assert await kernel.store.parked_keys(GROUP) == ["k1"]
    assert done_seqs(kernel.outputs()) == [2, 4]
    # A later batch: the key still waits, and the head itself again is a duplicate.
    later = [probe_record(5, 5, key=b"k1"), probe_record(6, 0, key=b"k1", event_id="evt-0")]
    assert (await kernel.feed(later)).outcomes == (PARKED, D)

    # The head succeeds from the retry topic: its followers follow, in order, in that batch.
    assert await kernel.drain_retries() == [P]
    assert done_seqs(kernel.outputs()) == [2, 4, 0, 1, 3, 5]
    assert counts_of(kernel) == [1, 1, 1, 2, 3, 4]
    assert kernel.store.state(GROUP, "k1") == {"handled": 4, "last_seq": 5}
    assert await kernel.store.parked_keys(GROUP) == []
    assert kernel.store.followers(GROUP, "k1") == []
    assert kernel.pipeline.counts[P] == 6


async def test_a_follower_that_fails_in_its_turn_becomes_the_new_head() -> None:
    kernel = Kernel()
    kernel.plan.transient.update({0: 1, 1: 1})
    batch = [probe_record(o, o, key=b"k1") for o in range(3)]
    assert (await kernel.feed(batch)).outcomes == (R, PARKED, PARKED)

    kernel.clock.advance(timedelta(seconds=10))
    (head,) = kernel.take_retries()[TIER_10S]
    assert (await kernel.feed([head])).outcomes == (P,)  # releases 1, which fails again
    assert await kernel.store.park_head(GROUP, "k1") == f"{SOURCE} evt-1"
    assert kernel.store.followers(GROUP, "k1") == [batch[2]]
    (follower_retry,) = kernel.take_retries()[TIER_10S]
    # The follower starts its own history: its first attempt, a first tier, its own origin.
    assert hub_headers(follower_retry)["x-hub-attempts"] == "1"
    assert hub_headers(follower_retry)["x-hub-origin-offset"] == "1"
    # A new record of the key waits behind the follower still parked.
    assert (await kernel.feed([probe_record(3, 3, key=b"k1")])).outcomes == (PARKED,)

    kernel.clock.advance(timedelta(seconds=10))
    assert (await kernel.feed([follower_retry])).outcomes == (P,)
    assert done_seqs(kernel.outputs()) == [0, 1, 2, 3]
    assert counts_of(kernel) == [1, 2, 3, 4]
    assert await kernel.store.parked_keys(GROUP) == []


async def test_a_head_out_of_attempts_is_dead_lettered_and_releases_its_followers() -> None:
    kernel = Kernel(settings=kernel_settings(max_attempts=2))
    kernel.plan.transient[0] = 99
    kernel.plan.permanent.add(2)
    batch = [probe_record(o, o, key=b"k1") for o in range(4)]
    assert (await kernel.feed(batch)).outcomes == (R, PARKED, PARKED, PARKED)
    assert await kernel.drain_retries() == [X]
    assert done_seqs(kernel.outputs()) == [1, 3]
    assert [hub_headers(d)["x-hub-origin-offset"] for d in kernel.dead_letters()] == ["0", "2"]
    assert kernel.pipeline.counts == {R: 1, PARKED: 3, X: 2, P: 2}
    assert await kernel.store.parked_keys(GROUP) == []


async def test_an_early_event_waits_in_a_retry_tier_and_lets_its_cause_behind_it_pass() -> None:
    kernel = Kernel()
    kernel.plan.early_until[0] = 1  # 0 answers 1, read again after a crash, behind it
    batch = [probe_record(0, 0, key=b"k1"), probe_record(1, 1, key=b"k1")]
    assert (await kernel.feed(batch)).outcomes == (R, P)
    assert kernel.plan.seen == [0, 1]  # no attempt in process: its cause is behind it
    assert await kernel.store.parked_keys(GROUP) == []
    (retry,) = kernel.take_retries()[TIER_10S]
    assert hub_headers(retry)["x-hub-error-class"] == "hub.core.errors.EarlyEventError"

    kernel.clock.advance(timedelta(seconds=10))
    assert (await kernel.feed([retry])).outcomes == (P,)
    assert done_seqs(kernel.outputs()) == [1, 0]
    assert kernel.dead_letters() == []


async def test_an_early_follower_leaves_the_followers_behind_it_free() -> None:
    kernel = Kernel()
    kernel.plan.transient[0] = 1
    kernel.plan.early_until[1] = 2
    batch = [probe_record(o, o, key=b"k1") for o in range(3)]
    assert (await kernel.feed(batch)).outcomes == (R, PARKED, PARKED)

    # The head succeeds: 1 is early and goes to a tier of its own, 2 follows at once.
    assert await kernel.drain_retries() == [P, P]
    assert done_seqs(kernel.outputs()) == [0, 2, 1]
    assert await kernel.store.parked_keys(GROUP) == []
    assert kernel.store.followers(GROUP, "k1") == []


async def test_a_head_that_turns_out_early_releases_its_followers() -> None:
    kernel = Kernel()
    kernel.plan.transient[0] = 1
    kernel.plan.early_until[0] = 1
    batch = [probe_record(0, 0, key=b"k1"), probe_record(1, 1, key=b"k1")]
    assert (await kernel.feed(batch)).outcomes == (R, PARKED)
    assert await kernel.drain_retries() == [R, P]
    assert done_seqs(kernel.outputs()) == [1, 0]
    assert await kernel.store.parked_keys(GROUP) == []


# --- batch boundaries ----------------------------------------------------------------------
async def _count_through(splits: list[int]) -> Kernel:
    kernel = Kernel()
    records = [probe_record(o, o, key=b"k1") for o in range(50)]
    start = 0
    for end in [*splits, len(records)]:
        if end > start:
            result = await kernel.feed(records[start:end])
            assert result.outcomes == (P,) * (end - start)
            assert result.resume_at == end
            start = end
    return kernel


async def test_a_key_state_is_carried_from_record_to_record_whatever_the_batches() -> None:
    one = await _count_through([])
    assert counts_of(one) == list(range(1, 51))
    assert one.store.state(GROUP, "k1") == {"handled": 50, "last_seq": 49}
    # One unit of work: one store read, one produce, one commit for 50 records.
    assert (one.store.faults.calls["load_batch"], one.store.faults.calls["commit_batch"]) == (1, 1)
    assert one.sink.sends == 1

    for splits in ([*range(1, 50)], [1, 2, 17, 18, 40], [25]):
        other = await _count_through(splits)
        assert other.sink.records == one.sink.records  # the same outputs, byte for byte
        assert other.store.state(GROUP, "k1") == one.store.state(GROUP, "k1")
        assert other.store.processed(GROUP) == one.store.processed(GROUP)


async def test_a_duplicate_in_the_same_batch_is_seen_without_asking_the_store() -> None:
    kernel = Kernel()
    first = probe_record(0, 1)
    again = probe_record(1, 1, event_id="evt-0")
    other_source = KafkaRecord(
        INPUT, 0, 2, 0, b"case-1", first.value,
        tuple((n, b"urn:elsewhere" if n == "ce_source" else v) for n, v in first.headers),
    )  # fmt: skip
    assert (await kernel.feed([first, again, other_source])).outcomes == (P, D, P)
    assert kernel.store.faults.calls["is_processed"] == 0
    assert counts_of(kernel) == [1, 2]


async def test_a_record_not_yet_due_stops_the_batch_and_nothing_after_it_is_touched() -> None:
    kernel = Kernel()
    for seq in range(4):
        kernel.plan.transient[seq] = 1
    for offset in range(4):
        # Each fails at a later time: the retry records fall due one after the other.
        await kernel.feed([probe_record(offset, offset, key=f"k{offset}".encode())])
        kernel.clock.advance(timedelta(seconds=3))
    retries = kernel.take_retries()[TIER_10S]
    assert [r.offset for r in retries] == [0, 1, 2, 3]
    seen_before = list(kernel.plan.seen)
    # Failed at t, t+3, t+6, t+9 (due t+10, t+13, t+16, t+19); now t+13.
    kernel.clock.advance(timedelta(seconds=1))
    due_third = hub_headers(retries[2])["x-hub-due-at"]

    result = await kernel.feed(retries)
    assert result.outcomes == (P, P)
    assert result.resume_at == 2
    assert result.due is not None
    assert result.due.isoformat() == due_third
    assert kernel.plan.seen == [*seen_before, 0, 1]
    assert await kernel.store.parked_keys(GROUP) == ["k2", "k3"]

    kernel.clock.advance(timedelta(seconds=6))
    rest = await kernel.feed(retries[2:])
    assert (rest.outcomes, rest.resume_at, rest.due) == ((P, P), 4, None)
    assert done_seqs(kernel.outputs()) == [0, 1, 2, 3]


# --- crashes and outages -------------------------------------------------------------------
async def test_a_crash_between_produce_and_commit_repeats_the_same_outputs_and_records_once() -> (
    None
):
    kernel = Kernel()
    batch = [probe_record(o, o, key=b"k1" if o % 2 else b"k2") for o in range(5)]
    kernel.store.faults.fail_next("commit_batch")
    with pytest.raises(ConnectionError):
        await kernel.feed(batch)
    produced = list(kernel.sink.records)
    assert done_seqs(produced) == [0, 1, 2, 3, 4]  # produced (acks=all), then the store failed
    assert kernel.store.processed(GROUP) == set()
    assert kernel.store.state(GROUP, "k1") is None

    assert (await kernel.feed(batch)).outcomes == (P,) * 5
    assert kernel.sink.records[len(produced) :] == produced  # the same records, byte for byte
    assert kernel.store.processed(GROUP) == {EventId(SOURCE, f"evt-{o}") for o in range(5)}
    assert kernel.store.state(GROUP, "k1") == {"handled": 2, "last_seq": 3}
    assert kernel.store.state(GROUP, "k2") == {"handled": 3, "last_seq": 4}

    assert (await kernel.feed(batch)).outcomes == (D,) * 5
    assert len(kernel.sink.records) == 2 * len(produced)


async def test_a_crash_after_a_mid_batch_park_keeps_each_effect_once() -> None:
    kernel = Kernel()
    kernel.plan.transient[2] = 1
    batch = [probe_record(o, o, key=f"k{o % 3}".encode()) for o in range(5)]
    # Parking k2 flushes the unit (commit 1); the end of the batch (commit 2) fails.
    kernel.store.faults.fail_next("commit_batch", after=1)
    with pytest.raises(ConnectionError):
        await kernel.feed(batch)
    assert kernel.store.processed(GROUP) == {EventId(SOURCE, "evt-0"), EventId(SOURCE, "evt-1")}
    assert await kernel.store.park_head(GROUP, "k2") == f"{SOURCE} evt-2"
    produced = list(kernel.sink.records)

    # Read again: what was committed is a duplicate, the head waits in its retry topic already.
    assert (await kernel.feed(batch)).outcomes == (D, D, D, P, P)
    again = kernel.sink.records[len(produced) :]
    assert again == [r for r in produced if r.topic == OUTPUT and done_seqs([r]) in ([3], [4])]
    assert len(kernel.sink.on(TIER_10S)) == 1
    assert len(kernel.store.processed(GROUP)) == 4
    assert await kernel.drain_retries() == [P]
    assert sorted(done_seqs(kernel.outputs())) == [0, 1, 2, 3, 3, 4, 4]
    assert len({header_map(r)["ce_id"] for r in kernel.outputs()}) == 5
    assert kernel.store.state(GROUP, "k0") == {"handled": 2, "last_seq": 3}


async def test_a_broker_outage_fails_the_batch_before_anything_is_recorded() -> None:
    kernel = Kernel()
    batch = [probe_record(o, o) for o in range(3)]
    kernel.sink.fail_next()
    with pytest.raises(ConnectionError):
        await kernel.feed(batch)
    assert kernel.sink.records == []
    assert kernel.store.faults.calls["commit_batch"] == 0
    assert (await kernel.feed(batch)).outcomes == (P, P, P)
    assert counts_of(kernel) == [1, 2, 3]


async def test_a_store_outage_on_load_fails_the_batch_before_any_handling() -> None:
    kernel = Kernel()
    kernel.plan.transient[0] = 1
    batch = [probe_record(0, 0), probe_record(1, 1, key=b"k9")]
    kernel.store.faults.fail_next("load_batch")
    with pytest.raises(ConnectionError):
        await kernel.feed(batch)
    assert kernel.sink.records == []
    assert kernel.plan.seen == []
    assert kernel.store.faults.calls["commit_batch"] == 0
    assert (await kernel.feed(batch)).outcomes == (R, P)


async def test_a_store_outage_while_releasing_fails_the_batch_and_the_release_resumes() -> None:
    kernel = Kernel()
    kernel.plan.transient[0] = 1
    batch = [probe_record(o, o, key=b"k1") for o in range(3)]
    assert (await kernel.feed(batch)).outcomes == (R, PARKED, PARKED)
    (head,) = kernel.take_retries()[TIER_10S]
    kernel.clock.advance(timedelta(minutes=1))
    kernel.store.faults.fail_next("remove_parked", after=1)  # after the first follower
    with pytest.raises(ConnectionError):
        await kernel.feed([head])
    # The follower handled but not removed is a duplicate now; the release goes on.
    assert await kernel.feed([head]) == BatchResult((D,), resume_at=1)
    assert done_seqs(kernel.outputs()) == [0, 1, 2]
    assert counts_of(kernel) == [1, 2, 3]
    assert await kernel.store.parked_keys(GROUP) == []


# --- compacted outputs ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "expected"),
    [(CASE_STATUS, [(b"case-1", 3), (b"case-2", 4)]), (OUTPUT, [(b"case-1", 0), (b"case-2", 1),
     (b"case-1", 2), (b"case-1", 3), (b"case-2", 4)])],
)  # fmt: skip
async def test_on_a_compacted_topic_a_unit_produces_only_the_latest_record_of_a_key(
    output: str, expected: list[tuple[bytes, int]]
) -> None:
    kernel = Kernel(service=probe_service(GROUP, INPUT, output, FaultPlan()))
    keys = [b"case-1", b"case-2", b"case-1", b"case-1", b"case-2"]
    batch = [probe_record(n, seq=n, key=key) for n, key in enumerate(keys)]

    assert (await kernel.feed(batch)).outcomes == (P,) * 5
    produced = kernel.sink.on(output)
    assert [(r.key, seq) for r, seq in zip(produced, done_seqs(produced), strict=True)] == expected
    # Every input is in the inbox, the superseded ones too; the next unit produces anew.
    assert (await kernel.feed(batch)).outcomes == (D,) * 5
    assert (await kernel.feed([probe_record(5, seq=5, key=b"case-1")])).outcomes == (P,)
    assert done_seqs(kernel.sink.on(output))[len(expected) :] == [5]
