"""The console's dead-letter view: its running counts equal `hub dlq list|groups`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.core.deadletter import Failure, Origin, failure_headers
from hub.core.errors import PermanentError, SchemaViolationError
from hub.core.store.base import KafkaRecord
from hub.ops.dlq import (
    DeadLetter,
    FingerprintGroup,
    Selection,
    ServiceSummary,
    group_by_fingerprint,
    summarise,
)
from hub.ops.index import Snapshot, Tallies, slim

NOW = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)


def letter(n: int) -> DeadLetter:
    group = "intake" if n % 3 == 0 else "dispatch"
    error = SchemaViolationError(f"phone {n} invalid") if n % 2 else PermanentError(f"order {n}")
    at = NOW - timedelta(minutes=50 * n)
    headers = failure_headers(
        origin=Origin("aftersales.cases", 0, n, 5),
        group=group,
        handler="-",
        failure=Failure(error, "validate" if n % 2 else "handle", 1, at),
        code_version="1.0",
        schema="urn:x:1.0",
        idempotency_key=f"evt-{n}",
    )
    return DeadLetter.from_record(
        KafkaRecord(
            topic=f"aftersales.cases.{group}.dlq",
            partition=0,
            offset=n,
            timestamp_ms=int(at.timestamp() * 1000),
            key=f"case-{n}".encode(),
            value=b'{"big": "' + b"x" * 500 + b'"}',
            headers=(("ce_id", f"evt-{n}".encode()), *headers),
        )
    )


def test_slim_letters_keep_what_lists_and_selections_need() -> None:
    full = letter(7)
    light = slim(full)
    assert light.record.value is None
    assert all(name.startswith("x-hub-origin-") for name, _ in light.record.headers)
    for field in ("ref", "group", "fingerprint", "error_class", "stage", "case_id", "identity"):
        assert getattr(light, field) == getattr(full, field), field
    assert light.dead_lettered_at == full.dead_lettered_at


def test_tallies_count_as_the_cli_does() -> None:
    letters = sorted((slim(letter(n)) for n in range(60)), key=lambda x: x.ref)
    tallies = Tallies.of(letters)
    snapshot = Snapshot(1, letters, tallies, {}, {}, caught_up=True, refreshed_at=NOW)

    def summary_rows(rows: list[ServiceSummary]) -> list[tuple[object, ...]]:
        return [(s.group, s.count, s.oldest, s.newest, s.top(), dict(s.topics)) for s in rows]

    def group_rows(rows: list[FingerprintGroup]) -> list[tuple[object, ...]]:
        return [(g.group, g.fingerprint, g.count, g.first_seen, g.last_seen, g.refs) for g in rows]

    assert summary_rows(snapshot.summaries()) == summary_rows(summarise(letters))
    assert group_rows(snapshot.groups()) == group_rows(group_by_fingerprint(letters))
    intake = [x for x in letters if x.group == "intake"]
    assert group_rows(snapshot.groups("intake")) == group_rows(group_by_fingerprint(intake))
    assert snapshot.selected(Selection(group="intake")) == intake

    trend = snapshot.trend()
    assert sum(trend["intake"]) == sum(
        1 for x in intake if x.dead_lettered_at > NOW - timedelta(hours=24)
    )
    assert trend["intake"][-1] == 1  # letter 0, written in the current hour
