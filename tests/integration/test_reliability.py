"""The kernel on a real broker: retries, dead letters, park by key, idempotency, crash, drain."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import murmur2
from kafka_io import create_topics, publish, read_records, settle_and_read
from probe import REGISTRY, FaultPlan, ProbeDoneV1, ProbeV1, probe_service

from hub.core import deadletter
from hub.core.envelope import Envelope
from hub.core.outbound import OutRecord, event_record
from hub.core.pipeline import Outcome
from hub.core.service import KafkaSink, ServiceRuntime
from hub.core.store.factory import open_store
from hub.core.store.sqlite import SqliteStateStore
from hub.core.topics import Subscription, dead_letter_topic

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from aiokafka import ConsumerRecord

    from hub.core.handler import Service
    from hub.core.settings import HubSettings
    from hub.core.store.base import BatchSnapshot, EventId

pytestmark = pytest.mark.integration
pytest_plugins = ("store_fixtures",)

WORKER = Path(__file__).parents[1] / "support" / "probe_worker.py"


class Probe:
    """One test's probe service: its topics, settings and fault plan."""

    def __init__(self, settings: HubSettings, unique: str, plan: FaultPlan | None = None) -> None:
        self.settings = settings
        self.group = f"probe-{unique}"
        self.input = f"test.probe.{unique}"
        self.output = f"test.probe-done.{unique}"
        self.plan = plan or FaultPlan()
        self.service: Service = probe_service(self.group, self.input, self.output, self.plan)
        self.unique = unique

    async def create_topics(self) -> None:
        await create_topics(self.settings, [Subscription(self.group, (self.input,))], [self.output])

    def record(self, seq: int, key: str, *, event_id: str | None = None) -> OutRecord:
        return event_record(
            self.input,
            ProbeV1(seq=seq),
            key=key,
            source="urn:test",
            event_id=event_id or f"{self.unique}-{seq}",
        )

    async def publish(self, records: Sequence[OutRecord]) -> None:
        await publish(self.settings, records)

    def runtime(self) -> ServiceRuntime:
        return ServiceRuntime(self.service, self.settings, registry=REGISTRY)

    async def outputs(
        self, count: int, timeout_s: float = 40
    ) -> list[ConsumerRecord[bytes, bytes]]:
        return await read_records(
            self.settings.kafka_bootstrap_servers, self.output, count=count, timeout_s=timeout_s
        )

    async def dead_letters(
        self, count: int, timeout_s: float = 40
    ) -> list[ConsumerRecord[bytes, bytes]]:
        return await read_records(
            self.settings.kafka_bootstrap_servers,
            dead_letter_topic(self.input, self.group),
            count=count,
            timeout_s=timeout_s,
        )


def seq_of(record: ConsumerRecord[bytes, bytes]) -> int:
    return ProbeDoneV1.model_validate_json(record.value or b"").seq


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name: bytes(value).decode(errors="replace") for name, value in record.headers}


@pytest.fixture
def probe(make_settings: Callable[..., HubSettings], unique: str) -> Probe:
    return Probe(make_settings(), unique)


