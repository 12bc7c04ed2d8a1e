"""The state-store port every service uses; SQLite and PostgreSQL implement it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import structlog

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
    from datetime import datetime

log = structlog.get_logger(__name__)

JsonObject = dict[str, Any]
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """A Kafka record as it was read, kept byte for byte (key, value, headers) with its origin."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers


class EventId(NamedTuple):
    """An event's identity, as CloudEvents defines it: two sources may use the same id."""

    source: str
    id: str


class StoreUnavailableError(ConnectionError):
    """The state store cannot be opened or reached (the message names which and where)."""


class StaleBatchError(Exception):
    """Another instance recorded a batch's event, or changed a state it read; nothing was written.

    Happens when a rebalance hands a partition over mid-batch: re-reading the batch turns
    the other instance's work into counted duplicates, and decides again from fresh states.
    """


@dataclass(frozen=True, slots=True)
class BatchSnapshot:
    """What a batch needs from the store, read in one call: its processed ids, states, parks."""

    processed: frozenset[EventId]
    states: Mapping[str, JsonObject]
    park_heads: Mapping[str, str]
    versions: Mapping[str, int] = field(default_factory=dict)
    """Each stored state's version (it grows by one a write); a key without state has none."""


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """A record waiting behind its key's head message.

    `seq` grows in append order and is never reused, so it orders the followers of one key and
    names exactly one follower for `remove_parked`.
    """

    seq: int
    record: KafkaRecord


class StateStore(Protocol):
    """Durable state of one service: processed ids (inbox), per-key state, parked followers.

    Every method is atomic on its own. `group` is the consumer group (the service), so
    several services may share one database.
    """

    async def open(self) -> None:
        """Connect and create the schema if it is missing (idempotent)."""

    async def close(self) -> None:
        """Release connections."""

    # --- inbox and per-key state -------------------------------------------------------
    async def is_processed(self, group: str, event: EventId) -> bool:
        """Whether `event` was already recorded as processed by `group`.

        An inbox row from before event identity took the source (schema 2) matches any source.
        """

    async def load_state(self, group: str, key: str) -> JsonObject | None:
        """The state document of `key` for `group`, or None when there is none."""

    async def record_processed(
        self,
        group: str,
        event: EventId,
        *,
        key: str | None = None,
        state: JsonObject | None = None,
    ) -> bool:
        """Record `event` as processed and, in the same transaction, upsert `state` for `key`.

        Returns False and writes nothing when `event` was already recorded. A `state`
        without a `key` is not stored. A `state` JSON cannot hold (NaN, a datetime) raises
        ValueError or TypeError, and nothing is recorded.
        """

    async def load_batch(
        self, group: str, events: Collection[EventId], keys: Collection[str]
    ) -> BatchSnapshot:
        """In one call: which of `events` are processed, and the states and park heads of `keys`."""

    async def commit_batch(
        self,
        group: str,
        events: Sequence[EventId],
        states: Mapping[str, JsonObject],
        *,
        read_versions: Mapping[str, int] | None = None,
        publish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Await `publish`, then record `events` and upsert `states`, all in one transaction.

        Raises StaleBatchError, before `publish` runs and with nothing written, when any of
        `events` was already recorded or a key of `read_versions` no longer has the version
        given (0: no state): another instance changed what the batch decided from. From the
        check to the commit no other writer can change those keys (PostgreSQL locks them).
        A state JSON cannot hold raises ValueError or TypeError, and nothing is written.
        """

    async def purge_inbox(self, group: str, older_than: datetime) -> int:
        """Delete inbox rows of `group` processed before `older_than` (timezone-aware).

        Returns how many rows were deleted; a naive datetime raises ValueError.
        """

    async def inbox_size(self, group: str) -> int:
        """How many processed ids `group` holds."""

    # --- park by key -------------------------------------------------------------------
    async def park(self, group: str, key: str, head_event_id: str) -> None:
        """Mark `key` as parked behind `head_event_id` (creates the park or replaces its head)."""

    async def park_head(self, group: str, key: str) -> str | None:
        """The event id the park of `key` waits for, or None when `key` is not parked."""

    async def append_parked(self, group: str, key: str, record: KafkaRecord) -> bool:
        """Append `record` behind the park of `key`; False (nothing stored) when not parked.

        Race-free against `next_parked`: once that has deleted the park, appends return False.
        """

    async def next_parked(self, group: str, key: str) -> ParkedRecord | None:
        """The oldest follower of `key`; when there is none, delete the park and return None."""

    async def remove_parked(self, group: str, key: str, seq: int) -> None:
        """Remove one follower once it has been handled or handed on."""

    async def parked_keys(self, group: str) -> list[str]:
        """Every key of `group` that is parked now (for operators and tests)."""


def changed_keys(read_versions: Mapping[str, int], current: Mapping[str, int]) -> list[str]:
    """Keys whose version is no longer the one read (a missing key has version 0), sorted."""
    return sorted(key for key, version in read_versions.items() if current.get(key, 0) != version)


def stale_states(changed: Sequence[str]) -> StaleBatchError:
    """The error for a batch whose read states another writer changed meanwhile."""
    return StaleBatchError(
        f"{len(changed)} state(s) changed since the batch read them: {', '.join(changed[:3])}"
    )


class RecordsOneAsABatch:
    """`record_processed` as a batch of one, for a store whose `commit_batch` does the work."""

    async def commit_batch(
        self,
        group: str,
        events: Sequence[EventId],
        states: Mapping[str, JsonObject],
        *,
        read_versions: Mapping[str, int] | None = None,
        publish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Implemented by the store."""
        raise NotImplementedError

    async def record_processed(
        self,
        group: str,
        event: EventId,
        *,
        key: str | None = None,
        state: JsonObject | None = None,
    ) -> bool:
        """Record `event` and upsert `state` for `key` in one transaction; False if known."""
        if state is not None and key is None:
            log.warning("state_without_key_ignored", group=group, event_id=event.id)
        states = {key: state} if key is not None and state is not None else {}
        try:
            await self.commit_batch(group, [event], states)
        except StaleBatchError:
            return False
        return True
