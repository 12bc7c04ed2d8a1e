"""One contract, two stores: SQLite (default) and PostgreSQL (several instances of a group)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import sqlite3
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from hub.core.store import sqlite as sqlite_store
from hub.core.store.base import EventId, KafkaRecord, StaleBatchError
from hub.core.store.factory import open_store
from hub.core.store.postgres import PostgresStateStore
from hub.core.store.sqlite import SqliteStateStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from hub.core.store.base import Headers, JsonObject, StateStore

    StoreOpener = Callable[[], Awaitable[StateStore]]

pytestmark = pytest.mark.integration
pytest_plugins = ("store_fixtures",)

KEY = "case-1"


def a_record(offset: int, headers: Headers = ()) -> KafkaRecord:
    return KafkaRecord("cases", 3, offset, 1_700_000_000_000 + offset, KEY.encode(), b"{}", headers)


async def drain(store: StateStore, group: str, key: str) -> list[int]:
    """Handle every follower of `key` the way the pipeline does; returns their offsets."""
    offsets = []
    while (parked := await store.next_parked(group, key)) is not None:
        offsets.append(parked.record.offset)
        await store.remove_parked(group, key, parked.seq)
    return offsets


# --- event identity and batches ----------------------------------------------------------
async def test_an_event_is_its_source_and_id_together(
    state_store: StateStore, store_group: str
) -> None:
    assert await state_store.record_processed(store_group, EventId("urn:a", "same-id"))
    assert await state_store.is_processed(store_group, EventId("urn:a", "same-id"))
    assert not await state_store.is_processed(store_group, EventId("urn:b", "same-id"))
    assert await state_store.record_processed(store_group, EventId("urn:b", "same-id"))


async def test_a_batch_is_read_in_one_call_and_written_in_one_transaction(
    state_store: StateStore, store_group: str
) -> None:
    old, new = EventId("urn:t", "old"), EventId("urn:t", "new")
    await state_store.record_processed(store_group, old, key="c1", state={"v": 1})
    await state_store.park(store_group, "c2", "head-2")

    snapshot = await state_store.load_batch(store_group, [old, new], {"c1", "c2", "c3"})
    assert snapshot.processed == {old}
    assert snapshot.states == {"c1": {"v": 1}}
    assert snapshot.park_heads == {"c2": "head-2"}

    events = [new, EventId("urn:t", "n2")]
    await state_store.commit_batch(store_group, events, {"c1": {"v": 2}, "c3": {"v": "三"}})
    snapshot = await state_store.load_batch(store_group, events, {"c1", "c3"})
    assert snapshot.processed == set(events)
    assert snapshot.states == {"c1": {"v": 2}, "c3": {"v": "三"}}


async def test_a_batch_with_an_event_already_recorded_writes_nothing(
    state_store: StateStore, store_group: str
) -> None:
    done = EventId("urn:t", "done")
    await state_store.record_processed(store_group, done, key="c1", state={"v": 1})
    fresh = EventId("urn:t", "fresh")
    with pytest.raises(StaleBatchError):
        await state_store.commit_batch(store_group, [fresh, done], {"c1": {"v": 99}})
    assert not await state_store.is_processed(store_group, fresh)
    assert await state_store.load_state(store_group, "c1") == {"v": 1}
    with pytest.raises(ValueError, match="JSON"):
        await state_store.commit_batch(store_group, [fresh], {"c1": {"x": float("nan")}})
    assert not await state_store.is_processed(store_group, fresh)


async def test_each_write_of_a_state_raises_its_version(
    state_store: StateStore, store_group: str
) -> None:
    assert (await state_store.load_batch(store_group, [], ["c1"])).versions == {}
    await state_store.commit_batch(store_group, [EventId("urn:t", "1")], {"c1": {"v": 1}})
    await state_store.commit_batch(
        store_group, [EventId("urn:t", "2")], {"c1": {"v": 2}}, read_versions={"c1": 1}
    )
    snapshot = await state_store.load_batch(store_group, [], ["c1", "c2"])
    assert (snapshot.states, snapshot.versions) == ({"c1": {"v": 2}}, {"c1": 2})


async def test_a_batch_whose_read_state_changed_publishes_nothing_and_writes_nothing(
    open_state_store: StoreOpener, store_group: str
) -> None:
    # Two members of a group during a rebalance: both read c1 at version 1; the second to
    # commit decided from a state that is gone.
    former_owner, new_owner = await open_state_store(), await open_state_store()
    await former_owner.commit_batch(store_group, [EventId("urn:t", "0")], {"c1": {"v": 0}})
    read = (await former_owner.load_batch(store_group, [], ["c1", "c9"])).versions
    assert read == {"c1": 1}
    published: list[str] = []

    async def publish(name: str) -> None:
        published.append(name)

    await new_owner.commit_batch(
        store_group, [EventId("urn:t", "b")], {"c1": {"v": "b"}},
        read_versions={**read, "c9": 0}, publish=lambda: publish("b"),
    )  # fmt: skip
    stale = r"1 state\(s\) changed since the batch read them: c1$"
    with pytest.raises(StaleBatchError, match=stale):
        await former_owner.commit_batch(
            store_group, [EventId("urn:t", "a")], {"c1": {"v": "a"}, "c9": {"v": "a"}},
            read_versions={**read, "c9": 0}, publish=lambda: publish("a"),
        )  # fmt: skip
    assert published == ["b"]
    assert not await former_owner.is_processed(store_group, EventId("urn:t", "a"))
    assert await former_owner.load_state(store_group, "c1") == {"v": "b"}
    assert await former_owner.load_state(store_group, "c9") is None
    # A key that had no state is stale once another writer gives it one.
    with pytest.raises(StaleBatchError, match="c1"):
        await former_owner.commit_batch(
            store_group, [EventId("urn:t", "a")], {}, read_versions={"c1": 0}
        )


async def test_a_failed_publish_writes_nothing(state_store: StateStore, store_group: str) -> None:
    async def broker_down() -> None:
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError, match="broker unreachable"):
        await state_store.commit_batch(
            store_group, [EventId("urn:t", "e")], {"c1": {"v": 1}}, publish=broker_down
        )
    assert not await state_store.is_processed(store_group, EventId("urn:t", "e"))
    assert (await state_store.load_batch(store_group, [], ["c1"])).versions == {}


async def test_a_batch_of_an_event_already_recorded_publishes_nothing(
    state_store: StateStore, store_group: str
) -> None:
    await state_store.commit_batch(store_group, [EventId("urn:t", "e")], {})
    published: list[int] = []

    async def publish() -> None:
        published.append(1)

    with pytest.raises(StaleBatchError):
        await state_store.commit_batch(store_group, [EventId("urn:t", "e")], {}, publish=publish)
    assert published == []


@pytest.mark.parametrize("store_database_url", ["postgres"], indirect=True)
async def test_postgres_holds_the_read_states_from_the_check_to_the_commit(
    open_state_store: StoreOpener, store_group: str
) -> None:
    # While one member publishes, the other's commit on the same key waits, then finds the
    # version it read gone and publishes nothing: never both decisions out.
    first, second = await open_state_store(), await open_state_store()
    await first.commit_batch(store_group, [EventId("urn:t", "0")], {"c1": {"v": 0}})
    publishing, release = asyncio.Event(), asyncio.Event()
    published: list[str] = []

    async def slow_publish() -> None:
        publishing.set()
        await release.wait()
        published.append("first")

    async def publish_second() -> None:
        published.append("second")

    committing = asyncio.create_task(first.commit_batch(
        store_group, [EventId("urn:t", "a")], {"c1": {"v": "a"}},
        read_versions={"c1": 1}, publish=slow_publish,
    ))  # fmt: skip
    await publishing.wait()
    waiting = asyncio.create_task(second.commit_batch(
        store_group, [EventId("urn:t", "b")], {"c1": {"v": "b"}},
        read_versions={"c1": 1}, publish=publish_second,
    ))  # fmt: skip
    await asyncio.sleep(0.3)
    assert not waiting.done()
    release.set()
    await committing
    with pytest.raises(StaleBatchError, match="c1"):
        await waiting
    assert published == ["first"]
    assert await second.load_state(store_group, "c1") == {"v": "a"}


# --- inbox and per-key state -------------------------------------------------------------
async def test_an_event_is_recorded_once_and_a_repeat_writes_nothing(
    state_store: StateStore, store_group: str
) -> None:
    assert not await state_store.is_processed(store_group, EventId("urn:test", "e1"))
    assert await state_store.record_processed(
        store_group, EventId("urn:test", "e1"), key="c1", state={"step": 1}
    )
    assert await state_store.is_processed(store_group, EventId("urn:test", "e1"))

    assert not await state_store.record_processed(
        store_group, EventId("urn:test", "e1"), key="c1", state={"step": 9}
    )
    assert not await state_store.record_processed(
        store_group, EventId("urn:test", "e1"), key="c2", state={"step": 9}
    )
    assert await state_store.load_state(store_group, "c1") == {"step": 1}
    assert await state_store.load_state(store_group, "c2") is None
    assert await state_store.inbox_size(store_group) == 1

    # No state: only the inbox row; the key's document stays as it was.
    assert await state_store.record_processed(store_group, EventId("urn:test", "e2"), key="c1")
    assert await state_store.load_state(store_group, "c1") == {"step": 1}
    assert await state_store.inbox_size(store_group) == 2
    # Another group has an inbox of its own.
    other = f"{store_group}-other"
    assert not await state_store.is_processed(other, EventId("urn:test", "e1"))
    assert await state_store.record_processed(other, EventId("urn:test", "e1"))


async def test_state_round_trips_and_the_last_write_wins(
    state_store: StateStore, store_group: str
) -> None:
    document: JsonObject = {
        "status": "已收件",
        "customer": {"name": "王小明", "city": "深圳市南山区"},
        "note": "Reparatur für Müller — 👍",
        "odd": "nul \x00 and a lone surrogate \ud800",
        "lines": [1, 2.5, -(2**62), True, None, [], {}],
    }
    assert await state_store.record_processed(
        store_group, EventId("urn:test", "e1"), key="案件-1", state=document
    )
    assert await state_store.load_state(store_group, "案件-1") == document

    assert await state_store.record_processed(
        store_group, EventId("urn:test", "e2"), key="案件-1", state={"v": 2}
    )
    assert await state_store.load_state(store_group, "案件-1") == {"v": 2}
    assert await state_store.load_state(f"{store_group}-other", "案件-1") is None


async def test_a_state_that_is_not_json_records_nothing(
    state_store: StateStore, store_group: str
) -> None:
    with pytest.raises(ValueError, match="JSON"):
        await state_store.record_processed(
            store_group, EventId("urn:test", "e1"), key="c1", state={"x": float("nan")}
        )
    assert not await state_store.is_processed(store_group, EventId("urn:test", "e1"))
    assert await state_store.load_state(store_group, "c1") is None


async def test_the_inbox_is_purged_by_age(state_store: StateStore, store_group: str) -> None:
    await state_store.record_processed(store_group, EventId("urn:test", "old-1"))
    await state_store.record_processed(store_group, EventId("urn:test", "old-2"))
    await asyncio.sleep(0.01)
    cutoff = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await state_store.record_processed(store_group, EventId("urn:test", "new"))
    await state_store.record_processed(f"{store_group}-other", EventId("urn:test", "old-1"))

    assert await state_store.purge_inbox(store_group, cutoff - timedelta(hours=1)) == 0
    # Any timezone works; only the instant counts.
    in_beijing = cutoff.astimezone(timezone(timedelta(hours=8)))
    assert await state_store.purge_inbox(store_group, in_beijing) == 2
    assert not await state_store.is_processed(store_group, EventId("urn:test", "old-1"))
    assert await state_store.is_processed(store_group, EventId("urn:test", "new"))
    assert await state_store.inbox_size(store_group) == 1
    assert await state_store.is_processed(f"{store_group}-other", EventId("urn:test", "old-1"))
    with pytest.raises(ValueError, match="timezone-aware"):
        await state_store.purge_inbox(store_group, datetime.now())  # noqa: DTZ005 - the point


async def test_sqlite_purges_in_chunks_and_lets_the_loop_run_between_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "PURGE_CHUNK_ROWS", 3)
    store = SqliteStateStore(tmp_path / "purge.db")
    await store.open()
    try:
        for number in range(10):
            await store.record_processed("g", EventId("urn:test", f"old-{number}"))
        await asyncio.sleep(0.01)
        cutoff = datetime.now(UTC)
        await store.record_processed("g", EventId("urn:test", "new"))
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        started = ticks
        purged = await store.purge_inbox("g", cutoff)
        ticker.cancel()

        assert purged == 10
        assert ticks - started >= 3  # ten rows in chunks of three: the loop ran in between
        assert await store.inbox_size("g") == 1
        assert await store.is_processed("g", EventId("urn:test", "new"))
    finally:
        await store.close()


async def test_two_stores_recording_the_same_events_record_each_once(
    open_state_store: StoreOpener, store_group: str
) -> None:
    first, second = await open_state_store(), await open_state_store()
    ids = [f"e{number}" for number in range(30)]
    results = await asyncio.gather(
        *(
            store.record_processed(
                store_group, EventId("urn:test", event_id), key=event_id, state={"by": name}
            )
            for event_id in ids
            for store, name in ((first, "first"), (second, "second"))
        )
    )
    assert [results[i] ^ results[i + 1] for i in range(0, len(results), 2)] == [True] * len(ids)
    assert await first.inbox_size(store_group) == len(ids)


# --- park by key -------------------------------------------------------------------------
async def test_a_hundred_followers_come_back_in_order_and_release_the_park(
    state_store: StateStore, store_group: str
) -> None:
    await state_store.park(store_group, KEY, "head-1")
    assert await state_store.park_head(store_group, KEY) == "head-1"
    for offset in range(1, 101):
        assert await state_store.append_parked(store_group, KEY, a_record(offset))
    assert await state_store.parked_keys(store_group) == [KEY]

    # Looking does not take: the oldest follower stays until it is removed.
    first = await state_store.next_parked(store_group, KEY)
    again = await state_store.next_parked(store_group, KEY)
    assert first is not None
    assert again == first
    # A new head (the follower that failed in its turn) keeps the followers behind it.
    await state_store.park(store_group, KEY, "head-2")
    assert await state_store.park_head(store_group, KEY) == "head-2"

    seqs = []
    offsets = []
    while (parked := await state_store.next_parked(store_group, KEY)) is not None:
        seqs.append(parked.seq)
        offsets.append(parked.record.offset)
        await state_store.remove_parked(store_group, KEY, parked.seq)
    assert offsets == list(range(1, 101))
    assert seqs == sorted(set(seqs))
    assert await state_store.park_head(store_group, KEY) is None
    assert await state_store.parked_keys(store_group) == []


async def test_append_is_refused_when_the_key_is_not_parked(
    state_store: StateStore, store_group: str
) -> None:
    assert not await state_store.append_parked(store_group, KEY, a_record(1))
    # Parked in another group, or another key parked: still not parked here.
    await state_store.park(f"{store_group}-other", KEY, "head")
    await state_store.park(store_group, "case-2", "head")
    assert not await state_store.append_parked(store_group, KEY, a_record(2))
    assert await state_store.park_head(store_group, KEY) is None
    assert await state_store.next_parked(store_group, KEY) is None
    assert await state_store.parked_keys(store_group) == ["case-2"]


async def test_the_last_release_deletes_the_park_and_later_appends_are_refused(
    state_store: StateStore, store_group: str
) -> None:
    await state_store.park(store_group, KEY, "head")
    assert await state_store.append_parked(store_group, KEY, a_record(1))
    assert await drain(state_store, store_group, KEY) == [1]
    assert await state_store.park_head(store_group, KEY) is None
    assert not await state_store.append_parked(store_group, KEY, a_record(2))
    assert await state_store.next_parked(store_group, KEY) is None

    # Parked again, the key starts afresh and its seqs never repeat the old ones.
    await state_store.park(store_group, KEY, "head-2")
    assert await state_store.append_parked(store_group, KEY, a_record(3))
    assert await drain(state_store, store_group, KEY) == [3]


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (("ce_id", b"1"), ("x", b"\xff\x00\xfe"), ("x", b"second"), ("empty", b"")),
        (("x", b"\x80"), ("ce_id", b"2"), ("x", b"\xc3\x28"), ("x", b"\x80")),
        (("名前", "値".encode()), ("nul\x00name", b"\x00"), ("", b"no name")),
    ],
    ids=["none", "duplicates-and-binary", "order-and-repeats", "unicode-and-nul-names"],
)
async def test_headers_come_back_byte_for_byte_in_order(
    state_store: StateStore, store_group: str, headers: Headers
) -> None:
    original = a_record(7, headers)
    await state_store.park(store_group, KEY, "head")
    assert await state_store.append_parked(store_group, KEY, original)
    parked = await state_store.next_parked(store_group, KEY)
    assert parked is not None
    assert parked.record == original
    assert [type(value) for _, value in parked.record.headers] == [bytes] * len(headers)


async def test_null_and_empty_keys_and_values_stay_apart(
    state_store: StateStore, store_group: str
) -> None:
    records = [
        KafkaRecord("t", 0, 1, 0, None, None, ()),
        KafkaRecord("t", 0, 2, 0, b"", b"", ()),
        KafkaRecord("t", 0, 3, 0, None, b"\x00\xff", ()),
        KafkaRecord("t", 2**31 - 1, 2**62, 2**62, b"\xff" * 1000, None, ()),
    ]
    await state_store.park(store_group, KEY, "head")
    for record in records:
        assert await state_store.append_parked(store_group, KEY, record)
    seen = []
    while (parked := await state_store.next_parked(store_group, KEY)) is not None:
        seen.append(parked.record)
        await state_store.remove_parked(store_group, KEY, parked.seq)
    assert seen == records


class ParkRace:
    """Two writers append followers of one key while a drainer releases it and parks it again."""

    def __init__(self, group: str, drainer: StateStore, pause_s: float) -> None:
        self.group = group
        self.drainer = drainer
        self.pause_s = pause_s
        self.pauses = random.Random(7)
        self.epoch = 0  # how many times the park has been released and parked again
        self.parked = True
        self.in_flight = 0
        self.idle = asyncio.Condition()
        self.writers_done = 0
        self.accepted: dict[int, int] = {}  # offset: the epoch its append began in
        self.appended_while_released: list[int] = []
        self.drained: list[tuple[int, int]] = []  # (offset, epoch)

    async def write(self, store: StateStore, base: int) -> None:
        for offset in range(base, base + 100):
            epoch, parked = self.epoch, self.parked
            self.in_flight += 1
            try:
                appended = await store.append_parked(self.group, KEY, a_record(offset))
            finally:
                async with self.idle:
                    self.in_flight -= 1
                    self.idle.notify_all()
            if appended:
                self.accepted[offset] = epoch
                if not parked:
                    self.appended_while_released.append(offset)
            await asyncio.sleep(self.pauses.uniform(0, self.pause_s))
        self.writers_done += 1

    async def release(self) -> None:
        # Like the pipeline: handle followers until there are none, which deletes the park;
        # then park again (a new head) while the writers go on, until they are done.
        while True:
            parked = await self.drainer.next_parked(self.group, KEY)
            if parked is not None:
                self.drained.append((parked.record.offset, self.epoch))
                await self.drainer.remove_parked(self.group, KEY, parked.seq)
                continue
            self.parked = False
            if self.writers_done == 2:
                return
            self.epoch += 1
            # Every append begun before the release finishes before the key is parked again:
            # one stored behind the released park would only come back in the new epoch.
            async with self.idle:
                await self.idle.wait_for(lambda: self.in_flight == 0)
                self.parked = True
            await self.drainer.park(self.group, KEY, f"head-{self.epoch}")


# Fast writers outrun the drainer (it commits twice per follower); slow ones let it catch up,
# so the park is released and parked again dozens of times while appends are in flight.
@pytest.mark.parametrize("writer_pause_s", [0.0, 0.012], ids=["fast-writers", "slow-writers"])
@pytest.mark.parametrize("instances", ["one-store", "three-stores"])
async def test_two_writers_and_a_drainer_see_each_follower_once_in_order(
    open_state_store: StoreOpener, store_group: str, instances: str, writer_pause_s: float
) -> None:
    # Three stores are three connections (SQLite) or three pools (PostgreSQL): three processes.
    writer_a = await open_state_store()
    writer_b, drainer = writer_a, writer_a
    if instances == "three-stores":
        writer_b, drainer = await open_state_store(), await open_state_store()
    race = ParkRace(store_group, drainer, writer_pause_s)
    await drainer.park(store_group, KEY, "head-0")

    await asyncio.gather(race.write(writer_a, 0), race.write(writer_b, 1000), race.release())

    drained = [offset for offset, _ in race.drained]
    assert len(drained) == len(set(drained)), "a follower came back twice"
    # Each follower came back in the epoch its append began in: none was stored behind a
    # park already released (it would have come back only after the next release).
    assert dict(race.drained) == race.accepted
    assert race.appended_while_released == []
    for base in (0, 1000):
        from_writer = [offset for offset in drained if base <= offset < base + 100]
        assert from_writer == sorted(from_writer), "a writer's followers came back out of order"
    assert await drainer.park_head(store_group, KEY) is None
    assert await drainer.next_parked(store_group, KEY) is None  # no follower left behind


# --- durability and schema -----------------------------------------------------------------
async def test_data_survive_reopening(open_state_store: StoreOpener, store_group: str) -> None:
    first = await open_state_store()
    await first.record_processed(
        store_group, EventId("urn:test", "e1"), key="c1", state={"v": "一"}
    )
    await first.park(store_group, KEY, "head")
    await first.append_parked(store_group, KEY, a_record(5, (("h", b"\x01"),)))
    await first.close()
    await first.close()  # closing twice is harmless

    second = await open_state_store()
    assert await second.is_processed(store_group, EventId("urn:test", "e1"))
    assert not await second.record_processed(store_group, EventId("urn:test", "e1"))
    assert await second.load_state(store_group, "c1") == {"v": "一"}
    assert await second.park_head(store_group, KEY) == "head"
    parked = await second.next_parked(store_group, KEY)
    assert parked is not None
    assert parked.record == a_record(5, (("h", b"\x01"),))


WRITER = textwrap.dedent(
    """
    import asyncio
    import sys

    from hub.core.store.base import EventId
    from hub.core.store.sqlite import SqliteStateStore


    async def main() -> None:
        store = SqliteStateStore(sys.argv[1])
        await store.open()
        number = 0
        while True:
            event_id = f"e-{number}"
            state = {"n": number}
            event = EventId("urn:test", event_id)
            await store.record_processed("durability", event, key=f"k{number % 7}", state=state)
            sys.stdout.write(f"{event_id}\\n")
            sys.stdout.flush()
            number += 1


    asyncio.run(main())
    """
)


async def test_sqlite_keeps_every_returned_write_when_its_process_is_killed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "killed.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    printed: list[str] = []

    async def read_until(count: int) -> None:
        assert child.stdout is not None
        while len(printed) < count and (line := await child.stdout.readline()):
            if re.fullmatch(r"e-\d+", text := line.decode().strip()):
                printed.append(text)

    try:
        await asyncio.wait_for(read_until(300), timeout=60)
    finally:
        child.kill()  # SIGKILL: no chance to close, checkpoint or flush
    await read_until(sys.maxsize)  # what it wrote before it died
    errors = (await child.stderr.read()).decode(errors="replace")
    assert await child.wait() == -signal.SIGKILL, errors
    assert len(printed) >= 300, errors

    store = SqliteStateStore(path)
    await store.open()
    try:
        missing = [
            event_id
            for event_id in printed
            if not await store.is_processed("durability", EventId("urn:test", event_id))
        ]
        assert missing == []
        last = len(printed) - 1
        for key in range(7):
            newest = max(n for n in range(last + 1) if n % 7 == key)
            state = await store.load_state("durability", f"k{key}")
            assert state is not None
            assert state["n"] >= newest  # one more may have committed before its line was written
    finally:
        await store.close()


LEGACY_SQLITE = """
CREATE TABLE hub_inbox (grp TEXT, event_id TEXT, processed_at TEXT, PRIMARY KEY (grp, event_id));
CREATE TABLE hub_state (grp TEXT, key TEXT, document TEXT, updated_at TEXT, PRIMARY KEY (grp, key));
CREATE TABLE hub_park (grp TEXT, key TEXT, head_event_id TEXT, parked_at TEXT,
    PRIMARY KEY (grp, key));
