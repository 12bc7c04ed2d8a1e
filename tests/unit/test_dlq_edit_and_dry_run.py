"""Edit-and-replay diffs and the dry-run's predictions, without a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from probe import REGISTRY, FaultPlan, ProbeV1, probe_service

from hub.core.deadletter import Failure, Origin, failure_headers
from hub.core.errors import PermanentError
from hub.core.outbound import event_record
from hub.core.store.base import EventId, KafkaRecord
from hub.core.store.sqlite import SqliteStateStore
from hub.ops.dlq import DeadLetter, Generations
from hub.ops.dryrun import predict
from hub.ops.edit import apply_assignments, diff, parse_assignment

if TYPE_CHECKING:
    from pathlib import Path

AT = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)


def test_assignments_set_nested_fields_on_a_copy() -> None:
    payload = {"customer": {"phone": "n/a", "name": "张伟"}, "seq": 1}
    edited = apply_assignments(payload, {"customer.phone": "13800138000", "item.sku": "X"})
    assert edited == {
        "customer": {"phone": "13800138000", "name": "张伟"},
        "seq": 1,
        "item": {"sku": "X"},
    }
    assert payload["customer"] == {"phone": "n/a", "name": "张伟"}  # untouched
    with pytest.raises(TypeError, match="seq is not an object"):
        apply_assignments(payload, {"seq.inner": 1})


def test_assignment_text_is_a_string_unless_asked_for_json() -> None:
    assert parse_assignment("customer.phone=13800138000") == ("customer.phone", "13800138000")
    assert parse_assignment("seq=42", as_json=True) == ("seq", 42)
    assert parse_assignment("note=a=b") == ("note", "a=b")
    with pytest.raises(ValueError, match="path=value"):
        parse_assignment("no-equals-sign")


def test_the_diff_names_each_changed_leaf() -> None:
    before = {"seq": "x", "customer": {"phone": "n/a", "name": "A"}, "gone": 1}
    after = {"seq": 42, "customer": {"phone": "138", "name": "A"}, "new": [1]}
    changes = [(c.path, c.before, c.after) for c in diff(before, after)]
    assert changes == [
        ("customer.phone", "n/a", "138"),
        ("gone", 1, None),
        ("new", None, [1]),
        ("seq", "x", 42),
    ]
    assert diff(before, before) == []
    assert [(c.path, c.before) for c in diff(None, {"a": 1})] == [("$", None)]


def dead_letter(offset: int, value: bytes, *, seq: int, replay_count: int = 0) -> DeadLetter:
    record = event_record(
        "test.probe", ProbeV1(seq=seq), key=f"case-{seq % 2}", source="urn:t", event_id=f"e-{seq}"
    )
    failure = Failure(PermanentError("probe cannot be applied"), "handle", 1, AT)
    hub = failure_headers(
        origin=Origin("test.probe", 0, seq, 0),
        group="probe",
        handler="h",
        failure=failure,
        code_version="t",
        schema=None,
        idempotency_key=f"e-{seq}",
    )
    lineage = (("x-hub-replay-count", str(replay_count).encode()),) if replay_count else ()
    return DeadLetter.from_record(
        KafkaRecord(
            "test.probe.probe.dlq",
            0,
            offset,
            0,
            record.key,
            value,
            (*record.headers, *lineage, *hub),
        )
    )


def good(offset: int, seq: int, replay_count: int = 0) -> DeadLetter:
    return dead_letter(offset, ProbeV1(seq=seq).to_bytes(), seq=seq, replay_count=replay_count)


async def test_the_dry_run_predicts_each_letter_as_the_pipeline_would(tmp_path: Path) -> None:
    plan = FaultPlan(permanent={3})
    service = probe_service("probe", "test.probe", "out", plan)
    store = SqliteStateStore(tmp_path / "probe.db")
    await store.open()
    try:
        await store.record_processed(
            "probe", EventId("urn:t", "e-4"), key="case-0", state={"handled": 1}
        )
        letters = [
            good(0, 1),
            good(1, 3),  # the handler still refuses it
            dead_letter(2, b'{"seq": "x"}', seq=5),  # schema-invalid today
            dead_letter(3, b"\xff", seq=6),  # not JSON
            good(4, 4),  # already processed
            good(5, 1),  # the same event again in this run
            good(6, 8, replay_count=3),  # replayed too often
        ]
        predictions = await predict(
            letters, registry=REGISTRY, max_replays=3, service=service, store=store
        )
        assert [(p.ref.offset, p.verdict, p.stage) for p in predictions] == [
            (0, "pass", "handle"),
            (1, "fail", "handle"),
            (2, "fail", "validate"),
            (3, "fail", "decode"),
            (4, "duplicate", "handle"),
            (5, "duplicate", "handle"),
            (6, "park", ""),
        ]
        assert "probe 3 cannot be applied" in predictions[1].reason
        assert "(permanent)" in predictions[1].reason
        assert await store.load_state("probe", "case-1") is None  # nothing was written
        assert plan.seen == [1, 3]

        # Without the service, only today's models are checked.
        shallow = await predict(letters[:3], registry=REGISTRY, max_replays=3)
        assert [p.verdict for p in shallow] == ["pass", "pass", "fail"]
    finally:
        await store.close()


async def test_the_dry_run_skips_letters_a_newer_generation_supersedes() -> None:
    service = probe_service("probe", "test.probe", "out", FaultPlan())
    first, second = good(0, 2), good(1, 4)  # both case-0
    older = good(2, 6)
    newer = dead_letter(3, ProbeV1(seq=6).to_bytes(), seq=6, replay_count=1)
    predictions = await predict(
        [first, second, older, newer],
        registry=REGISTRY,
        max_replays=3,
        service=service,
        generations=Generations.of([first, second, older, newer]),
    )
    assert [p.verdict for p in predictions] == ["pass", "pass", "superseded", "pass"]


def test_audit_diff_is_json() -> None:
    (change,) = diff({"a": 1}, {"a": 2})
    assert json.loads(change.model_dump_json()) == {"path": "a", "before": 1, "after": 2}
