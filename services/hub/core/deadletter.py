"""The `x-hub-*` headers of retried and dead-lettered records: a contract for on-call tools."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hub.core.errors import fingerprint

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from hub.core.errors import Stage
    from hub.core.store.base import Headers, KafkaRecord

PREFIX = "x-hub-"
REPLAY_PREFIX = "x-hub-replay-"
DUE_AT = "x-hub-due-at"
ATTEMPTS = "x-hub-attempts"
FIRST_FAILURE_AT = "x-hub-first-failure-at"
RETRY_OF = "x-hub-retry-of"
"""On a retry record: where the record it was made from was read (topic:partition:offset)."""
MAX_MESSAGE = 1_000
MAX_STACKTRACE = 8_000


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record was first read, before any retry or replay hop."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Failure:
    """The last failure of a record and its history, as the headers carry it."""

    error: BaseException
    stage: Stage
    attempts: int
    first_failure_at: datetime


def is_transit(name: str) -> bool:
    """Headers the hub adds while a record is retried; replay lineage is part of the record."""
    return name.startswith(PREFIX) and not name.startswith(REPLAY_PREFIX)


def original_headers(headers: Headers) -> Headers:
    """The record's own headers, byte for byte, without the hub's transit headers."""
    return tuple((name, value) for name, value in headers if not is_transit(name))


def header(headers: Headers, name: str) -> str | None:
    """The first value of header `name` as text, or None."""
    for key, value in headers:
        if key == name:
            return value.decode(errors="replace")
    return None


def first_values(headers: Headers, names: Collection[str]) -> dict[str, str]:
    """The first value of each of `names` present, as text: one pass where `header` takes many."""
    found: dict[str, bytes] = {}
    for key, value in headers:
        if key in names and key not in found:
            found[key] = value
    return {key: value.decode(errors="replace") for key, value in found.items()}


ORIGIN_HEADERS = frozenset(
    (
        "x-hub-origin-topic",
        "x-hub-origin-partition",
        "x-hub-origin-offset",
        "x-hub-origin-timestamp",
    )
)


def origin_of(record: KafkaRecord, values: Mapping[str, str] | None = None) -> Origin:
    """The origin a hub topic record carries, or the record itself when it is an original.

    `values` are the record's `first_values` when the caller has them already.
    """
    if values is None:
        values = first_values(record.headers, ORIGIN_HEADERS)
    topic = values.get("x-hub-origin-topic")
    if topic is None:
        return Origin(record.topic, record.partition, record.offset, record.timestamp_ms)
    return Origin(
        topic=topic,
        partition=int(values.get("x-hub-origin-partition") or -1),
        offset=int(values.get("x-hub-origin-offset") or -1),
        timestamp_ms=int(values.get("x-hub-origin-timestamp") or 0),
    )


def previous_failure(record: KafkaRecord) -> tuple[int, datetime | None]:
    """Failed attempts so far and the first failure time, from a retried record's headers."""
    attempts = int(header(record.headers, ATTEMPTS) or 0)
    first = header(record.headers, FIRST_FAILURE_AT)
    return attempts, datetime.fromisoformat(first) if first else None


def due_at(record: KafkaRecord) -> datetime | None:
    """When a retried record may be handled again; ValueError when the header is unreadable."""
    value = header(record.headers, DUE_AT)
    if not value:
        return None
    due = datetime.fromisoformat(value)
    if due.tzinfo is None:
        raise ValueError(f"{DUE_AT} has no timezone: {value!r}")
    return due


def failure_headers(
    *,
    origin: Origin,
    group: str,
    handler: str,
    failure: Failure,
    code_version: str,
    schema: str | None,
    idempotency_key: str | None,
    due: datetime | None = None,
) -> Headers:
    """Every `x-hub-*` header of a retried or dead-lettered record (the README's contract)."""
    error = failure.error
    error_class = f"{type(error).__module__}.{type(error).__qualname__}"
    message = str(error) or error_class
    stack = "".join(traceback.format_exception(error))[-MAX_STACKTRACE:]
    pairs: list[tuple[str, str | None]] = [
        ("x-hub-origin-topic", origin.topic),
        ("x-hub-origin-partition", str(origin.partition)),
        ("x-hub-origin-offset", str(origin.offset)),
        ("x-hub-origin-timestamp", str(origin.timestamp_ms)),
        ("x-hub-origin-group", group),
        ("x-hub-origin-handler", handler),
        ("x-hub-error-class", error_class),
        ("x-hub-error-message", message[:MAX_MESSAGE]),
        ("x-hub-error-stacktrace", stack),
        ("x-hub-error-stage", failure.stage),
        ("x-hub-error-fingerprint", fingerprint(error_class, message, failure.stage)),
        (ATTEMPTS, str(failure.attempts)),
        (FIRST_FAILURE_AT, failure.first_failure_at.astimezone(UTC).isoformat()),
        ("x-hub-code-version", code_version),
        ("x-hub-schema", schema),
        ("x-hub-idempotency-key", idempotency_key),
        (DUE_AT, due.astimezone(UTC).isoformat() if due else None),
    ]
    # backslashreplace: a message quoting a lone surrogate from the body must not fail the
    # dead letter (that would hold the partition), nor lose the rest of the message.
    return tuple(
        (name, value.encode(errors="backslashreplace"))
        for name, value in pairs
        if value is not None
    )
