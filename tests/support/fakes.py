"""In-memory stand-ins for the kernel's ports (state store, record sink, clock), faults on demand.

`InMemoryStateStore` keeps the semantics of `SqliteStateStore` (tests/component/test_fakes.py
runs both through the same calls and compares every answer): states are stored as the JSON
text the real stores write, so a state JSON cannot hold fails the same way and a loaded state
is a fresh copy; `commit_batch` writes all or nothing; a follower's `seq` is never reused.
Event identity is exact (source, id): the legacy rule for ids recorded without a source is a
migration concern of the real stores and has no rows to match here.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from hub.core.pipeline import is_chain_mark
from hub.core.store.base import (
    BatchSnapshot,
    EventId,
    ParkedRecord,
    StaleBatchError,
    changed_keys,
    stale_states,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

    from hub.core.outbound import OutRecord
    from hub.core.store.base import JsonObject, KafkaRecord

START = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by `delta`; returns the new time."""
        self.now += delta
        return self.now


@dataclass
class Faults:
    """Planned failures by operation name: the next `times` calls raise `error`."""

    planned: dict[str, list[BaseException | None]] = field(default_factory=dict)
    """Per operation, what its next calls do: None passes, an exception is raised."""
    calls: Counter[str] = field(default_factory=Counter)

    def fail_next(
        self,
        operation: str,
        times: int = 1,
        error: BaseException | None = None,
        *,
        after: int = 0,
    ) -> None:
        """Let `after` calls of `operation` pass, then make `times` calls raise.

        The error is a ConnectionError (a store outage) unless given.
        """
        failure = error if error is not None else ConnectionError(f"{operation}: store unreachable")
        self.planned.setdefault(operation, []).extend([None] * after + [failure] * times)

    def check(self, operation: str) -> None:
        """Count a call and raise its planned failure, if any."""
        self.calls[operation] += 1
        pending = self.planned.get(operation)
        if pending and (failure := pending.pop(0)) is not None:
            raise failure


def _encode_document(document: JsonObject) -> str:
    # What SqliteStateStore and PostgresStateStore write: NaN is refused (ValueError naming
    # JSON), a value JSON has no type for raises TypeError.
    return json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("the state store takes timezone-aware datetimes only")
    return moment


