"""One contract, two stores: SQLite (default) and PostgreSQL (several instances of a group)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hub.core.store.base import KafkaRecord
from hub.core.store.factory import open_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from hub.core.store.base import StateStore

pytestmark = pytest.mark.integration
ENSURE_POSTGRES = Path(__file__).parents[2] / "deploy" / "postgres" / "ensure-postgres.sh"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """HUB_TEST_POSTGRES_URL, else a local server started by deploy/postgres (never skipped)."""
    configured = os.environ.get("HUB_TEST_POSTGRES_URL")
    if configured:
        return configured
    result = subprocess.run(  # noqa: S603 - our own script
        ["bash", str(ENSURE_POSTGRES)],  # noqa: S607 - bash from PATH, as make does
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"no PostgreSQL for the store tests:\n{result.stderr[-3000:]}")
    return result.stdout.strip()


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], StateStore]:
    """Makes stores on one database (two of them behave like two processes)."""
    if request.param == "sqlite":
        return lambda: open_store(None, default_path=tmp_path / "state.db")
    url = request.getfixturevalue("postgres_url")
    return lambda: open_store(url, default_path=tmp_path / "unused.db")


@pytest.fixture
async def store(store_factory: Callable[[], StateStore]) -> AsyncIterator[StateStore]:
    opened = store_factory()
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


def a_record(offset: int, headers: tuple[tuple[str, bytes], ...] = ()) -> KafkaRecord:
    return KafkaRecord("t", 0, offset, 1_700_000_000_000 + offset, b"case-1", b"{}", headers)


async def test_an_event_is_recorded_once_with_its_state(store: StateStore, group: str) -> None:
    assert await store.record_processed(group, "e1", key="c1", state={"status": "开单", "n": 1})
    assert await store.is_processed(group, "e1")
    assert not await store.record_processed(group, "e1", key="c1", state={"status": "later"})
    assert await store.load_state(group, "c1") == {"status": "开单", "n": 1}
    assert await store.inbox_size(group) == 1
    assert await store.load_state(group, "absent") is None


async def test_the_inbox_is_purged_by_age(store: StateStore, group: str) -> None:
    await store.record_processed(group, "old")
    assert await store.purge_inbox(group, datetime.now(UTC) - timedelta(hours=1)) == 0
    assert await store.purge_inbox(group, datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert not await store.is_processed(group, "old")


async def test_followers_come_back_in_order_and_release_the_park(
    store: StateStore, group: str
) -> None:
    assert not await store.append_parked(group, "k", a_record(0))  # not parked: nothing stored
    await store.park(group, "k", "head-1")
    assert await store.park_head(group, "k") == "head-1"
    for offset in range(1, 101):
        assert await store.append_parked(group, "k", a_record(offset))
    assert await store.parked_keys(group) == ["k"]
    seen = []
    while (parked := await store.next_parked(group, "k")) is not None:
        seen.append(parked.record.offset)
        await store.remove_parked(group, "k", parked.seq)
    assert seen == list(range(1, 101))
    assert await store.park_head(group, "k") is None
    assert not await store.append_parked(group, "k", a_record(200))


async def test_records_keep_their_bytes(store: StateStore, group: str) -> None:
    headers = (("ce_id", b"1"), ("x", b"\xff\x00\xfe"), ("x", b"second"), ("empty", b""))
    await store.park(group, "k", "h")
    await store.append_parked(group, "k", a_record(1, headers))
    await store.append_parked(group, "k", KafkaRecord("t", 2, 9, 0, None, None, ()))
    first = await store.next_parked(group, "k")
    assert first is not None
    assert first.record == a_record(1, headers)
    await store.remove_parked(group, "k", first.seq)
    second = await store.next_parked(group, "k")
    assert second is not None
    assert (second.record.key, second.record.value, second.record.headers) == (None, None, ())


async def test_two_writers_and_a_drainer_never_lose_or_repeat_a_follower(
    store_factory: Callable[[], StateStore], group: str
) -> None:
    stores = [store_factory() for _ in range(3)]
    for opened in stores:
        await opened.open()
    writer_a, writer_b, drainer = stores
    await writer_a.park(group, "k", "head")
    rejected: list[int] = []

    async def write(target: StateStore, base: int) -> None:
        for number in range(100):
            if not await target.append_parked(group, "k", a_record(base + number)):
                rejected.append(base + number)
            await asyncio.sleep(0)

    drained: list[int] = []

    async def drain() -> None:
        idle = 0
        while idle < 50:
            parked = await drainer.next_parked(group, "k")
            if parked is None:
                # The park is gone: writers must now be refused. Re-park to keep the test going
                # only until the writers are done.
                idle += 1
                await drainer.park(group, "k", "head")
                await asyncio.sleep(0.001)
                continue
            idle = 0
            drained.append(parked.record.offset)
            await drainer.remove_parked(group, "k", parked.seq)

    try:
        await asyncio.gather(write(writer_a, 0), write(writer_b, 1000), drain())
    finally:
        for opened in stores:
            await opened.close()
    assert len(drained) == len(set(drained))  # none twice
    assert sorted(drained + rejected) == [*range(100), *range(1000, 1100)]  # none lost
    from_a = [offset for offset in drained if offset < 1000]
    from_b = [offset for offset in drained if offset >= 1000]
    assert from_a == sorted(from_a)
    assert from_b == sorted(from_b)


async def test_data_survive_reopening(store_factory: Callable[[], StateStore], group: str) -> None:
    first = store_factory()
    await first.open()
    await first.record_processed(group, "e1", key="c1", state={"v": 1})
    await first.close()
    second = store_factory()
    await second.open()
    try:
        assert await second.is_processed(group, "e1")
        assert await second.load_state(group, "c1") == {"v": 1}
    finally:
        await second.close()
