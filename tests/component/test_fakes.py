"""The in-memory fakes answer like the real SQLite store: same calls, same answers, same errors."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from fakes import START, FakeClock, InMemorySink, InMemoryStateStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.core.outbound import OutRecord
from hub.core.store.base import EventId, KafkaRecord, StaleBatchError
from hub.core.store.sqlite import SqliteStateStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from hub.core.store.base import StateStore

GROUP = "g"


def a_record(offset: int, key: bytes | None = b"case-1") -> KafkaRecord:
    return KafkaRecord(
        "cases", 1, offset, 1_700_000_000_000 + offset, key, b"{}", (("h", b"\xff\x00"),)
    )


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    backend: StateStore = (
        InMemoryStateStore(FakeClock())
        if request.param == "memory"
        else SqliteStateStore(tmp_path / "store.db")
    )
    await backend.open()
    yield backend
    await backend.close()


async def test_a_batch_is_all_or_nothing(store: StateStore) -> None:
    done, fresh = EventId("urn:a", "done"), EventId("urn:a", "fresh")
    assert await store.record_processed(GROUP, done, key="c1", state={"v": 1})
    with pytest.raises(StaleBatchError):
        await store.commit_batch(GROUP, [fresh, done], {"c1": {"v": 99}})
    with pytest.raises(StaleBatchError):  # the same event twice in one batch
        await store.commit_batch(GROUP, [fresh, fresh], {})
    with pytest.raises(ValueError, match="JSON"):
        await store.commit_batch(GROUP, [fresh], {"c1": {"x": float("nan")}})
    with pytest.raises(TypeError):
        await store.commit_batch(GROUP, [fresh], {"c1": {"at": START}})
    with pytest.raises(ValueError, match="JSON"):
        await store.record_processed(GROUP, fresh, key="c1", state={"x": float("inf")})
    assert not await store.is_processed(GROUP, fresh)
    assert await store.load_state(GROUP, "c1") == {"v": 1}
    assert await store.inbox_size(GROUP) == 1

    await store.commit_batch(GROUP, [fresh], {"c1": {"v": 2}, "c2": {"odd": "\ud800 三"}})
    snapshot = await store.load_batch(GROUP, [done, fresh, EventId("urn:b", "done")], {"c2", "c9"})
    assert snapshot.processed == {done, fresh}  # the source is part of the identity
    assert snapshot.states == {"c2": {"odd": "\ud800 三"}}
    assert await store.load_state(GROUP, "c1") == {"v": 2}
    assert not await store.record_processed(GROUP, fresh)
    assert await store.inbox_size(f"{GROUP}-other") == 0


async def test_a_loaded_state_is_a_copy(store: StateStore) -> None:
    await store.record_processed(GROUP, EventId("urn:a", "e"), key="c1", state={"list": [1]})
    loaded = await store.load_state(GROUP, "c1")
    assert loaded is not None
    loaded["list"].append(2)
    snapshot = await store.load_batch(GROUP, [], {"c1"})
    snapshot.states["c1"]["list"].append(3)
    assert await store.load_state(GROUP, "c1") == {"list": [1]}


async def test_followers_come_back_in_order_and_the_last_release_deletes_the_park(
    store: StateStore,
) -> None:
    assert not await store.append_parked(GROUP, "k", a_record(0))
    await store.park(GROUP, "k", "head-1")
    await store.park(f"{GROUP}-other", "k", "elsewhere")
    records = [a_record(1), a_record(2, key=None), a_record(3, key=b"")]
    for record in records:
        assert await store.append_parked(GROUP, "k", record)
    first = await store.next_parked(GROUP, "k")
    assert first is not None
    assert await store.next_parked(GROUP, "k") == first  # looking does not take
    await store.park(GROUP, "k", "head-2")  # a new head keeps the followers
    assert await store.park_head(GROUP, "k") == "head-2"
    seen, seqs = [], []
    while (parked := await store.next_parked(GROUP, "k")) is not None:
        seen.append(parked.record)
        seqs.append(parked.seq)
        await store.remove_parked(GROUP, "k", parked.seq)
    assert seen == records
    assert seqs == sorted(set(seqs))
    assert await store.park_head(GROUP, "k") is None
    assert not await store.append_parked(GROUP, "k", a_record(4))
    assert await store.parked_keys(GROUP) == []
    assert await store.parked_keys(f"{GROUP}-other") == ["k"]
    await store.park(GROUP, "k", "head-3")
    assert await store.append_parked(GROUP, "k", a_record(5))
    again = await store.next_parked(GROUP, "k")
    assert again is not None
    assert again.seq > max(seqs)  # a seq is never reused


async def test_the_inbox_is_purged_by_age_and_wants_an_aware_time(store: StateStore) -> None:
    await store.record_processed(GROUP, EventId("urn:a", "e1"))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.purge_inbox(GROUP, datetime(2026, 1, 1))  # noqa: DTZ001 - the point
    assert await store.purge_inbox(GROUP, START - timedelta(days=3650)) == 0
    assert await store.purge_inbox(GROUP, datetime.now(START.tzinfo) + timedelta(days=1)) == 1
    assert await store.inbox_size(GROUP) == 0


async def test_a_planned_store_outage_fails_the_next_calls_then_passes() -> None:
    store = InMemoryStateStore()
    store.faults.fail_next("commit_batch", times=2)
    store.faults.fail_next("park_head", error=TimeoutError("slow"))
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await store.commit_batch(GROUP, [EventId("urn:a", "e")], {"k": {"v": 1}})
    with pytest.raises(TimeoutError):
        await store.park_head(GROUP, "k")
    assert await store.park_head(GROUP, "k") is None
    assert await store.inbox_size(GROUP) == 0  # a failed call wrote nothing
    await store.commit_batch(GROUP, [EventId("urn:a", "e")], {"k": {"v": 1}})
    assert store.faults.calls["commit_batch"] == 3
    assert store.state(GROUP, "k") == {"v": 1}


async def test_a_planned_broker_outage_produces_nothing() -> None:
    sink = InMemorySink()
    sink.fail_next()
    record = OutRecord("t", b"k", b"v", ())
    with pytest.raises(ConnectionError):
        await sink.send([record])
    await sink.send([record, record])
    assert sink.records == [record, record]
    assert sink.sends == 2


# --- differential: random call sequences on both stores give the same answers --------------
KEYS = ("k1", "k2", "")
EVENTS = [EventId(source, name) for source, name in itertools.product(("urn:a", "urn:b"), "xyz")]
STATES = st.dictionaries(
    st.text(max_size=3),
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    max_size=3,
)
OPERATIONS = st.one_of(
    st.tuples(st.just("commit"), st.lists(st.sampled_from(EVENTS), max_size=3),
              st.dictionaries(st.sampled_from(KEYS), STATES, max_size=2)),
    st.tuples(st.just("record"), st.sampled_from(EVENTS), st.none() | st.sampled_from(KEYS),
              st.none() | STATES),
    st.tuples(st.just("load"), st.lists(st.sampled_from(EVENTS), max_size=4),
              st.sets(st.sampled_from(KEYS))),
    st.tuples(st.just("park"), st.sampled_from(KEYS), st.sampled_from(["h1", "h2"])),
    st.tuples(st.just("append"), st.sampled_from(KEYS), st.integers(0, 99)),
    st.tuples(st.just("next"), st.sampled_from(KEYS)),
    st.tuples(st.just("remove"), st.sampled_from(KEYS)),
    st.tuples(st.just("inspect"), st.sampled_from(KEYS), st.sampled_from(EVENTS)),
)  # fmt: skip


async def _apply(  # noqa: C901, PLR0911 - one case per store call
    store: StateStore, group: str, operation: tuple[Any, ...], seqs: dict[str, int]
) -> object:
    """One call; the answer, or the class of the error it raised (seqs differ by backend)."""
    name, *args = operation
    try:
        match name:
            case "commit":
                await store.commit_batch(group, args[0], args[1])
                return "committed"
            case "record":
                return await store.record_processed(group, args[0], key=args[1], state=args[2])
            case "load":
                snapshot = await store.load_batch(group, args[0], args[1])
                return snapshot.processed, dict(snapshot.states), dict(snapshot.park_heads)
            case "park":
                await store.park(group, args[0], args[1])
                return "parked"
            case "append":
                return await store.append_parked(group, args[0], a_record(args[1]))
            case "next":
                parked = await store.next_parked(group, args[0])
                if parked is None:
                    return None
                seqs[args[0]] = parked.seq
                return parked.record
            case "remove":
                if args[0] in seqs:
                    await store.remove_parked(group, args[0], seqs.pop(args[0]))
                return None
            case _:
                return (
                    await store.is_processed(group, args[1]),
                    await store.load_state(group, args[0]),
                    await store.park_head(group, args[0]),
                    await store.parked_keys(group),
                    await store.inbox_size(group),
                )
    except (StaleBatchError, ValueError, TypeError) as error:
        return type(error)


@pytest.fixture(scope="module")
def loop_and_sqlite(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[asyncio.AbstractEventLoop, SqliteStateStore]]:
    # A loop of its own, never made current: hypothesis drives a plain function.
    loop = asyncio.new_event_loop()
    sqlite = SqliteStateStore(tmp_path_factory.mktemp("differential") / "store.db")
    loop.run_until_complete(sqlite.open())
    yield loop, sqlite
    loop.run_until_complete(sqlite.close())
    loop.close()


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(operations=st.lists(OPERATIONS, max_size=25))
def test_the_fake_answers_every_call_sequence_like_sqlite(
    loop_and_sqlite: tuple[asyncio.AbstractEventLoop, SqliteStateStore],
    operations: list[tuple[Any, ...]],
) -> None:
    loop, sqlite = loop_and_sqlite
    memory = InMemoryStateStore()
    group = uuid.uuid4().hex  # a fresh group in the shared SQLite file
    fake_seqs: dict[str, int] = {}
    real_seqs: dict[str, int] = {}
    for operation in operations:
        expected = loop.run_until_complete(_apply(sqlite, group, operation, real_seqs))
        actual = loop.run_until_complete(_apply(memory, group, operation, fake_seqs))
        assert actual == expected, operation
    final = ("inspect", "k1", EVENTS[0])
    assert loop.run_until_complete(_apply(memory, group, final, {})) == loop.run_until_complete(
        _apply(sqlite, group, final, {})
    )
