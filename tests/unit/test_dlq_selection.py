"""Dead letters as values: parsing the contract headers, selecting, grouping, generations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.core.deadletter import Failure, Origin, failure_headers
from hub.core.errors import SchemaViolationError
from hub.core.store.base import KafkaRecord
from hub.ops.dlq import (
    DeadLetter,
    Generations,
    Ref,
    Selection,
    group_by_fingerprint,
    group_of_topic,
    is_dead_letter_topic,
    summarise,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ORIGINAL = (("ce_id", b"evt-1"), ("ce_type", b"test.probe.v1"), ("x-custom", b"\xff\x00"))


def letter(
    offset: int,
    *,
    group: str = "dispatch",
    message: str = "probe 7 cannot be applied",
    at: datetime = T0,
    origin_offset: int | None = None,
    replay_count: int | None = None,
    ce_id: str = "evt-1",
) -> DeadLetter:
    failure = Failure(SchemaViolationError(message), "validate", 1, at)
    headers = failure_headers(
        origin=Origin("aftersales.cases", 2, offset if origin_offset is None else origin_offset, 5),
        group=group,
        handler="-",
        failure=failure,
        code_version="1.4.2",
        schema="urn:x:1.0",
        idempotency_key=ce_id,
    )
    lineage = (("x-hub-replay-count", str(replay_count).encode()),) if replay_count else ()
    original = tuple((n, ce_id.encode() if n == "ce_id" else v) for n, v in ORIGINAL)
    return DeadLetter.from_record(
        KafkaRecord(
            topic=f"aftersales.cases.{group}.dlq",
            partition=0,
            offset=offset,
            timestamp_ms=int(at.timestamp() * 1000),
            key=b"case-1",
            value=b"{}",
            headers=(*original, *lineage, *headers),
        )
    )


def test_a_dead_letter_reads_every_contract_header() -> None:
    dead = letter(4, replay_count=2)
    assert dead.group == "dispatch"
    assert dead.error_class == "hub.core.errors.SchemaViolationError"
    assert dead.stage == "validate"
    assert len(dead.fingerprint) == 16
    assert (dead.attempts, dead.code_version, dead.schema) == (1, "1.4.2", "urn:x:1.0")
    assert (dead.idempotency_key, dead.case_id, dead.replay_count) == ("evt-1", "case-1", 2)
    assert dead.ref == Ref("aftersales.cases.dispatch.dlq", 0, 4)
    assert dead.dead_lettered_at == T0
    assert dead.origin == Origin("aftersales.cases", 2, 4, 5)
    assert dead.original_headers == ORIGINAL  # byte for byte, lineage and hub headers left out


def test_a_damaged_letter_still_parses() -> None:
    record = KafkaRecord("x.g.dlq", 0, 1, 0, None, None, ())
    dead = DeadLetter.from_record(record)
    assert (dead.group, dead.error_class, dead.fingerprint, dead.replay_count) == ("g", "?", "?", 0)


def test_refs_parse_and_print() -> None:
    ref = Ref.parse("storefront.aftersales.requests.intake.dlq:1:42")
    assert ref == Ref("storefront.aftersales.requests.intake.dlq", 1, 42)
    assert str(ref) == "storefront.aftersales.requests.intake.dlq:1:42"
    for bad in ("topic", "topic:1", "topic:x:1", ":1:2"):
        with pytest.raises(ValueError, match="not a dead-letter reference"):
            Ref.parse(bad)


def test_dead_letter_topic_names() -> None:
    assert is_dead_letter_topic("aftersales.cases.dispatch.dlq")
    assert is_dead_letter_topic("aftersales.cases.dispatch.dlq", "dispatch")
    assert not is_dead_letter_topic("aftersales.cases.dispatch.dlq", "patch")
    assert not is_dead_letter_topic("dispatch.replay")
    assert group_of_topic("aftersales.cases.gateway-sf.dlq") == "gateway-sf"


def test_selection_criteria_all_have_to_hold() -> None:
    dead = letter(4, at=T0)
    assert Selection().matches(dead)
    assert Selection(group="dispatch").matches(dead)
    assert not Selection(group="notify").matches(dead)
    assert Selection(ids=frozenset({"evt-1"})).matches(dead)
    assert Selection(refs=frozenset({dead.ref})).matches(dead)
    assert not Selection(ids=frozenset({"evt-2"})).matches(dead)
    assert Selection(fingerprint=dead.fingerprint).matches(dead)
    assert not Selection(fingerprint="0" * 16).matches(dead)
    assert Selection(error_class="SchemaViolationError").matches(dead)
    assert Selection(error_class="hub.core.errors.SchemaViolationError").matches(dead)
    assert not Selection(error_class="ViolationError").matches(dead)
    assert Selection(since=T0, until=T0 + timedelta(seconds=1)).matches(dead)
    assert not Selection(since=T0 + timedelta(seconds=1)).matches(dead)
    assert not Selection(until=T0).matches(dead)
    assert not Selection(group="dispatch", fingerprint="0" * 16).matches(dead)


def test_a_selection_survives_its_description() -> None:
    selection = Selection(
        group="dispatch",
        refs=frozenset({Ref("a.b.dispatch.dlq", 0, 3), Ref("a.b.dispatch.dlq", 1, 9)}),
        ids=frozenset({"evt-1", "evt-2"}),
        fingerprint="abcdef0123456789",
        error_class="SchemaViolationError",
        since=T0,
        until=T0 + timedelta(hours=1),
    )
    assert Selection.from_description(selection.describe()) == selection
    assert Selection().describe() == {}


def test_alike_failures_share_a_fingerprint_group() -> None:
    letters = [
        letter(0, message="probe 7 cannot be applied", at=T0),
        letter(1, message="probe 8 cannot be applied", at=T0 + timedelta(minutes=5)),
        letter(2, message="something else entirely", at=T0 + timedelta(minutes=1)),
        letter(3, group="notify", message="probe 9 cannot be applied"),
    ]
    groups = group_by_fingerprint(letters)
    assert [(g.group, g.count) for g in groups] == [("dispatch", 2), ("dispatch", 1), ("notify", 1)]
    first = groups[0]
    assert (first.first_seen, first.last_seen) == (T0, T0 + timedelta(minutes=5))
    assert first.schemas == {"urn:x:1.0": 2}
    assert first.code_versions == {"1.4.2": 2}
    assert [str(ref) for ref in first.refs] == [
        "aftersales.cases.dispatch.dlq:0:0",
        "aftersales.cases.dispatch.dlq:0:1",
    ]


def test_summaries_per_service() -> None:
    letters = [letter(n, at=T0 + timedelta(minutes=n)) for n in range(3)]
    letters.append(letter(9, group="notify"))
    dispatch, notify = summarise(letters)
    assert (dispatch.group, dispatch.count, notify.count) == ("dispatch", 3, 1)
    assert (dispatch.oldest, dispatch.newest) == (T0, T0 + timedelta(minutes=2))
    assert dispatch.top() == [(letters[0].fingerprint, 3)]


def test_only_the_newest_generation_of_a_message_counts() -> None:
    first = letter(0, origin_offset=7)
    again = letter(5, origin_offset=7, replay_count=1, at=T0 + timedelta(minutes=1))
    other = letter(6, origin_offset=8)
    generations = Generations.of([again, first, other])
    assert not generations.is_newest(first)
    assert generations.is_newest(again)
    assert generations.is_newest(other)
    assert generations.is_newest(letter(9, origin_offset=99))  # never seen: not superseded
