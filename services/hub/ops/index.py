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
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar, cast

import structlog
from aiokafka import TopicPartition

from hub.core.store.base import KafkaRecord
from hub.core.topics import parking_topic, replay_topic
from hub.ops.dlq import (
    DeadLetter,
    FingerprintGroup,
    Selection,
    ServiceSummary,
    group_by_fingerprint,
    group_of_topic,
    select,
    summarise,
)
from hub.ops.kafka_io import TopicReader
from hub.ops.replay import ORIGIN_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.settings import HubSettings

log = structlog.get_logger(__name__)
T = TypeVar("T")

TREND_BUCKETS = 24
TREND_BUCKET = timedelta(hours=1)


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
class Snapshot:
    """What one refresh saw, and views derived from it once (pages share them)."""

    version: int
    letters: list[DeadLetter]
    parked: dict[str, int]
    lags: dict[str, GroupLag]
    caught_up: bool
    refreshed_at: datetime
    _cache: dict[object, object] = dataclasses.field(default_factory=dict)

    def _cached(self, key: object, make: Callable[[], T]) -> T:
        if key not in self._cache:
            self._cache[key] = make()
        return cast("T", self._cache[key])  # each key is only ever filled by one kind of view

    def summaries(self) -> list[ServiceSummary]:
        """Per service: count, oldest, newest, top fingerprints (`hub dlq list`)."""
        return self._cached("summaries", lambda: summarise(self.letters))

    def selected(self, selection: Selection) -> list[DeadLetter]:
        """The letters `selection` takes, in reference order."""
        return self._cached(("select", selection), lambda: select(self.letters, selection))

    def groups(self, group: str | None = None) -> list[FingerprintGroup]:
        """Fingerprint groups, the largest first (`hub dlq groups`)."""
        return self._cached(
            ("groups", group),
            lambda: group_by_fingerprint(self.selected(Selection(group=group))),
        )

    def trend(self, now: datetime | None = None) -> dict[str, list[int]]:
        """Per service, dead letters written in each of the last 24 hours, oldest hour first."""
        end = (now or self.refreshed_at).replace(minute=0, second=0, microsecond=0) + TREND_BUCKET
        start = end - TREND_BUCKETS * TREND_BUCKET

        def make() -> dict[str, list[int]]:
            counts: dict[str, list[int]] = {}
            start_ms = start.timestamp() * 1000
            width_ms = TREND_BUCKET.total_seconds() * 1000
            for letter in self.letters:
                bucket = int((letter.record.timestamp_ms - start_ms) // width_ms)
                row = counts.setdefault(letter.group, [0] * TREND_BUCKETS)
                if 0 <= bucket < TREND_BUCKETS:
                    row[bucket] += 1
            return counts

        return self._cached(("trend", end), make)


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
        self._snapshot = Snapshot(0, [], {}, {}, caught_up=False, refreshed_at=datetime.now(UTC))

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
            dead = sorted(name for name in names if name.endswith(".dlq"))
            bounds = await reader.bounds(dead)
            changed = self._forget_deleted(bounds)
            start = {tp: self._position.get(tp, first) for tp, (first, _) in bounds.items()}
            end = {tp: last for tp, (_, last) in bounds.items()}
            async for batch in reader.scan(start, end):
                for record in batch:
                    tp = TopicPartition(record.topic, record.partition)
                    self._by_partition.setdefault(tp, []).append(
                        slim(DeadLetter.from_record(record))
                    )
                    self._offsets.setdefault(tp, []).append(record.offset)
                    changed = True
                # A page during a long first read shows what has arrived so far.
                self._publish(bounds, changed=changed, caught_up=False)
                changed = False
            self._position.update(end)
            groups = {group_of_topic(tp.topic) for tp in bounds}
            parked = await self._parked(reader, names, groups)
            lags = await self._lags(reader, names, groups)
            self._publish(bounds, changed=changed, caught_up=True, parked=parked, lags=lags)
            return self._snapshot

    def _forget_deleted(self, bounds: dict[TopicPartition, tuple[int, int]]) -> bool:
        changed = False
        for tp in list(self._by_partition):
            first = bounds.get(tp, (None, None))[0]
            offsets = self._offsets[tp]
            cut = len(offsets) if first is None else bisect.bisect_left(offsets, first)
            if cut:
                del self._by_partition[tp][:cut], offsets[:cut]
                changed = True
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
    ) -> None:
        old = self._snapshot
        if changed:
            self._version += 1
        letters = (
            [letter for tp in sorted(bounds) for letter in self._by_partition.get(tp, ())]
            if changed or old.version != self._version
            else old.letters
        )
        self._snapshot = Snapshot(
            version=self._version,
            letters=letters,
            parked=old.parked if parked is None else parked,
            lags=old.lags if lags is None else lags,
            caught_up=caught_up,
            refreshed_at=datetime.now(UTC),
            # Derived views stay valid while the letters are the same list.
            _cache=old._cache if letters is old.letters else {},  # noqa: SLF001 - same class
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
            committed = await reader.committed(group, list(bounds))
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