class InMemoryStateStore:
    """The StateStore protocol in memory, for one process; `faults` simulates an outage."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self.faults = Faults()
        self.opened = False
        self._inbox: dict[str, dict[EventId, datetime]] = {}
        self._states: dict[tuple[str, str], str] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._parks: dict[tuple[str, str], str] = {}
        self._parked: dict[tuple[str, str], dict[int, KafkaRecord]] = {}
        self._last_seq = 0

    async def open(self) -> None:
        """Nothing to connect to (idempotent)."""
        self.faults.check("open")
        self.opened = True

    async def close(self) -> None:
        """Nothing to release (idempotent)."""
        self.opened = False

    # --- inbox and per-key state -------------------------------------------------------
    async def is_processed(self, group: str, event: EventId) -> bool:
        """Whether `event` was already recorded as processed by `group`."""
        self.faults.check("is_processed")
        return event in self._inbox.get(group, {})

    async def load_state(self, group: str, key: str) -> JsonObject | None:
        """A fresh copy of the state document of `key`, or None."""
        self.faults.check("load_state")
        return self._document(group, key)

    def _document(self, group: str, key: str) -> JsonObject | None:
        text = self._states.get((group, key))
        if text is None:
            return None
        document: JsonObject = json.loads(text)
        return document

    async def record_processed(
        self,
        group: str,
        event: EventId,
        *,
        key: str | None = None,
        state: JsonObject | None = None,
    ) -> bool:
        """Record `event` and upsert `state` for `key` at once; False (nothing written) if known."""
        self.faults.check("record_processed")
        states = {key: state} if key is not None and state is not None else {}
        try:
            self._commit(group, [event], states)
        except StaleBatchError:
            return False
        return True

    async def load_batch(
        self, group: str, events: Collection[EventId], keys: Collection[str]
    ) -> BatchSnapshot:
        """Processed ids among `events`, and the states and park heads of `keys`."""
        self.faults.check("load_batch")
        inbox = self._inbox.get(group, {})
        states: dict[str, JsonObject] = {}
        versions: dict[str, int] = {}
        heads: dict[str, str] = {}
        for key in keys:
            document = self._document(group, key)
            if document is not None:
                states[key] = document
                versions[key] = self._versions[(group, key)]
            head = self._parks.get((group, key))
            if head is not None:
                heads[key] = head
        processed = frozenset(event for event in events if event in inbox)
        return BatchSnapshot(processed, states, heads, versions)

    async def commit_batch(
        self,
        group: str,
        events: Sequence[EventId],
        states: Mapping[str, JsonObject],
        *,
        read_versions: Mapping[str, int] | None = None,
        publish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Check, await `publish`, then record `events` and upsert `states` all at once."""
        self._check(group, events, read_versions or {})
        if publish is not None:
            await publish()
        # A planned outage strikes after the outputs are out: the crash the inbox must absorb.
        self.faults.check("commit_batch")
        self._commit(group, events, states, read_versions or {})

    def _check(
        self, group: str, events: Sequence[EventId], read_versions: Mapping[str, int]
    ) -> None:
        current = {key: self._versions.get((group, key), 0) for key in read_versions}
        if changed := changed_keys(read_versions, current):
            raise stale_states(changed)
        inbox = self._inbox.get(group, {})
        seen: set[EventId] = set()
        for event in events:
            if event in inbox or event in seen:
                raise StaleBatchError(f"{event.source} {event.id} is already processed")
            seen.add(event)

    def _commit(
        self,
        group: str,
        events: Sequence[EventId],
        states: Mapping[str, JsonObject],
        read_versions: Mapping[str, int] | None = None,
    ) -> None:
        # Everything is checked before anything is written: all or nothing, like a transaction.
        documents = {key: _encode_document(state) for key, state in states.items()}
        self._check(group, events, read_versions or {})
        now = _aware(self._clock())
        self._inbox.setdefault(group, {}).update(dict.fromkeys(events, now))
        for key, text in documents.items():
            self._states[(group, key)] = text
            self._versions[(group, key)] = self._versions.get((group, key), 0) + 1

    async def purge_inbox(self, group: str, older_than: datetime) -> int:
        """Delete inbox rows of `group` processed before `older_than`; returns how many."""
        self.faults.check("purge_inbox")
        cutoff = _aware(older_than)
        inbox = self._inbox.get(group, {})
        old = [event for event, at in inbox.items() if at < cutoff]
        for event in old:
            del inbox[event]
        return len(old)

    async def inbox_size(self, group: str) -> int:
        """How many processed ids `group` holds."""
        self.faults.check("inbox_size")
        return len(self._inbox.get(group, {}))

    # --- park by key -------------------------------------------------------------------
    async def park(self, group: str, key: str, head_event_id: str) -> None:
        """Mark `key` as parked behind `head_event_id` (creates the park or replaces its head)."""
        self.faults.check("park")
        self._parks[group, key] = head_event_id

    async def park_head(self, group: str, key: str) -> str | None:
        """The event id the park of `key` waits for, or None when `key` is not parked."""
        self.faults.check("park_head")
        return self._parks.get((group, key))

    async def append_parked(self, group: str, key: str, record: KafkaRecord) -> bool:
        """Append `record` behind the park of `key`; False (nothing stored) when not parked."""
        self.faults.check("append_parked")
        if (group, key) not in self._parks:
            return False
        self._last_seq += 1  # never reused, across keys and groups, like AUTOINCREMENT
        self._parked.setdefault((group, key), {})[self._last_seq] = record
        return True

    async def next_parked(self, group: str, key: str) -> ParkedRecord | None:
        """The oldest follower of `key`; when there is none, delete the park and return None."""
        self.faults.check("next_parked")
        followers = self._parked.get((group, key))
        if not followers:
            self._parks.pop((group, key), None)
            self._parked.pop((group, key), None)
            return None
        seq = min(followers)
        return ParkedRecord(seq=seq, record=followers[seq])

    async def remove_parked(self, group: str, key: str, seq: int) -> None:
        """Remove one follower once it has been handled or handed on."""
        self.faults.check("remove_parked")
        self._parked.get((group, key), {}).pop(seq, None)

    async def parked_keys(self, group: str) -> list[str]:
        """Every key of `group` that is parked now (for operators and tests)."""
        self.faults.check("parked_keys")
        return sorted(key for grp, key in self._parks if grp == group)

    # --- for tests -------------------------------------------------------------------
    def followers(self, group: str, key: str) -> list[KafkaRecord]:
        """The records parked behind `key`, oldest first (no fault, no call counted)."""
        followers = self._parked.get((group, key), {})
        return [followers[seq] for seq in sorted(followers)]

    def state(self, group: str, key: str) -> JsonObject | None:
        """The stored state of `key` (no fault, no call counted)."""
        return self._document(group, key)

    def processed(self, group: str) -> set[EventId]:
        """Every event `group` has recorded (no fault, no call counted)."""
        return set(self._inbox.get(group, {}))

    def handled(self, group: str) -> set[EventId]:
        """The events `group` has handled: its inbox without the rows of retry records read."""
        return {event for event in self.processed(group) if not is_chain_mark(event)}


class InMemorySink:
    """A RecordSink that keeps what it was given, in order; `fail_next` simulates an outage."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.sends = 0
        self._failures: list[BaseException | None] = []

    def fail_next(
        self, times: int = 1, error: BaseException | None = None, *, after: int = 0
    ) -> None:
        """Let `after` sends pass, then make `times` sends raise and produce nothing.

        The error is a ConnectionError (a broker outage) unless given.
        """
        failure = error or ConnectionError("broker unreachable")
        self._failures.extend([None] * after + [failure] * times)

    async def send(self, records: Sequence[OutRecord]) -> None:
        """Keep `records`, unless a failure is planned (then none of them)."""
        self.sends += 1
        if self._failures and (failure := self._failures.pop(0)) is not None:
            raise failure
        self.records.extend(records)

    def on(self, topic: str) -> list[OutRecord]:
        """The records sent to `topic`, in order."""
        return [record for record in self.records if record.topic == topic]

    def topics(self) -> set[str]:
        """Every topic something was sent to."""
        return {record.topic for record in self.records}
