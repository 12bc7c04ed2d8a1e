"""Pick the state store from a URL: SQLite by default, PostgreSQL for several instances."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hub.core.store.postgres import PostgresStateStore
from hub.core.store.sqlite import SqliteStateStore

if TYPE_CHECKING:
    from hub.core.store.base import StateStore

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")


def open_store(database_url: str | None, *, default_path: Path, durable: bool = True) -> StateStore:
    """The (unopened) store for `database_url`; None means a SQLite file at `default_path`.

    A store that is not `durable` may lose its last commits when the machine (or the database
    server) crashes, never when the process does; only for records that merely save work.

    `sqlite:///relative/path` and `sqlite:////absolute/path` name a SQLite file;
    `postgresql://` and `postgres://` URLs go to asyncpg as they are.
    """
    if database_url is None:
        return SqliteStateStore(default_path, durable=durable)
    scheme = urlsplit(database_url).scheme.lower()
    if scheme == "sqlite":
        path = database_url[len(SQLITE_PREFIX) :]
        if not database_url.startswith(SQLITE_PREFIX) or not path or "?" in path:
            raise ValueError(
                f"unsupported SQLite URL {database_url!r}: use sqlite:///relative/path or "
                "sqlite:////absolute/path, without host or query"
            )
        return SqliteStateStore(Path(path), durable=durable)
    if scheme in POSTGRES_SCHEMES:
        return PostgresStateStore(database_url, durable=durable)
    raise ValueError(
        f"unsupported database URL scheme {scheme or '(none)'!r}: use sqlite:///path "
        "or postgresql://user@host:port/database"
    )
