"""Dead letters as values: parsed from their `x-hub-*` headers, selected, grouped, summarised."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hub.core import deadletter
from hub.core.settings import parse_duration

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from hub.core.store.base import KafkaRecord

DLQ_SUFFIX = ".dlq"
REPLAY_ID = "x-hub-replay-id"
REPLAY_COUNT = "x-hub-replay-count"
REPLAY_BY = "x-hub-replay-by"
REPLAY_AT = "x-hub-replay-at"


@dataclass(frozen=True, slots=True, order=True)
class Ref:
    """Where one dead letter lives: `topic:partition:offset`."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Ref:
        """Read `topic:partition:offset`; ValueError when it is not one."""
        topic, _, rest = text.rpartition(":")
        topic, _, partition = topic.rpartition(":")
        if not topic or not partition.isdigit() or not rest.isdigit():
            raise ValueError(f"not a dead-letter reference (topic:partition:offset): {text!r}")
        return cls(topic, int(partition), int(rest))


def parse_time(text: str | None, *, now: datetime | None = None) -> datetime | None:
    """An RFC 3339 time (UTC when it has no zone), or a duration ago such as `2h`."""
    if not text:
        return None
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a time (2026-11-25T12:00Z) nor a duration ago (30m, 2h)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _ms_to_time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-letter record and what its contract headers say about it."""

    record: KafkaRecord
    group: str
    error_class: str
    error_message: str
    stage: str
    fingerprint: str
    attempts: int
    code_version: str
    schema: str
    idempotency_key: str | None
    replay_count: int
    origin: deadletter.Origin
    """Where the original record was first read."""

    @property
    def ref(self) -> Ref:
        """Where this dead letter lives."""
        return Ref(self.record.topic, self.record.partition, self.record.offset)

    @property
    def dead_lettered_at(self) -> datetime:
        """When it was written to the dead-letter topic (the record's timestamp)."""
        return _ms_to_time(self.record.timestamp_ms)

    @property
    def identity(self) -> tuple[str, str, int, int]:
        """The original message this letter is a generation of: group and first read position."""
        origin = self.origin
        return (self.group, origin.topic, origin.partition, origin.offset)

    @property
    def case_id(self) -> str | None:
        """The record key (the case id for everything about a case)."""
        key = self.record.key
        return key.decode(errors="replace") if key is not None else None

    @property
    def original_headers(self) -> tuple[tuple[str, bytes], ...]:
        """The original record's own headers, byte for byte, without any replay lineage."""
        return tuple(
            (name, value)
            for name, value in deadletter.original_headers(self.record.headers)
            if not name.startswith(deadletter.REPLAY_PREFIX)
        )

    @classmethod
    def from_record(cls, record: KafkaRecord) -> DeadLetter:
        """Parse the contract headers; absent ones become `?` so a damaged letter still shows."""
        # One pass over the headers: a replay parses every letter, and they carry dozens.
        values = deadletter.first_values(record.headers, _LETTER_HEADERS)
        return cls(
            record=record,
            group=values.get("x-hub-origin-group") or group_of_topic(record.topic),
            error_class=values.get("x-hub-error-class") or "?",
            error_message=values.get("x-hub-error-message") or "",
            stage=values.get("x-hub-error-stage") or "?",
            fingerprint=values.get("x-hub-error-fingerprint") or "?",
            attempts=int(values.get(deadletter.ATTEMPTS) or 0),
            code_version=values.get("x-hub-code-version") or "?",
            schema=values.get("x-hub-schema") or "?",
            # A letter that failed validation has no idempotency key yet, but still a ce_id.
            idempotency_key=values.get("x-hub-idempotency-key") or values.get("ce_id"),
            replay_count=int(values.get(REPLAY_COUNT) or 0),
            origin=deadletter.origin_of(record, values),
        )


_LETTER_HEADERS = deadletter.ORIGIN_HEADERS | {
    "x-hub-origin-group",
    "x-hub-error-class",
    "x-hub-error-message",
    "x-hub-error-stage",
    "x-hub-error-fingerprint",
    deadletter.ATTEMPTS,
    "x-hub-code-version",
    "x-hub-schema",
    "x-hub-idempotency-key",
    "ce_id",
    REPLAY_COUNT,
}


def is_dead_letter_topic(name: str, group: str | None = None) -> bool:
    """Whether `name` is a dead-letter topic (of `group`, when given)."""
    return name.endswith(f".{group}{DLQ_SUFFIX}" if group else DLQ_SUFFIX)


def group_of_topic(name: str) -> str:
    """The group in a dead-letter topic's name, `<topic>.<group>.dlq` (group names have no dot)."""
    return name.removesuffix(DLQ_SUFFIX).rpartition(".")[2]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters an action takes; an empty field selects everything."""

    group: str | None = None
    refs: frozenset[Ref] = frozenset()
    ids: frozenset[str] = frozenset()
    """`ce_id`s (the `x-hub-idempotency-key`)."""
    fingerprint: str | None = None
    error_class: str | None = None
    """A fully qualified class, or its last part (`SchemaViolationError`)."""
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        """Whether `letter` is selected (every given criterion must hold)."""
        if self.group and letter.group != self.group:
            return False
        if (self.refs or self.ids) and not (
            letter.ref in self.refs or letter.idempotency_key in self.ids
        ):
            return False
        if self.fingerprint and letter.fingerprint != self.fingerprint:
            return False
        if self.error_class and self.error_class not in {
            letter.error_class,
            letter.error_class.rpartition(".")[2],
        }:
            return False
        if self.since and letter.dead_lettered_at < self.since:
            return False
        return not (self.until and letter.dead_lettered_at >= self.until)

    def describe(self) -> dict[str, str]:
        """The selection as text, for the audit trail and checkpoints."""
        given: dict[str, str | None] = {
            "group": self.group,
            "refs": ",".join(sorted(map(str, self.refs))) or None,
            "ids": ",".join(sorted(self.ids)) or None,
            "fingerprint": self.fingerprint,
            "error_class": self.error_class,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }
        return {name: value for name, value in given.items() if value is not None}

    @classmethod
    def from_description(cls, described: dict[str, str]) -> Selection:
        """The inverse of `describe` (a resumed replay takes the same selection)."""

        def split(name: str) -> list[str]:
            return [part for part in described.get(name, "").split(",") if part]

        def when(name: str) -> datetime | None:
            value = described.get(name)
            return datetime.fromisoformat(value) if value else None

        return cls(
            group=described.get("group"),
            refs=frozenset(Ref.parse(text) for text in split("refs")),
            ids=frozenset(split("ids")),
            fingerprint=described.get("fingerprint"),
            error_class=described.get("error_class"),
            since=when("since"),
            until=when("until"),
        )


@dataclass(slots=True)
class FingerprintGroup:
    """Dead letters that failed alike: one error class, normalised message and stage."""

    fingerprint: str
    group: str
    error_class: str
    stage: str
    example_message: str
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    schemas: Counter[str] = field(default_factory=Counter)
    code_versions: Counter[str] = field(default_factory=Counter)
    refs: list[Ref] = field(default_factory=list)

    @classmethod
    def of(cls, letter: DeadLetter) -> FingerprintGroup:
        """An empty group for failures like `letter` (`add` counts it)."""
        return cls(
            fingerprint=letter.fingerprint,
            group=letter.group,
            error_class=letter.error_class,
            stage=letter.stage,
            example_message=letter.error_message,
        )

    def sort_key(self) -> tuple[int, str, str]:
        """The largest group first, then by service and fingerprint."""
        return (-self.count, self.group, self.fingerprint)

    def add(self, letter: DeadLetter) -> None:
        """Count one more dead letter in this group."""
        self.count += 1
        at = letter.dead_lettered_at
        self.first_seen = at if self.first_seen is None else min(self.first_seen, at)
        self.last_seen = at if self.last_seen is None else max(self.last_seen, at)
        self.schemas[letter.schema] += 1
        self.code_versions[letter.code_version] += 1
        self.refs.append(letter.ref)


def group_by_fingerprint(letters: Iterable[DeadLetter]) -> list[FingerprintGroup]:
    """Groups of alike failures, the largest first."""
    groups: dict[tuple[str, str], FingerprintGroup] = {}
    for letter in letters:
        found = groups.get((letter.group, letter.fingerprint))
        if found is None:
            found = groups[(letter.group, letter.fingerprint)] = FingerprintGroup.of(letter)
        found.add(letter)
    return sorted(groups.values(), key=FingerprintGroup.sort_key)


@dataclass(slots=True)
class ServiceSummary:
    """The dead letters of one service (consumer group)."""

    group: str
    count: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None
    fingerprints: Counter[str] = field(default_factory=Counter)
    topics: Counter[str] = field(default_factory=Counter)

    def add(self, letter: DeadLetter) -> None:
        """Count one more dead letter of this service."""
        self.count += 1
        at = letter.dead_lettered_at
        self.oldest = at if self.oldest is None else min(self.oldest, at)
        self.newest = at if self.newest is None else max(self.newest, at)
        self.fingerprints[letter.fingerprint] += 1
        self.topics[letter.ref.topic] += 1

    def top(self, n: int = 3) -> list[tuple[str, int]]:
        """The `n` most frequent fingerprints with their counts."""
        return self.fingerprints.most_common(n)


def summarise(letters: Iterable[DeadLetter]) -> list[ServiceSummary]:
    """Per service: count, oldest, newest, fingerprints; in group order."""
    services: dict[str, ServiceSummary] = {}
    for letter in letters:
        summary = services.get(letter.group)
        if summary is None:
            summary = services[letter.group] = ServiceSummary(letter.group)
        summary.add(letter)
    return [services[name] for name in sorted(services)]


@dataclass(slots=True)
class Generations:
    """The newest dead letter of each original message: a failed replay supersedes its source.

    Only the newest generation is replayed, so one run never sends a message twice, and its
    replay count (the lineage) is what the parking limit looks at.
    """

    newest: dict[tuple[str, str, int, int], tuple[int, int, Ref]] = field(default_factory=dict)

    def add(self, letter: DeadLetter) -> None:
        """Take one letter into account (any order)."""
        rank = (letter.replay_count, letter.record.timestamp_ms, letter.ref)
        known = self.newest.get(letter.identity)
        if known is None or rank > known:
            self.newest[letter.identity] = rank

    def is_newest(self, letter: DeadLetter) -> bool:
        """Whether no later generation of the same message exists (unknown letters count as it)."""
        known = self.newest.get(letter.identity)
        return known is None or known[2] == letter.ref

    @classmethod
    def of(cls, letters: Iterable[DeadLetter]) -> Generations:
        """The generations of `letters`."""
        generations = cls()
        for letter in letters:
            generations.add(letter)
        return generations


def select(
    letters: Iterable[DeadLetter], selection: Selection, *, in_order: bool = False
) -> list[DeadLetter]:
    """The selected dead letters, in topic, partition and offset order.

    `in_order` says `letters` are in that order already (a sort of 100,000 costs half a second).
    """
    chosen = [x for x in letters if selection.matches(x)]
    return chosen if in_order else sorted(chosen, key=lambda x: x.ref)


def refs_text(letters: Sequence[DeadLetter], limit: int = 1000) -> tuple[str, ...]:
    """References for the audit trail, capped so that an audit record stays small."""
    return tuple(str(letter.ref) for letter in letters[:limit])
