"""Pick the state store from a URL: SQLite by default, PostgreSQL for several instances."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hub.core.store.postgres import PostgresStateStore
from hub.core.store.sqlite import SqliteStateStore

if TYPE_CHECKING:
    from hub.core.store.base import StateStore


def open_store(database_url: str | None, *, default_path: Path) -> StateStore:
    """The store for `database_url` (None: a SQLite file at `default_path`)."""
    if database_url is None:
        return SqliteStateStore(default_path)
    if database_url.startswith("sqlite:///"):
        return SqliteStateStore(Path(database_url.removeprefix("sqlite:///")))
    if database_url.startswith(("postgresql://", "postgres://")):
        return PostgresStateStore(database_url)
    raise ValueError(
        f"unsupported HUB_DATABASE_URL {database_url!r}: use sqlite:///path or postgresql://..."
    )