CREATE TABLE hub_parked (grp TEXT, key TEXT, seq INTEGER, topic TEXT, part INTEGER, off INTEGER,
    timestamp_ms INTEGER, rkey BLOB, value BLOB, headers TEXT, PRIMARY KEY (grp, key, seq));
INSERT INTO hub_inbox VALUES ('g', 'e1', '2026-01-01T00:00:00+00:00');
INSERT INTO hub_state VALUES ('g', 'c1', '{"v": "旧"}', '2026-01-01T00:00:00+00:00');
INSERT INTO hub_park VALUES ('g', 'k', 'head', '2026-01-01T00:00:00+00:00');
INSERT INTO hub_parked VALUES ('g', 'k', 2, 't', 0, 12, 0, X'6B', NULL,
    '[["x", "ff00"], ["x", ""]]');
INSERT INTO hub_parked VALUES ('g', 'k', 1, 't', 0, 11, 0, NULL, X'', '[]');
INSERT INTO hub_parked VALUES ('g', 'j', 1, 't', 0, 10, 0, NULL, NULL, '[]');
"""

LEGACY_POSTGRES = """
CREATE TABLE hub_inbox (grp text, event_id text, processed_at timestamptz NOT NULL,
    PRIMARY KEY (grp, event_id));
CREATE INDEX hub_inbox_age ON hub_inbox (grp, processed_at);
CREATE TABLE hub_state (grp text, key text, document jsonb NOT NULL,
    updated_at timestamptz NOT NULL, PRIMARY KEY (grp, key));
