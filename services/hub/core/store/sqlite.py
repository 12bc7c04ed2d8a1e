"""SQLite state store (single instance): one WAL file, one transaction per call.

Two connections: reads run on the event loop's thread, writes on a thread of their own. A read
is index lookups (a fraction of a millisecond) and a thread hop cost more than the read itself:
at 200 cases/s on two cores, a hop took 2 to 3 ms, and a poll's unit of work makes two reads.
A write ends in an fsync that under the broker's own disk load took 10 ms (p50) to 100 ms
(p99): on the loop's thread it would stall fetches and acknowledgements. Each call runs as one
function, so a call's statements never interleave with another task's; every call is a
suspension point; reads see every write whose call returned (WAL: each read is a new snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from hub.core.store.base import (
    BatchSnapshot,
    EventId,
    JsonObject,
    KafkaRecord,
    ParkedRecord,
    RecordsOneAsABatch,
    StaleBatchError,
    StoreUnavailableError,
    changed_keys,
    stale_states,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

    from hub.core.store.base import Headers

T = TypeVar("T")

PURGE_CHUNK_ROWS = 2000
"""Inbox rows one transaction of `purge_inbox` deletes: the write lock is held for milliseconds."""
_PURGE_CHUNK = """
DELETE FROM hub_inbox WHERE rowid IN (
    SELECT rowid FROM hub_inbox WHERE grp = ? AND processed_at < ? LIMIT ?
)
"""

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 4
# Version 1 is the layout before versioning (no user_version): followers numbered per key.
LEGACY_VERSION = 1

_PARKED_V2 = """
-- AUTOINCREMENT: a seq is never reused, so a late remove_parked cannot hit a newer follower.
CREATE TABLE hub_parked (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    grp TEXT NOT NULL,
    key TEXT NOT NULL,
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    off INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    rkey BLOB,
    value BLOB,
    headers TEXT NOT NULL
);
CREATE INDEX hub_parked_order ON hub_parked (grp, key, seq);
"""
# Times are ISO 8601 UTC with microseconds: fixed width, so text order is time order.
_INBOX_V3 = """
-- An event is (source, id), and the id comes first so that a lookup of one id, with its source
-- or the '' of a row written before schema 3, is one index range.
CREATE TABLE hub_inbox (
    grp TEXT NOT NULL,
    event_id TEXT NOT NULL,
    source TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (grp, event_id, source)
);
CREATE INDEX hub_inbox_age ON hub_inbox (grp, processed_at);
"""
_MIGRATE_INBOX_V2 = """
ALTER TABLE hub_inbox RENAME TO hub_inbox_v2;
DROP INDEX IF EXISTS hub_inbox_age;
"""
_COPY_INBOX_V2 = """
-- The source of an id recorded before schema 3 is unknown: '' matches any source.
INSERT INTO hub_inbox (grp, event_id, source, processed_at)
    SELECT grp, event_id, '', processed_at FROM hub_inbox_v2;
DROP TABLE hub_inbox_v2;
"""
_CREATE = """
CREATE TABLE hub_state (
    grp TEXT NOT NULL,
    key TEXT NOT NULL,
    document TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (grp, key)
);
CREATE TABLE hub_park (
    grp TEXT NOT NULL,
    key TEXT NOT NULL,
    head_event_id TEXT NOT NULL,
    parked_at TEXT NOT NULL,
    PRIMARY KEY (grp, key)
);
"""
_RENAME_LEGACY = """
ALTER TABLE hub_parked RENAME TO hub_parked_v1;
"""
_COPY_LEGACY = """
-- Per-key order is kept: new seqs are handed out in the old (grp, key, seq) order.
INSERT INTO hub_parked (grp, key, topic, part, off, timestamp_ms, rkey, value, headers)
    SELECT grp, key, topic, part, off, timestamp_ms, rkey, value, headers FROM hub_parked_v1
    ORDER BY grp, key, seq;
