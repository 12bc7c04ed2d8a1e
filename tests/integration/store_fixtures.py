"""State-store fixtures: every test runs on SQLite (a tmp_path file) and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hub.core.settings import HarnessSettings
from hub.core.store.factory import open_store
from hub.core.store.postgres import create_database, drop_database

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from hub.core.store.base import StateStore

ENSURE_POSTGRES = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "ensure-postgres.sh"
# apt-get may have to install the server first; well under pytest's own timeout.
ENSURE_POSTGRES_TIMEOUT_S = 240
STORE_BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this session's own on the test server, dropped at the session's end.

    The server outlives test runs (and clones): tables an older layout left there must never
    meet this run's code, so every session starts from an empty database.
    """
    url = asyncio.run(create_database(_postgres_server_url(), "hub_test"))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


def _postgres_server_url() -> str:
    """HUB_TEST_POSTGRES_URL, else the local server deploy/postgres starts (never skipped)."""
    configured = HarnessSettings().test_postgres_url
    if configured:
        return configured
    try:
        result = subprocess.run(  # noqa: S603 - our own script, no user input
            ["bash", str(ENSURE_POSTGRES)],  # noqa: S607 - bash from PATH, as make runs it
            capture_output=True,
            text=True,
            check=False,
            timeout=ENSURE_POSTGRES_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{ENSURE_POSTGRES} took over {error.timeout}s:\n{error.stderr!s}")
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(
            f"no PostgreSQL for the state-store tests ({ENSURE_POSTGRES} exited "
            f"{result.returncode}):\n{result.stderr[-4000:]}"
        )
    return result.stdout.strip()


@pytest.fixture(params=STORE_BACKENDS)
def store_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database of one test: a fresh SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def open_state_store(
    store_database_url: str, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[StateStore]]]:
    """Opens another store on the test's database (like another process); closed after."""
    opened: list[StateStore] = []

    async def open_one() -> StateStore:
        store = open_store(store_database_url, default_path=tmp_path / "unused.db")
        await store.open()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def state_store(open_state_store: Callable[[], Awaitable[StateStore]]) -> StateStore:
    """An open store, on SQLite and then on PostgreSQL."""
    return await open_state_store()


@pytest.fixture
def store_group() -> str:
    """A consumer group of the test's own, so tests sharing a database never meet."""
    return f"test-{uuid.uuid4().hex[:12]}"