CREATE TABLE hub_park (grp text, key text, head_event_id text NOT NULL,
    parked_at timestamptz NOT NULL, PRIMARY KEY (grp, key));
CREATE TABLE hub_parked (grp text, key text, seq bigint, topic text NOT NULL,
    part integer NOT NULL, off bigint NOT NULL, timestamp_ms bigint NOT NULL, rkey bytea,
    value bytea, header_names text[] NOT NULL, header_values bytea[] NOT NULL,
    PRIMARY KEY (grp, key, seq));
INSERT INTO hub_inbox VALUES ('g', 'e1', '2026-01-01T00:00:00+00:00');
INSERT INTO hub_state VALUES ('g', 'c1', '{"v": "旧"}', '2026-01-01T00:00:00+00:00');
INSERT INTO hub_park VALUES ('g', 'k', 'head', '2026-01-01T00:00:00+00:00');
INSERT INTO hub_parked VALUES ('g', 'k', 2, 't', 0, 12, 0, 'k', NULL, '{x,x}', '{"\\\\xff00",""}');
INSERT INTO hub_parked VALUES ('g', 'k', 1, 't', 0, 11, 0, NULL, '', '{}', '{}');
INSERT INTO hub_parked VALUES ('g', 'j', 1, 't', 0, 10, 0, NULL, NULL, '{}', '{}');
"""


def _with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query), ("search_path", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _legacy_database(url: str, cleanup: contextlib.AsyncExitStack) -> str:
    """A database in the layout before schema versions; returns the URL that reaches it."""
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as file:
            file.executescript(LEGACY_SQLITE)
        return url
    # A schema of the test's own stands in for a database the old hub wrote.
    schema = f"hub_legacy_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    cleanup.push_async_callback(admin.close)
    # An identifier cannot be a bound parameter; this one is our own hex token.
    await admin.execute(f"CREATE SCHEMA {schema}")
    cleanup.push_async_callback(admin.execute, f"DROP SCHEMA {schema} CASCADE")
    legacy_url = _with_search_path(url, schema)
    legacy = await asyncpg.connect(legacy_url)
    try:
        await legacy.execute(LEGACY_POSTGRES)
    finally:
        await legacy.close()
    return legacy_url


async def test_a_store_of_the_unversioned_layout_is_upgraded_in_place(
    store_database_url: str, tmp_path: Path
) -> None:
    async with contextlib.AsyncExitStack() as cleanup:
        url = await _legacy_database(store_database_url, cleanup)
        store = open_store(url, default_path=tmp_path / "unused.db")
        await store.open()
        cleanup.push_async_callback(store.close)

        # An id recorded before the source was kept matches it from any source.
        assert not await store.record_processed("g", EventId("urn:test", "e1"))
        assert (await store.load_batch("g", [EventId("urn:x", "e1")], ())).processed == {
            EventId("urn:x", "e1")
        }
        assert await store.load_state("g", "c1") == {"v": "旧"}
        assert (await store.load_batch("g", [], ["c1"])).versions == {"c1": 1}
        assert await store.park_head("g", "k") == "head"
        assert await store.append_parked("g", "k", KafkaRecord("t", 0, 13, 0, None, None, ()))
        first = await store.next_parked("g", "k")
        assert first is not None
        assert first.record == KafkaRecord("t", 0, 11, 0, None, b"", ())
        await store.remove_parked("g", "k", first.seq)
        second = await store.next_parked("g", "k")
        assert second is not None
        headers = (("x", b"\xff\x00"), ("x", b""))
        assert second.record == KafkaRecord("t", 0, 12, 0, b"k", None, headers)
        await store.remove_parked("g", "k", second.seq)
        assert second.seq > first.seq
        assert await drain(store, "g", "k") == [13]
        assert await drain(store, "g", "j") == [10]
        # Opened again, the store finds its own version and changes nothing.
        await store.close()
        await store.open()
        assert await store.is_processed("g", EventId("urn:test", "e1"))


# --- the factory -------------------------------------------------------------------------
def test_the_factory_picks_the_store_by_url(tmp_path: Path) -> None:
    default = open_store(None, default_path=tmp_path / "default.db")
    assert isinstance(default, SqliteStateStore)
    assert default.path == tmp_path / "default.db"
    absolute = open_store(f"sqlite:///{tmp_path}/named.db", default_path=tmp_path / "x.db")
    assert isinstance(absolute, SqliteStateStore)
    assert absolute.path == tmp_path / "named.db"
    relative = open_store("sqlite:///state/hub.db", default_path=tmp_path / "x.db")
    assert isinstance(relative, SqliteStateStore)
    assert str(relative.path) == "state/hub.db"
    for url in ("postgresql://hub@db:5432/hub", "postgres://hub:secret@db/hub?sslmode=require"):
        assert isinstance(open_store(url, default_path=tmp_path / "x.db"), PostgresStateStore)
    for url in ("mysql://db/hub", "postgresql+asyncpg://db/hub", "sqlite://host/x.db", "hub.db"):
        with pytest.raises(ValueError, match="unsupported"):
            open_store(url, default_path=tmp_path / "x.db")


@pytest.mark.parametrize("durable", [True, False])
async def test_a_store_waits_for_the_disk_at_each_commit_unless_told_it_need_not(
    store_database_url: str, tmp_path: Path, *, durable: bool
) -> None:
    store = open_store(store_database_url, default_path=tmp_path / "x.db", durable=durable)
    await store.open()
    try:
        if isinstance(store, SqliteStateStore):
            pragma = "PRAGMA synchronous"
            # The writing connection's: its commits are what wait for the disk.
            mode = await store._write(lambda db: db.execute(pragma).fetchone()[0])
            assert mode == (2 if durable else 1)  # FULL, NORMAL
        else:
            assert isinstance(store, PostgresStateStore)
            mode = await store.pool.fetchval("SHOW synchronous_commit")
            assert mode == ("on" if durable else "off")
        event = EventId("urn:test", f"e-{uuid.uuid4()}")
        await store.commit_batch("durability", [event], {})
        assert await store.is_processed("durability", event)
    finally:
        await store.close()