DROP TABLE hub_parked_v1;
"""
_STATE_VERSION = """
-- A state written before schema 4 counts as written once.
ALTER TABLE hub_state ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
"""
# Scripts that bring each older version to SCHEMA_VERSION, run in one transaction.
_MIGRATIONS = {
    0: (_INBOX_V3, _CREATE, _PARKED_V2, _STATE_VERSION),
    LEGACY_VERSION: (
        _RENAME_LEGACY, _PARKED_V2, _COPY_LEGACY, _MIGRATE_INBOX_V2, _INBOX_V3, _COPY_INBOX_V2,
        _STATE_VERSION,
    ),
    2: (_MIGRATE_INBOX_V2, _INBOX_V3, _COPY_INBOX_V2, _STATE_VERSION),
    3: (_STATE_VERSION,),
}  # fmt: skip
# Rows of one event id: its own source, or '' (recorded before the source was kept).
_INBOX_MATCH = "grp = ? AND event_id = ? AND source IN (?, '')"
# A batch's lookups as one statement each: the wanted values travel as one JSON array.
_INBOX_AMONG = """
SELECT DISTINCT wanted.source, wanted.event_id
FROM (
  SELECT json_extract(value, '$[0]') AS source, json_extract(value, '$[1]') AS event_id
  FROM json_each(?)
) AS wanted
JOIN hub_inbox AS inbox
  ON inbox.grp = ? AND inbox.event_id = wanted.event_id AND inbox.source IN (wanted.source, '')
