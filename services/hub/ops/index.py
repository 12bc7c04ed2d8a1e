"""Dead letters followed as they arrive and kept in memory, so a view never re-reads a topic.

The console reads each dead letter once: a refresh reads only what was written since the last
one, and forgets what was purged (the partition's first offset moved) or expired. The letters
kept are the same `DeadLetter` values the CLI works on, so selection, grouping and summaries are
the functions of `hub.ops.dlq`; only their bodies and the bulky headers are dropped (a letter
page reads its one record again).
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from hub.core.store.base import KafkaRecord
from hub.core.topics import parking_topic, replay_topic
from hub.ops.dlq import (
    DeadLetter,
    FingerprintGroup,
    Selection,
    ServiceSummary,
    group_of_topic,
    select,
)
from hub.ops.kafka_io import TopicReader
from hub.ops.replay import ORIGIN_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterable

    from hub.core.settings import HubSettings

log = structlog.get_logger(__name__)

TREND_BUCKETS = 24
HOUR_MS = 3_600_000
PARTIAL_EVERY_S = 0.5


def slim(letter: DeadLetter) -> DeadLetter:
    """The letter without its body and bulky headers: what every list and count needs.

    The origin headers stay (a letter's identity across replay generations is its origin).
    """
    record = letter.record
    origin = tuple(
        (name, value) for name, value in record.headers if name.startswith(ORIGIN_PREFIX)
    )
    light = KafkaRecord(
        record.topic, record.partition, record.offset, record.timestamp_ms, record.key, None, origin
    )
    return dataclasses.replace(letter, record=light)


@dataclasses.dataclass(frozen=True, slots=True)
class GroupLag:
    """How far a consumer group is behind on its replay topic."""

    end: int
    committed: int

    @property
    def lag(self) -> int:
        """Records on the replay topic the group has not committed yet."""
        return max(0, self.end - self.committed)


@dataclasses.dataclass(slots=True)
class Tallies:
    """Counts kept up to date letter by letter, with the same `add` as `hub dlq list|groups`."""

    services: dict[str, ServiceSummary] = dataclasses.field(default_factory=dict)
    groups: dict[tuple[str, str], FingerprintGroup] = dataclasses.field(default_factory=dict)
    hours: dict[str, Counter[int]] = dataclasses.field(default_factory=dict)
    """Per service, dead letters per hour since the epoch."""

    def add(self, letter: DeadLetter) -> None:
        """Count one more letter everywhere."""
        service = self.services.get(letter.group)
        if service is None:
            service = self.services[letter.group] = ServiceSummary(letter.group)
        service.add(letter)
        key = (letter.group, letter.fingerprint)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = FingerprintGroup.of(letter)
        group.add(letter)
        hour = letter.record.timestamp_ms // HOUR_MS
        self.hours.setdefault(letter.group, Counter())[hour] += 1

    @classmethod
    def of(cls, letters: Iterable[DeadLetter]) -> Tallies:
        """The tallies of `letters`, counted afresh."""
        tallies = cls()
        for letter in letters:
            tallies.add(letter)
        return tallies


@dataclasses.dataclass(slots=True)
class Snapshot:
    """What one refresh saw; lists and counts cost no pass over the letters, selections one."""

    version: int
    letters: list[DeadLetter]
    tallies: Tallies
    parked: dict[str, int]
    lags: dict[str, GroupLag]
    caught_up: bool
    refreshed_at: datetime
    topics: frozenset[str] = frozenset()
    """Every topic on the cluster at the refresh."""
    lags_at: datetime | None = None
    """When the reading of `lags` began: they show at least what was committed then."""
    _selected: dict[Selection, list[DeadLetter]] = dataclasses.field(default_factory=dict)

    def summaries(self) -> list[ServiceSummary]:
        """Per service: count, oldest, newest, top fingerprints (`hub dlq list`), by name."""
        return [self.tallies.services[name] for name in sorted(self.tallies.services)]

    def groups(self, group: str | None = None) -> list[FingerprintGroup]:
        """Fingerprint groups (of `group`), the largest first (`hub dlq groups`)."""
        chosen = (g for g in self.tallies.groups.values() if group is None or g.group == group)
        return sorted(chosen, key=FingerprintGroup.sort_key)

    def selected(self, selection: Selection) -> list[DeadLetter]:
        """The letters `selection` takes, in reference order (one pass, kept for paging)."""
        found = self._selected.get(selection)
        if found is None:
            # The letters are kept partition by partition in offset order: reference order.
            found = self._selected[selection] = select(self.letters, selection, in_order=True)
        return found

    def trend(self, now: datetime | None = None) -> dict[str, list[int]]:
        """Per service, dead letters written in each of the last 24 hours, oldest hour first."""
        last = int((now or self.refreshed_at).timestamp() * 1000) // HOUR_MS
        hours = range(last - TREND_BUCKETS + 1, last + 1)
        return {
            group: [counts.get(hour, 0) for hour in hours]
            for group, counts in sorted(self.tallies.hours.items())
        }


class LetterIndex:
    """The dead letters of every group as of the last refresh; refreshes read only new records."""

    def __init__(self, settings: HubSettings) -> None:
        self._settings = settings
        self._reader: TopicReader | None = None
        self._by_partition: dict[TopicPartition, list[DeadLetter]] = {}
        self._offsets: dict[TopicPartition, list[int]] = {}
        self._position: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._version = 0
        self._tallies = Tallies()
        self._untallied: list[DeadLetter] = []
        self._recount = False
        self._topics: frozenset[str] = frozenset()
        self._snapshot = Snapshot(
            0, [], self._tallies, {}, {}, caught_up=False, refreshed_at=datetime.now(UTC)
        )
        self._snapshot_at = time.monotonic()

    @property
    def snapshot(self) -> Snapshot:
        """The latest view; a refresh replaces it whole, so a page sees one consistent state."""
        return self._snapshot

    async def start(self) -> None:
        """Connect the reader the refreshes share."""
        self._reader = TopicReader(self._settings)
        await self._reader.start()

    async def stop(self) -> None:
        """Disconnect."""
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    async def refresh(self) -> Snapshot:
        """Read what was dead-lettered since the last refresh and forget what was deleted."""
        async with self._lock:
            reader = self._reader
            if reader is None:
                raise RuntimeError("the index is not started")
            names = await reader.topic_names()
            self._topics = frozenset(names)
            dead = sorted(name for name in names if name.endswith(".dlq"))
            bounds = await reader.bounds(dead)
            changed = self._forget_deleted(bounds)
            start = {tp: self._position.get(tp, first) for tp, (first, _) in bounds.items()}
            end = {tp: last for tp, (_, last) in bounds.items()}
            async for batch in reader.scan(start, end):
                for record in batch:
                    tp = TopicPartition(record.topic, record.partition)
                    letter = slim(DeadLetter.from_record(record))
                    self._by_partition.setdefault(tp, []).append(letter)
                    self._untallied.append(letter)
                    self._offsets.setdefault(tp, []).append(record.offset)
                    changed = True
                # A page during a long first read shows what has arrived so far (at most twice
                # a second: each publication copies the list of letters).
                if changed and time.monotonic() - self._snapshot_at >= PARTIAL_EVERY_S:
                    self._publish(bounds, changed=changed, caught_up=False)
                    changed = False
            self._position.update(end)
            groups = {group_of_topic(tp.topic) for tp in bounds}
            parked = await self._parked(reader, names, groups)
            self._publish(bounds, changed=changed, caught_up=True, parked=parked)
            lags_at = datetime.now(UTC)
            lags = await self._lags(reader, names, groups)
            self._publish(bounds, changed=False, caught_up=True, lags=lags, lags_at=lags_at)
            return self._snapshot

    def _forget_deleted(self, bounds: dict[TopicPartition, tuple[int, int]]) -> bool:
        changed = False
        for tp in list(self._by_partition):
            first = bounds.get(tp, (None, None))[0]
            offsets = self._offsets[tp]
            cut = len(offsets) if first is None else bisect.bisect_left(offsets, first)
            if cut:
                del self._by_partition[tp][:cut], offsets[:cut]
                changed = self._recount = True  # counts cannot be taken back one by one
        for tp, (first, _) in bounds.items():
            if self._position.get(tp, first) < first:
                self._position[tp] = first
        return changed

    def _publish(
        self,
        bounds: dict[TopicPartition, tuple[int, int]],
        *,
        changed: bool,
        caught_up: bool,
        parked: dict[str, int] | None = None,
        lags: dict[str, GroupLag] | None = None,
        lags_at: datetime | None = None,
    ) -> None:
        old = self._snapshot
        if changed:
            self._version += 1
        letters = (
            [letter for tp in sorted(bounds) for letter in self._by_partition.get(tp, ())]
            if changed or old.version != self._version
            else old.letters
        )
        if self._recount:
            # A new object: a page still holding the old snapshot keeps consistent counts.
            self._tallies = Tallies.of(letters)
            self._recount = False
        else:
            for letter in self._untallied:
                self._tallies.add(letter)
        self._untallied.clear()
        self._snapshot_at = time.monotonic()
        self._snapshot = Snapshot(
            version=self._version,
            letters=letters,
            tallies=self._tallies,
            parked=old.parked if parked is None else parked,
            lags=old.lags if lags is None else lags,
            lags_at=old.lags_at if lags is None else lags_at,
            caught_up=caught_up,
            refreshed_at=datetime.now(UTC),
            topics=self._topics,
            # Selections stay valid while the letters are the same list.
            _selected=old._selected if letters is old.letters else {},  # noqa: SLF001 - same class
        )

    @staticmethod
    async def _parked(reader: TopicReader, names: set[str], groups: set[str]) -> dict[str, int]:
        topics = {parking_topic(group): group for group in groups if parking_topic(group) in names}
        counts: Counter[str] = Counter()
        for tp, (first, end) in (await reader.bounds(topics)).items():
            counts[topics[tp.topic]] += end - first
        return dict(counts)

    @staticmethod
    async def _lags(reader: TopicReader, names: set[str], groups: set[str]) -> dict[str, GroupLag]:
        lags: dict[str, GroupLag] = {}
        for group in sorted(groups):
            topic = replay_topic(group)
            if topic not in names:
                continue
            bounds = await reader.bounds([topic])
            try:
                committed = await reader.committed(group, list(bounds))
            except KafkaError as error:
                # A group that never consumed may have no coordinator yet: no lag to show.
                log.debug("replay_lag_unknown", group=group, error=str(error))
                continue
            lags[group] = GroupLag(
                end=sum(end for _, end in bounds.values()),
                committed=sum(committed.get(tp, first) for tp, (first, _) in bounds.items()),
            )
        return lags

    async def follow(self, interval_s: float, stop: asyncio.Event) -> None:
        """Refresh every `interval_s` until `stop` is set; a failed refresh is logged, not fatal."""
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception:  # a broker hiccup must not end the console's view
                log.warning("dead_letter_index_refresh_failed", exc_info=True)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                continue