async def test_poison_inputs_are_dead_lettered_and_the_consumer_keeps_going(probe: Probe) -> None:
    await probe.create_topics()
    good = probe.record(1, "case-a")
    valid_headers = list(good.headers)

    def with_type(ce_type: str) -> list[tuple[str, bytes]]:
        return [(n, ce_type.encode() if n == "ce_type" else v) for n, v in valid_headers]

    def with_value(header: str, value: bytes | None) -> list[tuple[str, bytes | None]]:
        return [(n, value if n == header else v) for n, v in valid_headers]

    poison: dict[str, tuple[bytes, Sequence[tuple[str, bytes | None]]]] = {
        "random bytes": (os.urandom(64), []),
        "truncated json": (good.value[:-5] if good.value else b"", valid_headers),
        "wrong type": (good.value or b"", with_type("parcel.teleported.v1")),
        "unknown version": (good.value or b"", with_type("test.probe.v9")),
        "missing headers": (good.value or b"", [("content-type", b"application/json")]),
        "null header value": (good.value or b"", with_value("ce_id", None)),
        "header not utf-8": (good.value or b"", with_value("ce_source", b"\xff\xfe")),
        "schema invalid 1 MB": (b'{"seq": "' + b"x" * 1_000_000 + b'"}', valid_headers),
        # What the standard decoder refuses with other exceptions than JSONDecodeError.
        "deeply nested json": (b"[" * 200_000 + b"]" * 200_000, valid_headers),
        "integer past the digit limit": (b'{"seq": ' + b"9" * 5000 + b"}", valid_headers),
        "invalid utf-8 body": (b'{"seq": "\xff"}', valid_headers),
        "unreadable hub header": (
            good.value or b"",
            [*valid_headers, ("x-hub-origin-topic", b"t"), ("x-hub-origin-partition", b"abc")],
        ),
    }
    expected_stage = {
        "random bytes": "decode",
        "truncated json": "decode",
        "wrong type": "validate",
        "unknown version": "validate",
        "missing headers": "decode",
        "null header value": "decode",
        "header not utf-8": "decode",
        "schema invalid 1 MB": "validate",
        "deeply nested json": "decode",
        "integer past the digit limit": "decode",
        "invalid utf-8 body": "decode",
        "unreadable hub header": "decode",
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=probe.settings.kafka_bootstrap_servers, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        for name, (value, headers) in poison.items():
            await producer.send_and_wait(probe.input, value, key=name.encode(), headers=headers)
    finally:
        await producer.stop()
    # A valid record on the same partition, behind each poison record.
    behind = [probe.record(100 + n, name) for n, name in enumerate(poison)]
    await probe.publish([good, *behind])

    async with probe.runtime() as runtime:
        outputs = await probe.outputs(1 + len(behind))
        letters = await probe.dead_letters(len(poison), timeout_s=60)
    assert sorted(seq_of(output) for output in outputs) == [1, *range(100, 100 + len(poison))]
    assert runtime.pipeline.counts[Outcome.DEAD_LETTERED] == len(poison)
    by_name = {(letter.key or b"").decode(): letter for letter in letters}
    assert set(by_name) == set(poison)
    for name, (value, headers) in poison.items():
        letter = by_name[name]
        assert letter.value == value, name
        original = [(n, bytes(v)) for n, v in letter.headers if not deadletter.is_transit(n)]
        # A null header value comes back empty (see to_record); every other byte is kept
        # but for what claims to be the hub's own transit headers.
        kept = [(n, v or b"") for n, v in headers if not deadletter.is_transit(n)]
        assert original == kept, name
        assert headers_of(letter)["x-hub-error-stage"] == expected_stage[name], name
    assert (
        "unknown event type 'parcel.teleported.v1'"
        in headers_of(by_name["wrong type"])["x-hub-error-message"]
    )
    assert headers_of(by_name["unknown version"])["x-hub-error-message"] == (
        "unknown version of test.probe: v9 (this code knows v1)"
    )
    assert headers_of(by_name["deeply nested json"])["x-hub-error-message"].startswith(
        "body is not JSON: maximum recursion depth exceeded"
    )
    assert (
        "Exceeds the limit (4300 digits)"
        in (headers_of(by_name["integer past the digit limit"])["x-hub-error-message"])
    )
    assert headers_of(by_name["unreadable hub header"])["x-hub-error-message"].startswith(
        "hub headers are unreadable: invalid literal for int()"
    )


async def test_dead_letter_carries_the_original_bytes_and_every_contract_header(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    probe = Probe(make_settings(), unique, FaultPlan(permanent={7}))
    await probe.create_topics()
    record = probe.record(7, "case-z")
    await probe.publish([record])
    async with probe.runtime():
        (letter,) = await probe.dead_letters(1)
    headers = headers_of(letter)
    assert (letter.key, letter.value) == (record.key, record.value)
    assert [(n, bytes(v)) for n, v in letter.headers][: len(record.headers)] == list(record.headers)
    assert headers["x-hub-origin-topic"] == probe.input
    assert headers["x-hub-origin-offset"] == "0"
    assert headers["x-hub-origin-group"] == probe.group
    assert headers["x-hub-origin-handler"].endswith("FaultPlan.handle")
    assert headers["x-hub-error-class"] == "hub.core.errors.PermanentError"
    assert headers["x-hub-error-message"] == "probe 7 cannot be applied"
    assert "Traceback" in headers["x-hub-error-stacktrace"]
    assert headers["x-hub-error-stage"] == "handle"
    assert len(headers["x-hub-error-fingerprint"]) == 16
    assert headers["x-hub-attempts"] == "1"
    assert headers["x-hub-code-version"] == "test"
    assert headers["x-hub-schema"] == ProbeV1.dataschema()
    assert headers["x-hub-idempotency-key"] == f"{unique}-7"
    assert "x-hub-first-failure-at" in headers
    assert set(headers) >= {
        "x-hub-origin-partition",
        "x-hub-origin-timestamp",
    }


async def test_transient_failures_retry_through_the_retry_topic_and_emit_once(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    # Two in-process attempts fail, the retry topic's attempt succeeds.
    probe = Probe(make_settings(), unique, FaultPlan(transient={1: 2}))
    await probe.create_topics()
    await probe.publish([probe.record(1, "case-a")])
    async with probe.runtime() as runtime:
        (output,) = await probe.outputs(1)
        await asyncio.sleep(1.5)  # time for a wrong second output to show up
    outputs = await settle_and_read(probe.settings.kafka_bootstrap_servers, probe.output)
    assert [seq_of(record) for record in outputs] == [1]
    assert probe.plan.seen == [1, 1, 1]
    assert runtime.pipeline.counts[Outcome.RETRYING] == 1
    assert runtime.pipeline.counts[Outcome.PROCESSED] == 1
    assert seq_of(output) == 1


async def test_later_events_of_a_case_wait_behind_one_in_retry(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    probe = Probe(make_settings(), unique, FaultPlan(transient={1: 3}))
    await probe.create_topics()
    # 1 and 2 are one case; 3 is another case and must not wait.
    await probe.publish(
        [probe.record(1, "case-a"), probe.record(2, "case-a"), probe.record(3, "case-b")]
    )
    async with probe.runtime() as runtime:
        outputs = await probe.outputs(3)
    assert probe.plan.seen.index(3) < probe.plan.seen.index(2)  # other cases flow on
    first_success_of_1 = len(probe.plan.seen) - 1 - probe.plan.seen[::-1].index(1)
    assert probe.plan.seen.index(2) > first_success_of_1  # 2 waited for 1 to succeed
    case_a = [seq_of(r) for r in outputs if r.key == b"case-a"]
    assert case_a == [1, 2]
    assert runtime.pipeline.counts[Outcome.PARKED] == 1


async def test_exhausted_retries_dead_letter_and_release_the_case(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    probe = Probe(make_settings(max_attempts=4), unique, FaultPlan(transient={1: 100}))
    await probe.create_topics()
    await probe.publish([probe.record(1, "case-a"), probe.record(2, "case-a")])
    async with probe.runtime():
        (letter,) = await probe.dead_letters(1, timeout_s=60)
        (output,) = await probe.outputs(1)
    headers = headers_of(letter)
    assert headers["x-hub-attempts"] == "4"
    assert headers["x-hub-error-class"] == "hub.core.errors.TransientError"
    assert headers["x-hub-origin-topic"] == probe.input  # not the retry topic it came through
    assert seq_of(output) == 2


async def test_the_same_event_published_twice_has_one_effect(probe: Probe) -> None:
    await probe.create_topics()
    await probe.publish([probe.record(5, "case-a"), probe.record(5, "case-a")])
    async with probe.runtime() as runtime:
        await probe.outputs(1)
        await asyncio.sleep(1.0)
    outputs = await settle_and_read(probe.settings.kafka_bootstrap_servers, probe.output)
    assert len(outputs) == 1
    assert runtime.pipeline.counts[Outcome.DUPLICATE] == 1
    output_envelope = Envelope.from_headers(outputs[0].headers)
    assert output_envelope.causation_id == f"{probe.unique}-5"


def _start_worker(probe: Probe, state_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HUB_KAFKA_BOOTSTRAP_SERVERS": probe.settings.kafka_bootstrap_servers,
        "HUB_STATE_DIR": str(state_dir),
        "HUB_RETRY_TIERS": "1s,2s",
        "HUB_SHUTDOWN_GRACE_S": "10",
        "PYTHONPATH": os.pathsep.join([str(WORKER.parent), *sys.path]),
    }
    return subprocess.Popen(  # noqa: S603 - our own worker script
        [sys.executable, str(WORKER), probe.group, probe.input, probe.output],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


class OutputWatcher:
    """Follows the output topic and collects distinct output ids as they arrive."""

    def __init__(self, probe: Probe) -> None:
        self.consumer = AIOKafkaConsumer(
            probe.output,
            bootstrap_servers=probe.settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            group_id=None,
        )
        self.ids: set[str] = set()

    async def wait_for(self, at_least: int, timeout_s: float) -> set[str]:
        deadline = time.monotonic() + timeout_s
        while len(self.ids) < at_least and time.monotonic() < deadline:
            batches = await self.consumer.getmany(timeout_ms=100, max_records=50)
            for batch in batches.values():
                self.ids.update(Envelope.from_headers(r.headers).id for r in batch)
        return set(self.ids)


async def _effects(state_dir: Path, group: str, keys: Sequence[str]) -> int:
    store = SqliteStateStore(state_dir / f"{group}.db")
    await store.open()
    try:
        states = [await store.load_state(group, key) for key in keys]
    finally:
        await store.close()
    return sum(int(state["handled"]) for state in states if state)


@pytest.mark.parametrize(
    "stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"]
)
async def test_a_stopped_consumer_restarts_without_losing_or_repeating_an_effect(
    probe: Probe, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    total = 2000
    keys = [f"case-{n}" for n in range(50)]
    await probe.create_topics()
    await probe.publish([probe.record(seq, keys[seq % len(keys)]) for seq in range(total)])
    state_dir = tmp_path / "worker-state"
    started = time.monotonic()

    watcher = OutputWatcher(probe)
    await watcher.consumer.start()
    try:
        first = _start_worker(probe, state_dir)
        seen_before_stop = await watcher.wait_for(200, timeout_s=90)
        first.send_signal(stop_signal)
        _, first_stderr = first.communicate(timeout=30)
        assert 0 < len(seen_before_stop) < total, first_stderr.decode()[-2000:]

        second = _start_worker(probe, state_dir)
        try:
            ids = await watcher.wait_for(total, timeout_s=180)
        finally:
            second.send_signal(signal.SIGTERM)
            _, stderr = second.communicate(timeout=30)
    finally:
        await watcher.consumer.stop()
    elapsed = time.monotonic() - started

    records = await settle_and_read(probe.settings.kafka_bootstrap_servers, probe.output)
    per_seq = Counter(seq_of(record) for record in records)
    assert len(ids) == total, stderr.decode()[-2000:]
    assert set(per_seq) == set(range(total))  # none lost
    assert await _effects(state_dir, probe.group, keys) == total  # each effect exactly once
    print(  # noqa: T201 - the closing note quotes this line
        f"\n{stop_signal.name}: {total} inputs, {len(records)} output records, "
        f"{len(records) - total} redelivered duplicates (same ids), {len(ids)} distinct, "
        f"stopped after {len(seen_before_stop)}, {elapsed:.1f}s"
    )


async def test_two_instances_share_the_load_and_a_rebalance_loses_and_repeats_nothing(
    make_settings: Callable[..., HubSettings], unique: str, postgres_url: str
) -> None:
    total = 1800
    keys = [f"case-{n}" for n in range(60)]
    probe = Probe(make_settings(database_url=postgres_url, partitions=6), unique)
    await probe.create_topics()

    async def offer_steadily() -> None:
        # A batch kernel drains a preloaded topic before a second member can join: inputs
        # keep arriving (about 150/s) so that both members, and both rebalances, see traffic.
        sink = KafkaSink(probe.settings, client_id="test-publisher")
        await sink.start()
        try:
            for start in range(0, total, 30):
                chunk = range(start, min(start + 30, total))
                await sink.send([probe.record(seq, keys[seq % len(keys)]) for seq in chunk])
                await asyncio.sleep(0.2)
        finally:
            await sink.stop()

    watcher = OutputWatcher(probe)
    await watcher.consumer.start()
    first, second = probe.runtime(), probe.runtime()
    offering = asyncio.create_task(offer_steadily())
    try:
        await first.start()
        await watcher.wait_for(200, timeout_s=90)
        await second.start()  # joins the group: partitions move while messages are in flight
        await watcher.wait_for(900, timeout_s=120)
        await first.stop()  # leaves: its partitions move back to the second
        ids = await watcher.wait_for(total, timeout_s=180)
        await second.stop()
    finally:
        await offering
        await watcher.consumer.stop()

    records = await settle_and_read(probe.settings.kafka_bootstrap_servers, probe.output)
    assert len(ids) == total
    assert {seq_of(record) for record in records} == set(range(total))  # none lost
    handled = [runtime.pipeline.counts[Outcome.PROCESSED] for runtime in (first, second)]
    assert min(handled) > 0  # both instances did work
    store = open_store(postgres_url, default_path=Path("unused.db"))
    await store.open()
    try:
        states = [await store.load_state(probe.group, key) for key in keys]
    finally:
        await store.close()
    # Every key's counter equals its inputs: no effect lost or applied twice by either instance.
    assert [int(state["handled"]) for state in states if state] == [total // len(keys)] * len(keys)
    print(  # noqa: T201 - the closing note quotes this line
        f"\nscale-out: {total} inputs, {len(records)} output records, handled {handled}"
    )


class FlakyStore(SqliteStateStore):
    """A store that cannot be reached for batches holding one key's events, until mended."""

    def __init__(self, path: Path, unreachable_for: set[str]) -> None:
        super().__init__(path)
        self.unreachable_for = unreachable_for
        self.refused_at: list[float] = []

    async def load_batch(
        self, group: str, events: Collection[EventId], keys: Collection[str]
    ) -> BatchSnapshot:
        if self.unreachable_for & set(keys):
            self.refused_at.append(time.monotonic())
            raise ConnectionError("state store unreachable")
        return await super().load_batch(group, events, keys)


async def test_a_store_outage_pauses_only_its_partition_with_backoff(
    make_settings: Callable[..., HubSettings], unique: str, tmp_path: Path
) -> None:
    partitions = 3
    probe = Probe(make_settings(partitions=partitions), unique)
    await probe.create_topics()

    def partition_of(key: str) -> int:
        hashed: int = murmur2(key.encode())
        return (hashed & 0x7FFFFFFF) % partitions  # the producer's default partitioner

    elsewhere = [
        f"case-{n}" for n in range(12) if partition_of(f"case-{n}") != partition_of("case-slow")
    ]
    assert elsewhere
    store = FlakyStore(tmp_path / "flaky.db", unreachable_for={"case-slow"})
    runtime = ServiceRuntime(probe.service, probe.settings, registry=REGISTRY, store=store)
    slow = [probe.record(seq, "case-slow") for seq in range(5)]
    fine = [probe.record(100 + n, key) for n, key in enumerate(elsewhere * 3)]
    await probe.publish([*slow, *fine])

    watcher = OutputWatcher(probe)
    await watcher.consumer.start()
    try:
        async with runtime:
            # The other partitions flow while the slow one waits for its store.
            assert len(await watcher.wait_for(len(fine), timeout_s=60)) == len(fine)
            # ... and the slow one's records stay unhandled for as long as the outage lasts.
            assert len(await watcher.wait_for(len(fine) + 1, timeout_s=3)) == len(fine)
            # A failed poll is settled again partition by partition at once: the two reads of
            # one attempt, a fraction of a millisecond apart, count as one.
            refusals = [
                at
                for before, at in itertools.pairwise([-1.0, *store.refused_at])
                if at - before > 0.05
            ]
            store.unreachable_for = set()
            done = await watcher.wait_for(len(fine) + len(slow), timeout_s=60)
    finally:
        await watcher.consumer.stop()
    assert len(done) == len(fine) + len(slow)
    # Backed off, not spinning: a few tries in those seconds, never closer than the first
    # back-off, and not getting closer. A resumed partition's records may wait for the fetch
    # already in flight (up to half a second), so the gaps are compared with that margin.
    assert 2 <= len(refusals) <= 5, refusals
    gaps = [later - earlier for earlier, later in itertools.pairwise(refusals)]
    assert min(gaps) >= 0.3, gaps
    assert gaps[-1] >= gaps[0] - 0.1, gaps
    assert runtime.pipeline.counts[Outcome.PROCESSED] == len(fine) + len(slow)