"""
_STATES_OF_KEYS = (
    "SELECT key, document, version FROM hub_state"
    " WHERE grp = ? AND key IN (SELECT value FROM json_each(?))"
)
_PARK_HEADS_OF_KEYS = (
    "SELECT key, head_event_id FROM hub_park"
    " WHERE grp = ? AND key IN (SELECT value FROM json_each(?))"
)


def _statements(script: str) -> list[str]:
    # Our own scripts: no semicolon inside a literal or a comment.
    return [statement.strip() for statement in script.split(";") if statement.strip()]


def _now() -> str:
    return _timestamp(datetime.now(UTC))


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("the state store takes timezone-aware datetimes only")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _encode_document(document: JsonObject) -> str:
    # ASCII escapes make any str storable (even lone surrogates); NaN is not JSON.
    return json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _encode_headers(headers: Headers) -> str:
    # JSON keeps order and duplicate names; names are JSON strings (any str), values hex bytes.
    return json.dumps([[name, value.hex()] for name, value in headers])


def _decode_headers(text: str) -> Headers:
    return tuple((name, bytes.fromhex(value)) for name, value in json.loads(text))


def _parked(row: sqlite3.Row | tuple[Any, ...]) -> ParkedRecord:
    seq, topic, partition, offset, timestamp_ms, record_key, value, headers = row
    record = KafkaRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        key=record_key,
        value=value,
        headers=_decode_headers(headers),
    )
    return ParkedRecord(seq=seq, record=record)


class SqliteStateStore(RecordsOneAsABatch):
    """The StateStore on one SQLite file, for a single instance of a service."""

    def __init__(self, path: Path | str, *, durable: bool = True) -> None:
        self._path = Path(path)
        self._durable = durable
        self._db: sqlite3.Connection | None = None  # reads, on the loop's thread
        self._writer: sqlite3.Connection | None = None  # writes, on `_thread`
        self._thread: ThreadPoolExecutor | None = None

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    async def open(self) -> None:
        """Open the file, creating it and its schema when missing (idempotent)."""
        if self._writer is not None:
            return
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-sqlite")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            writer, journal, migrated_from = await asyncio.get_running_loop().run_in_executor(
                thread, _connect, self._path, self._durable
            )
            try:
                reader = _connect_reader(self._path)
            except BaseException:
                await asyncio.get_running_loop().run_in_executor(thread, writer.close)
                raise
        except (OSError, sqlite3.Error) as error:
            thread.shutdown(wait=False)
            raise StoreUnavailableError(f"SQLite file {self._path}: {error}") from error
        except BaseException:
            thread.shutdown(wait=False)
            raise
        self._db, self._writer, self._thread = reader, writer, thread
        if migrated_from is not None:
            log.info("state_store_schema_migrated", backend="sqlite",
                     from_version=migrated_from, to_version=SCHEMA_VERSION)  # fmt: skip
        log.info("state_store_opened", backend="sqlite", path=str(self._path), journal_mode=journal)

    async def close(self) -> None:
        """Close both connections (idempotent); writes already queued finish first."""
        if self._db is None or self._writer is None or self._thread is None:
            return
        reader, writer, thread = self._db, self._writer, self._thread
        self._db = self._writer = self._thread = None
        reader.close()
        await asyncio.get_running_loop().run_in_executor(thread, writer.close)
        thread.shutdown(wait=True)

    async def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run the read `work` on the loop's thread (one implicit transaction a statement)."""
        if self._db is None:
            raise RuntimeError("the state store is not open")
        result = work(self._db)
        # A suspension point, as a write is: a task that loops over store calls (a key's
        # release) lets the loop's other tasks run between them.
        await asyncio.sleep(0)
        return result

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` as one write transaction on the writer's thread, its lock taken up front."""
        if self._writer is None or self._thread is None:
            raise RuntimeError("the state store is not open")
        # A cancelled caller stops waiting; the call itself runs to its end (or its rollback).
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, _transaction, self._writer, work
        )

    # --- inbox and per-key state -------------------------------------------------------
    async def is_processed(self, group: str, event: EventId) -> bool:
        """Whether `event` was already recorded as processed by `group`."""
        return await self._call(lambda db: _is_processed(db, group, event))

    async def load_state(self, group: str, key: str) -> JsonObject | None:
        """The state document of `key` for `group`, or None when there is none."""
        row = await self._call(lambda db: db.execute(
            "SELECT document FROM hub_state WHERE grp = ? AND key = ?", (group, key)
        ).fetchone())  # fmt: skip
        if row is None:
            return None
        document: JsonObject = json.loads(row[0])
        return document

    async def load_batch(
        self, group: str, events: Collection[EventId], keys: Collection[str]
    ) -> BatchSnapshot:
        """Processed ids among `events`, and the states and park heads of `keys`, in one call."""

        def read(db: sqlite3.Connection) -> BatchSnapshot:
            wanted = json.dumps(list(keys))
            states: dict[str, JsonObject] = {}
            versions: dict[str, int] = {}
            for key, document, version in db.execute(_STATES_OF_KEYS, (group, wanted)):
                states[key] = json.loads(document)
                versions[key] = int(version)
            heads = {
                str(key): str(head)
                for key, head in db.execute(_PARK_HEADS_OF_KEYS, (group, wanted))
            }
            return BatchSnapshot(_processed_among(db, group, events), states, heads, versions)

        # One read transaction: the states and parks are of one moment.
        return await self._call(lambda db: _read_transaction(db, read))

    async def commit_batch(
        self,
        group: str,
        events: Sequence[EventId],
        states: Mapping[str, JsonObject],
        *,
        read_versions: Mapping[str, int] | None = None,
        publish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Check, await `publish`, then record `events` and upsert `states` in one transaction."""
        documents = [(key, _encode_document(state)) for key, state in states.items()]
        expected = read_versions or {}
        keys = sorted({*expected, *states})
        now = _now()

        def check(db: sqlite3.Connection) -> dict[str, int]:
            """The batch's state versions, once no state it read changed and no event is known."""
            current = _versions(db, group, keys)
            if changed := changed_keys(expected, current):
                raise stale_states(changed)
            known = _processed_among(db, group, events)
            seen: set[EventId] = set()
            for event in events:
                if event in seen or event in known:
                    raise StaleBatchError(f"{event.source} {event.id} is already processed")
                seen.add(event)
            return current

        def record(db: sqlite3.Connection) -> None:
            current = check(db)
            db.executemany(
                "INSERT INTO hub_inbox (grp, event_id, source, processed_at) VALUES (?, ?, ?, ?)",
                [(group, event.id, event.source, now) for event in events],
            )
            db.executemany(
                "INSERT INTO hub_state (grp, key, document, updated_at, version)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (grp, key) DO UPDATE"
                " SET document = excluded.document, updated_at = excluded.updated_at,"
                " version = excluded.version",
                [(group, key, document, now, current.get(key, 0) + 1)
                 for key, document in documents],
            )  # fmt: skip

        if publish is not None:
            # One process owns a SQLite file: checked again under the write lock, nothing can
            # have changed in between but this process's own writes.
            await self._call(lambda db: _read_transaction(db, check))
            await publish()
        await self._write(record)

    async def purge_inbox(self, group: str, older_than: datetime) -> int:
        """Delete inbox rows of `group` processed before `older_than`; returns how many."""
        cutoff = _timestamp(older_than)
        purged = 0
        while True:
            deleted: int = await self._write(lambda db: db.execute(
                _PURGE_CHUNK, (group, cutoff, PURGE_CHUNK_ROWS)
            ).rowcount)  # fmt: skip
            purged += deleted
            if deleted < PURGE_CHUNK_ROWS:
                return purged

    async def inbox_size(self, group: str) -> int:
        """How many processed ids `group` holds."""
        row = await self._call(lambda db: db.execute(
            "SELECT count(*) FROM hub_inbox WHERE grp = ?", (group,)
        ).fetchone())  # fmt: skip
        return int(row[0])

    # --- park by key -------------------------------------------------------------------
    async def park(self, group: str, key: str, head_event_id: str) -> None:
        """Mark `key` as parked behind `head_event_id` (creates the park or replaces its head)."""
        now = _now()
        await self._write(lambda db: db.execute(
            "INSERT INTO hub_park (grp, key, head_event_id, parked_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (grp, key) DO UPDATE SET head_event_id = excluded.head_event_id",
            (group, key, head_event_id, now),
        ))  # fmt: skip

    async def park_head(self, group: str, key: str) -> str | None:
        """The event id the park of `key` waits for, or None when `key` is not parked."""
        row = await self._call(lambda db: db.execute(
            "SELECT head_event_id FROM hub_park WHERE grp = ? AND key = ?", (group, key)
        ).fetchone())  # fmt: skip
        return str(row[0]) if row is not None else None

    async def append_parked(self, group: str, key: str, record: KafkaRecord) -> bool:
        """Append `record` behind the park of `key`; False (nothing stored) when not parked."""
        headers = _encode_headers(record.headers)
        # One statement: the follower is stored only while the park row exists.
        return await self._write(lambda db: db.execute(
            "INSERT INTO hub_parked (grp, key, topic, part, off, timestamp_ms, rkey, value,"
            " headers) SELECT grp, key, ?, ?, ?, ?, ?, ?, ? FROM hub_park"
            " WHERE grp = ? AND key = ?",
            (record.topic, record.partition, record.offset, record.timestamp_ms, record.key,
             record.value, headers, group, key),
        ).rowcount == 1)  # fmt: skip

    async def next_parked(self, group: str, key: str) -> ParkedRecord | None:
        """The oldest follower of `key`; when there is none, delete the park and return None."""

        def oldest(db: sqlite3.Connection) -> ParkedRecord | None:
            row = db.execute(
                "SELECT seq, topic, part, off, timestamp_ms, rkey, value, headers"
                " FROM hub_parked WHERE grp = ? AND key = ? ORDER BY seq LIMIT 1",
                (group, key),
            ).fetchone()
            if row is None:
                db.execute("DELETE FROM hub_park WHERE grp = ? AND key = ?", (group, key))
                return None
            return _parked(row)

        return await self._write(oldest)

    async def remove_parked(self, group: str, key: str, seq: int) -> None:
        """Remove one follower once it has been handled or handed on."""
        await self._write(lambda db: db.execute(
            "DELETE FROM hub_parked WHERE grp = ? AND key = ? AND seq = ?", (group, key, seq)
        ))  # fmt: skip

    async def parked_keys(self, group: str) -> list[str]:
        """Every key of `group` that is parked now (for operators and tests)."""
        rows = await self._call(lambda db: db.execute(
            "SELECT key FROM hub_park WHERE grp = ? ORDER BY key", (group,)
        ).fetchall())  # fmt: skip
        return [str(row[0]) for row in rows]


def _connect(path: Path, durable: bool) -> tuple[sqlite3.Connection, str, int | None]:
    """On the writer's thread: open, set the pragmas, migrate; (connection, journal, from)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # First: switching to WAL needs a lock another process may hold for a moment.
        db.execute("PRAGMA busy_timeout = 10000")
        journal = str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        # FULL syncs the WAL at each commit: a row whose call returned survives a power cut
        # too, so a Kafka offset committed after it never points past lost state. NORMAL
        # (not durable) survives a crash of the process, not of the machine.
        db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        migrated_from = _transaction(db, _migrate)
    except BaseException:
        db.close()
        raise
    return db, journal, migrated_from


def _connect_reader(path: Path) -> sqlite3.Connection:
    """The reading connection (after `_connect`: the file is in WAL mode and migrated)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("PRAGMA query_only = ON")  # every write goes through the writer's thread
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection) -> int | None:
    """Bring the schema to SCHEMA_VERSION; the version it came from, or None when current."""
    version = _schema_version(db)
    if version >= SCHEMA_VERSION:
        return None
    # executescript would commit first; statement by statement keeps one transaction.
    for script in _MIGRATIONS[version]:
        for statement in _statements(script):
            db.execute(statement)
    # PRAGMA takes no bound parameters; the value is our own integer constant.
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
    return version


def _schema_version(db: sqlite3.Connection) -> int:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if (
        version == 0
        and db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'hub_parked'"
        ).fetchone()
    ):
        return LEGACY_VERSION
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"the state store has schema {version}; this hub knows only up to "
            f"{SCHEMA_VERSION}: upgrade the hub"
        )
    return version


def _versions(db: sqlite3.Connection, group: str, keys: Sequence[str]) -> dict[str, int]:
    """The stored version of each of `keys` that has a state."""
    rows = db.execute(
        "SELECT key, version FROM hub_state"
        " WHERE grp = ? AND key IN (SELECT value FROM json_each(?))",
        (group, json.dumps(list(keys))),
    )
    return {str(key): int(version) for key, version in rows}


def _is_processed(db: sqlite3.Connection, group: str, event: EventId) -> bool:
    query = f"SELECT 1 FROM hub_inbox WHERE {_INBOX_MATCH}"  # noqa: S608 - a constant of ours
    return db.execute(query, (group, event.id, event.source)).fetchone() is not None


def _processed_among(
    db: sqlite3.Connection, group: str, events: Collection[EventId]
) -> frozenset[EventId]:
    """Those of `events` recorded as processed by `group`: one query for a whole batch."""
    if not events:
        return frozenset()
    wanted = json.dumps([[event.source, event.id] for event in events])
    return frozenset(
        EventId(source, event_id) for source, event_id in db.execute(_INBOX_AMONG, (wanted, group))
    )


def _read_transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work` in one deferred (read) transaction."""
    db.execute("BEGIN")
    try:
        return work(db)
    finally:
        db.execute("COMMIT")


def _transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work` between BEGIN IMMEDIATE and COMMIT; rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
    except BaseException:
        with contextlib.suppress(sqlite3.OperationalError):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result
