"""On the real broker: `hub dlq` replay, dry-run, checkpoints, parking, edit, audit."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest
from kafka_io import create_topics, publish, read_records, settle_and_read
from probe import REGISTRY, FaultPlan, ProbeDoneV1, ProbeV1, probe_service

from hub.core.outbound import OutRecord, event_record
from hub.core.pipeline import Outcome
from hub.core.service import KafkaSink, ServiceRuntime
from hub.core.topics import AUDIT, Subscription, dead_letter_topic, parking_topic, replay_topic
from hub.messages.ops import OpsActionAuditedV1
from hub.ops.actions import Ops
from hub.ops.dlq import Selection

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from aiokafka import ConsumerRecord

    from hub.core.handler import Service
    from hub.core.settings import HubSettings

pytestmark = pytest.mark.integration


class Group:
    """One probe consumer group on a shared input topic, with its own output topic."""

    def __init__(self, settings: HubSettings, name: str, input_topic: str, plan: FaultPlan) -> None:
        self.settings = settings
        self.group = name
        self.input = input_topic
        self.output = f"test.dlq-done.{name}"
        self.plan = plan
        self.service: Service = probe_service(name, input_topic, self.output, plan)

    @property
    def dlq(self) -> str:
        return dead_letter_topic(self.input, self.group)

    def runtime(self) -> ServiceRuntime:
        return ServiceRuntime(self.service, self.settings, registry=REGISTRY)

    async def outputs(
        self, count: int, timeout_s: float = 30
    ) -> list[ConsumerRecord[bytes, bytes]]:
        return await read_records(
            self.settings.kafka_bootstrap_servers, self.output, count=count, timeout_s=timeout_s
        )

    async def settled_outputs(self) -> list[ConsumerRecord[bytes, bytes]]:
        return await settle_and_read(
            self.settings.kafka_bootstrap_servers, self.output, quiet_s=1.0
        )

    async def dead_letters(
        self, count: int, timeout_s: float = 30
    ) -> list[ConsumerRecord[bytes, bytes]]:
        return await read_records(
            self.settings.kafka_bootstrap_servers, self.dlq, count=count, timeout_s=timeout_s
        )


async def setup(settings: HubSettings, groups: Sequence[Group]) -> None:
    await create_topics(
        settings,
        [Subscription(g.group, (g.input,)) for g in groups],
        [g.output for g in groups],
    )


def probe_record(topic: str, unique: str, seq: int) -> OutRecord:
    return event_record(
        topic,
        ProbeV1(seq=seq),
        key=f"case-{seq % 50}",
        source="urn:test",
        event_id=f"{unique}-{seq}",
    )


def seq_of(record: ConsumerRecord[bytes, bytes]) -> int:
    return ProbeDoneV1.model_validate_json(record.value or b"").seq


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name: bytes(value).decode(errors="replace") for name, value in record.headers}


async def audits(settings: HubSettings, group: str, count: int) -> list[OpsActionAuditedV1]:
    records = await read_records(
        settings.kafka_bootstrap_servers,
        AUDIT,
        count=count,
        timeout_s=15,
        match=lambda record: record.key == group.encode(),
    )
    return [OpsActionAuditedV1.model_validate_json(record.value or b"") for record in records]


@pytest.fixture
def settings(make_settings: Callable[..., HubSettings]) -> HubSettings:
    return make_settings()


async def test_replay_after_the_fix_processes_each_dead_letter_once_and_only_in_the_failing_group(
    settings: HubSettings, unique: str
) -> None:
    total = 1000
    topic = f"test.dlq-in.{unique}"
    failing = Group(settings, f"fail-{unique}", topic, FaultPlan(permanent=set(range(total))))
    healthy = Group(settings, f"ok-{unique}", topic, FaultPlan())
    await setup(settings, [failing, healthy])
    await publish(settings, [probe_record(topic, unique, seq) for seq in range(total)])

    async with failing.runtime() as fail_rt, healthy.runtime() as ok_rt:
        assert len(await failing.dead_letters(total)) == total
        assert len(await healthy.outputs(total)) == total
        failing.plan.permanent.clear()  # the fault is fixed

        async with Ops(settings, actor="oncall-test", reason="fix deployed") as ops:
            selection = Selection(group=failing.group)
            predictions = await ops.dry_run(
                selection, registry=REGISTRY, service=failing.service, store=fail_rt.store
            )
            assert Counter(p.verdict for p in predictions) == {"pass": total}
            assert failing.plan.seen.count(0) == 2  # the dry-run ran the handler, sent nothing
            assert await failing.settled_outputs() == []

            first = await ops.replay(await ops.plan_replay(selection))
            assert (first.sent, first.parked, first.done) == (total, 0, True)
            outputs = await failing.outputs(total)
            assert sorted(seq_of(r) for r in outputs) == list(range(total))

            second = await ops.replay(await ops.plan_replay(selection))
            assert second.sent == total
            for _ in range(150):
                if fail_rt.pipeline.counts[Outcome.DUPLICATE] >= total:
                    break
                await asyncio.sleep(0.2)
        outputs = await failing.settled_outputs()
        assert len(outputs) == total  # replayed twice, one effect each
        assert sorted(seq_of(r) for r in outputs) == list(range(total))
        assert fail_rt.pipeline.counts[Outcome.PROCESSED] == total
        assert fail_rt.pipeline.counts[Outcome.DUPLICATE] == total
        # The healthy group never saw a replayed record.
        assert ok_rt.pipeline.counts == Counter({Outcome.PROCESSED: total})

    replayed = await read_records(
        settings.kafka_bootstrap_servers, replay_topic(failing.group), count=2 * total
    )
    assert len(replayed) == 2 * total
    headers = headers_of(replayed[0])
    assert headers["x-hub-replay-count"] == "1"
    assert headers["x-hub-replay-by"] == "oncall-test"
    assert headers["x-hub-replay-id"] in {first.replay_id, second.replay_id}
    assert headers["x-hub-origin-topic"] == topic
    assert "x-hub-error-class" not in headers  # a replay starts a fresh retry budget
    trail = await audits(settings, failing.group, 3)
    assert [(a.action, a.count, a.outcome.get("sent")) for a in trail] == [
        ("dry-run", total, None),
        ("replay", total, total),
        ("replay", total, total),
    ]
    assert trail[0].outcome == {"pass": total}
    assert {trail[1].replay_id, trail[2].replay_id} == {first.replay_id, second.replay_id}
    assert all(a.actor == "oncall-test" and a.reason == "fix deployed" for a in trail)


async def test_dry_run_predicts_exactly_which_pass_and_repeat_failures_are_parked(
    settings: HubSettings, unique: str
) -> None:
    total = 200
    topic = f"test.dlq-in.{unique}"
    group = Group(settings, f"fail-{unique}", topic, FaultPlan(permanent=set(range(total))))
    await setup(settings, [group])
    await publish(settings, [probe_record(topic, unique, seq) for seq in range(total)])
    odd = {seq for seq in range(total) if seq % 2}

    async with group.runtime() as runtime:
        originals = await group.dead_letters(total)
        group.plan.permanent = set(odd)  # half of the fault is fixed
        async with Ops(settings, actor="oncall-test") as ops:
            selection = Selection(group=group.group)
            predictions = await ops.dry_run(
                selection, registry=REGISTRY, service=group.service, store=runtime.store
            )
            by_offset = {
                (r.partition, r.offset): ProbeV1.model_validate_json(r.value or b"").seq
                for r in originals
            }
            predicted = {
                by_offset[(p.ref.partition, p.ref.offset)] for p in predictions if p.passes
            }
            assert predicted == set(range(total)) - odd
            assert all("probe" in p.reason for p in predictions if not p.passes)

            first = await ops.replay(await ops.plan_replay(selection, max_replays=1))
            assert first.sent == total
            outputs = await group.outputs(total - len(odd))
            again = await group.dead_letters(total + len(odd))
            assert {seq_of(r) for r in outputs} == predicted
            repeated = [r for r in again if headers_of(r).get("x-hub-replay-count") == "1"]
            assert len(repeated) == len(odd)
            assert {headers_of(r)["x-hub-replay-id"] for r in repeated} == {first.replay_id}

            # A second replay: the letters replayed once already are parked, not sent again.
            second = await ops.replay(await ops.plan_replay(selection, max_replays=1))
            # Odd ones failed again: their newest dead letter is parked, the first one superseded.
            assert (second.sent, second.parked, second.superseded) == (
                total - len(odd),
                len(odd),
                len(odd),
            )
            # A third: what is parked stays parked, once.
            third = await ops.replay(await ops.plan_replay(selection, max_replays=1))
            assert (third.parked, third.already_parked) == (0, len(odd))
    parked = await settle_and_read(settings.kafka_bootstrap_servers, parking_topic(group.group))
    assert len(parked) == len(odd)
    assert {ProbeV1.model_validate_json(r.value or b"").seq for r in parked} == odd
    assert all(headers_of(r)["x-hub-replay-count"] == "1" for r in parked)


class CrashingSink:
    """Delivers its `crash_on`-th batch to the broker, then fails as a killed process would."""

    def __init__(self, sink: KafkaSink, crash_on: int) -> None:
        self.sink = sink
        self.crash_on = crash_on
        self.calls = 0

    async def send(self, records: Sequence[OutRecord]) -> None:
        self.calls += 1
        await self.sink.send(records)
        if self.calls == self.crash_on:
            raise RuntimeError("simulated crash after the broker acknowledged the chunk")


@pytest.mark.parametrize("memory_mb", ["64", "0"], ids=["kept", "read-again"])
async def test_an_interrupted_replay_resumes_without_sending_anything_twice(
    settings: HubSettings, unique: str, memory_mb: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both ways to the send pass: the letters the generations pass kept, or a second read.
    monkeypatch.setenv("HUB_REPLAY_MEMORY_MB", memory_mb)
    total = 300
    topic = f"test.dlq-in.{unique}"
    group = Group(settings, f"fail-{unique}", topic, FaultPlan(permanent=set(range(total))))
    await setup(settings, [group])
    await publish(settings, [probe_record(topic, unique, seq) for seq in range(total)])
    async with group.runtime():
        await group.dead_letters(total)
    stop = asyncio.Event()
    async with Ops(settings, actor="oncall-test") as ops:
        plan = await ops.plan_replay(Selection(group=group.group), rate=500.0)
        started = time.monotonic()
        # 1. Stopped (Ctrl-C): ends at a chunk boundary.
        stopped = await ops.replay(
            plan, stop=stop, progress=lambda cp: stop.set() if cp.sent >= 100 else None
        )
        assert not stopped.done
        assert stopped.sent == 100
        # 2. Crashed after the broker took a chunk but before the checkpoint said so.
        assert isinstance(ops.sink, KafkaSink)
        crashing = Ops(settings, actor="oncall-test", sink=CrashingSink(ops.sink, crash_on=2))
        with pytest.raises(RuntimeError, match="simulated crash"):
            await crashing.replay(ops.load_replay(plan.replay_id))
        crashed = ops.load_replay(plan.replay_id)
        assert (crashed.sent, len(crashed.in_flight)) == (150, 1)  # 50 more went unrecorded
        # 3. Resumed: the unrecorded chunk is found on the replay topic, not sent again.
        resumed = await ops.replay(ops.load_replay(plan.replay_id))
        elapsed = time.monotonic() - started
    assert (resumed.done, resumed.sent, resumed.in_flight) == (True, total, [])
    # 500/s in chunks of 50: each run's first chunk goes at once, each later one waits 0.1 s.
    assert elapsed >= 0.1 * (2 - 1 + 2 - 1 + 2 - 1)
    replayed = await settle_and_read(
        settings.kafka_bootstrap_servers, replay_topic(group.group), quiet_s=1.0
    )
    origins = Counter(
        (headers_of(r)["x-hub-origin-partition"], headers_of(r)["x-hub-origin-offset"])
        for r in replayed
    )
    assert len(replayed) == total
    assert max(origins.values()) == 1
    trail = await audits(settings, group.group, 3)
    assert [(a.action, a.outcome["sent"], a.outcome["done"]) for a in trail] == [
        ("replay", 100, 0),
        ("replay", 50, 0),  # the crashed run audits what its checkpoint knew
        ("replay", total - 150, 1),
    ]
    assert {a.replay_id for a in trail} == {plan.replay_id}


async def test_edit_and_replay_keeps_the_original_and_audits_the_diff(
    settings: HubSettings, unique: str
) -> None:
    topic = f"test.dlq-in.{unique}"
    group = Group(settings, f"fail-{unique}", topic, FaultPlan())
    await setup(settings, [group])
    good = probe_record(topic, unique, 1)
    bad = OutRecord(topic, b"case-x", json.dumps({"seq": "forty-two"}).encode(), good.headers)
    await publish(settings, [bad])
    async with group.runtime():
        (letter,) = await group.dead_letters(1)
        ref = f"{letter.topic}:{letter.partition}:{letter.offset}"
        async with Ops(settings, actor="oncall-test", reason="typo in seq") as ops:
            shown = await ops.show(ref, REGISTRY)
            assert shown.event is None
            assert shown.problem is not None
            assert "seq" in shown.problem
            assert shown.letter.case_id == "case-x"
            edited = await ops.edit(
                ref, registry=REGISTRY, assignments={"seq": 42, "payload": "fixed"}
            )
        (output,) = await group.outputs(1)
    assert seq_of(output) == 42
    (still,) = await read_records(settings.kafka_bootstrap_servers, group.dlq, count=1)
    assert (still.offset, still.value, still.headers) == (
        letter.offset,
        letter.value,
        letter.headers,
    )
    (copy,) = await read_records(
        settings.kafka_bootstrap_servers, replay_topic(group.group), count=1
    )
    assert headers_of(copy)["x-hub-replay-id"] == edited.replay_id
    assert headers_of(copy)["x-hub-replay-count"] == "1"
    assert json.loads(copy.value or b"") == {"seq": 42, "payload": "fixed"}
    show_audit, edit_audit = await audits(settings, group.group, 2)
    assert (show_audit.action, show_audit.refs) == ("show", (ref,))
    assert edit_audit.action == "edit"
    assert edit_audit.refs == (ref,)
    assert edit_audit.reason == "typo in seq"
    assert [(c.path, c.before, c.after) for c in edit_audit.diff] == [
        ("payload", None, "fixed"),
        ("seq", "forty-two", 42),
    ]


async def test_purge_deletes_up_to_an_offset_and_is_audited(
    settings: HubSettings, unique: str
) -> None:
    topic = f"test.dlq-in.{unique}"
    group = Group(settings, f"fail-{unique}", topic, FaultPlan(permanent=set(range(30))))
    await setup(settings, [group])
    await publish(settings, [probe_record(topic, unique, seq) for seq in range(30)])
    async with group.runtime():
        await group.dead_letters(30)
    async with Ops(settings, actor="oncall-test", reason="handled by hand") as ops:
        plan = await ops.purge_plan(group.dlq)
        assert sum(upto - first for first, upto in plan.values()) == 30
        assert await ops.purge(plan) == 30
        assert await ops.letters(Selection(group=group.group)) == []
        (trail,) = await ops.trail(group=group.group)
        assert (trail.action, trail.actor, trail.count) == ("purge", "oncall-test", 30)
    (purge,) = await audits(settings, group.group, 1)
    assert (purge.action, purge.count, purge.outcome) == ("purge", 30, {"deleted": 30})
    assert purge.reason == "handled by hand"
    assert group.dlq in purge.selection["topics"]
