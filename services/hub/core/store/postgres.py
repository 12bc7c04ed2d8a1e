"""PostgreSQL state store, for several instances of a group sharing one database."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg
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
    from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence

    from asyncpg.pool import PoolConnectionProxy

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 4
# Version 1 is the layout before versioning (no hub_schema_version table): followers numbered
# per key, header names as text (which cannot hold NUL) and the state as jsonb (same).
LEGACY_VERSION = 1
# Two processes creating or upgrading the schema at once would race on the catalogue.
SCHEMA_LOCK = 0x6875625F736368  # "hub_sch"
COMMAND_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0

_PARKED_V2 = """
-- An identity seq is never reused, so a late remove_parked cannot hit a newer follower;
-- appends of one key are serialised by the park row lock, so seq order is append order.
CREATE TABLE hub_parked (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grp text NOT NULL,
    key text NOT NULL,
    topic text NOT NULL,
    part integer NOT NULL,
    off bigint NOT NULL,
    timestamp_ms bigint NOT NULL,
    rkey bytea,
    value bytea,
    -- Parallel arrays keep order and duplicate names; names are UTF-8 bytes (NUL allowed).
    header_names bytea[] NOT NULL,
    header_values bytea[] NOT NULL
);
CREATE INDEX hub_parked_order ON hub_parked (grp, key, seq);
"""
_CREATE = """
-- An event is (source, id), and the id comes first so that a lookup of one id, with its source
-- or the '' of a row written before schema 3, is one index range.
CREATE TABLE hub_inbox (
    grp text NOT NULL,
    event_id text NOT NULL,
    source text NOT NULL,
    processed_at timestamptz NOT NULL,
    PRIMARY KEY (grp, event_id, source)
);
CREATE INDEX hub_inbox_age ON hub_inbox (grp, processed_at);
CREATE TABLE hub_state (
    grp text NOT NULL,
    key text NOT NULL,
    -- json, not jsonb: it keeps the text as written, including the NUL escapes jsonb refuses.
    document json NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (grp, key)
);
CREATE TABLE hub_park (
    grp text NOT NULL,
    key text NOT NULL,
    head_event_id text NOT NULL,
    parked_at timestamptz NOT NULL,
    PRIMARY KEY (grp, key)
);
"""
_RENAME_LEGACY = """
CREATE INDEX IF NOT EXISTS hub_inbox_age ON hub_inbox (grp, processed_at);
ALTER TABLE hub_state ALTER COLUMN document TYPE json USING document::json;
ALTER TABLE hub_parked RENAME TO hub_parked_v1;
ALTER TABLE hub_parked_v1 DROP CONSTRAINT hub_parked_pkey;
"""
_COPY_LEGACY = """
-- Per-key order is kept: new seqs are handed out in the old (grp, key, seq) order.
INSERT INTO hub_parked (grp, key, topic, part, off, timestamp_ms, rkey, value,
        header_names, header_values)
    SELECT grp, key, topic, part, off, timestamp_ms, rkey, value,
        ARRAY(SELECT convert_to(header.name, 'UTF8')
            FROM unnest(header_names) WITH ORDINALITY AS header (name, position)
            ORDER BY header.position),
        header_values
    FROM hub_parked_v1 ORDER BY grp, key, seq;
DROP TABLE hub_parked_v1;
"""
_INBOX_SOURCE = """
-- The source of an id recorded before schema 3 is unknown: '' matches any source.
ALTER TABLE hub_inbox ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE hub_inbox ALTER COLUMN source DROP DEFAULT;
ALTER TABLE hub_inbox DROP CONSTRAINT hub_inbox_pkey;
ALTER TABLE hub_inbox ADD PRIMARY KEY (grp, event_id, source);
"""
_STATE_VERSION = """
-- A state written before schema 4 counts as written once.
ALTER TABLE hub_state ADD COLUMN version bigint NOT NULL DEFAULT 1;
"""
# Scripts that bring each older version to SCHEMA_VERSION, run in one transaction.
_MIGRATIONS = {
    0: (_CREATE, _PARKED_V2, _STATE_VERSION),
    LEGACY_VERSION: (_RENAME_LEGACY, _PARKED_V2, _COPY_LEGACY, _INBOX_SOURCE, _STATE_VERSION),
    2: (_INBOX_SOURCE, _STATE_VERSION),
    3: (_STATE_VERSION,),
}
# Which of the events in the arrays $2 (ids) and $3 (sources) group $1 has processed.
_PROCESSED_AMONG = """
SELECT DISTINCT e.id, e.source FROM unnest($2::text[], $3::text[]) AS e (id, source)
    JOIN hub_inbox i ON i.grp = $1 AND i.event_id = e.id AND i.source IN (e.source, '')
"""
# Rows locked in key order, so that two batches sharing keys cannot deadlock.
_LOCK_STATES = """
SELECT key, version FROM hub_state WHERE grp = $1 AND key = ANY($2::text[]) ORDER BY key FOR UPDATE
"""
# Each state with its next version ($5), written only over the version before it: a row
# another writer inserted after the lock (none to lock then) is not overwritten.
_WRITE_STATES = """
WITH written AS (
    INSERT INTO hub_state (grp, key, document, updated_at, version)
        SELECT $1, s.key, s.document::json, $4, s.version
        FROM unnest($2::text[], $3::text[], $5::bigint[]) AS s (key, document, version)
    ON CONFLICT (grp, key) DO UPDATE SET document = excluded.document,
        updated_at = excluded.updated_at, version = excluded.version
        WHERE hub_state.version = excluded.version - 1
    RETURNING 1)
SELECT count(*) FROM written
"""


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("the state store takes timezone-aware datetimes only")
    return moment


def _encode_document(document: JsonObject) -> str:
    # ASCII escapes make any str storable (even lone surrogates); NaN is not JSON.
    return json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _header_name(name: str) -> bytes:
    # bytea, not text: a name may hold NUL, and surrogatepass round-trips any str.
    return name.encode("utf-8", "surrogatepass")


def _parked(row: asyncpg.Record) -> ParkedRecord:
    headers = tuple(
        (bytes(name).decode("utf-8", "surrogatepass"), bytes(value))
        for name, value in zip(row["header_names"], row["header_values"], strict=True)
    )
    record = KafkaRecord(
        topic=row["topic"],
        partition=row["part"],
        offset=row["off"],
        timestamp_ms=row["timestamp_ms"],
        key=row["rkey"],
        value=row["value"],
        headers=headers,
    )
    return ParkedRecord(seq=row["seq"], record=record)


def _where(url: str) -> str:
    """Host, port and database of `url`, never its password (for logs)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


class PostgresStateStore(RecordsOneAsABatch):
    """The StateStore on PostgreSQL through an asyncpg pool; safe for several processes."""

    def __init__(self, url: str, *, durable: bool = True) -> None:
        self._url = url
        self._durable = durable
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The open pool."""
        if self._pool is None:
            raise RuntimeError("the state store is not open")
        return self._pool

    async def open(self) -> None:
        """Connect and create or upgrade the schema when needed (idempotent)."""
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=4,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                # Not durable: a commit returns before its WAL reaches the disk (a crash of the
                # server may lose the last ones; they are never half applied).
                server_settings={} if self._durable else {"synchronous_commit": "off"},
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            raise StoreUnavailableError(
                f"PostgreSQL at {_where(self._url)}: {type(error).__name__}: {error}"
            ) from error
        try:
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                await _migrate(connection)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool
        log.info("state_store_opened", backend="postgres", database=_where(self._url))

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        async with self.pool.acquire() as connection, connection.transaction():
            yield connection

    # --- inbox and per-key state -------------------------------------------------------
    async def is_processed(self, group: str, event: EventId) -> bool:
        """Whether `event` was already recorded as processed by `group`."""
        found = await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM hub_inbox"
            " WHERE grp = $1 AND event_id = $2 AND source IN ($3, ''))",
            group,
            event.id,
            event.source,
        )
        return bool(found)

    async def load_state(self, group: str, key: str) -> JsonObject | None:
        """The state document of `key` for `group`, or None when there is none."""
        text = await self.pool.fetchval(
            "SELECT document FROM hub_state WHERE grp = $1 AND key = $2", group, key
        )
        if text is None:
            return None
        document: JsonObject = json.loads(text)
        return document

    async def load_batch(
        self, group: str, events: Collection[EventId], keys: Collection[str]
    ) -> BatchSnapshot:
        """Processed ids among `events`, and the states and park heads of `keys`, in one call."""
        ids, sources = [event.id for event in events], [event.source for event in events]
        key_list = list(keys)
        async with self._transaction() as connection:
            processed = await connection.fetch(_PROCESSED_AMONG, group, ids, sources)
            states = await connection.fetch(
                "SELECT key, document, version FROM hub_state"
                " WHERE grp = $1 AND key = ANY($2::text[])",
                group,
                key_list,
            )
            heads = await connection.fetch(
                "SELECT key, head_event_id FROM hub_park WHERE grp = $1 AND key = ANY($2::text[])",
                group,
                key_list,
            )
        return BatchSnapshot(
            processed=frozenset(EventId(row["source"], row["id"]) for row in processed),
            states={row["key"]: json.loads(row["document"]) for row in states},
            park_heads={row["key"]: str(row["head_event_id"]) for row in heads},
            versions={row["key"]: int(row["version"]) for row in states},
        )

    async def commit_batch(
        self,
        group: str,
        events: Sequence[EventId],
        states: Mapping[str, JsonObject],
        *,
        read_versions: Mapping[str, int] | None = None,
        publish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Check, await `publish`, record `events` and upsert `states` in one transaction."""
        documents = [(key, _encode_document(state)) for key, state in states.items()]
        ids, sources = [event.id for event in events], [event.source for event in events]
        read_versions = read_versions or {}
        now = datetime.now(UTC)
        async with self._transaction() as connection:
            # Held until the commit: another instance's batch on these keys waits, then
            # finds the versions it read gone and decides again (a rebalance's overlap).
            locked = await connection.fetch(_LOCK_STATES, group, sorted({*read_versions, *states}))
            current = {row["key"]: int(row["version"]) for row in locked}
            if changed := changed_keys(read_versions, current):
                raise stale_states(changed)
            if known := await connection.fetch(_PROCESSED_AMONG, group, ids, sources):
                raise StaleBatchError(f"{len(known)} event(s) already processed")
            if publish is not None:
                await publish()
            # A concurrent insert of the same id waits for the other commit, then does nothing.
            inserted = await connection.fetchval(
                "WITH added AS (INSERT INTO hub_inbox (grp, event_id, source, processed_at)"
                " SELECT $1, e.id, e.source, $4 FROM unnest($2::text[], $3::text[])"
                " AS e (id, source) ON CONFLICT DO NOTHING RETURNING 1)"
                " SELECT count(*) FROM added",
                group,
                ids,
                sources,
                now,
            )
            if inserted != len(set(events)):
                # Raised inside the transaction: it rolls back, nothing of the batch stays.
                raise StaleBatchError(f"{len(events) - inserted} event(s) already processed")
            if documents:
                keys = [key for key, _ in documents]
                written = await connection.fetchval(
                    _WRITE_STATES,
                    group,
                    keys,
                    [document for _, document in documents],
                    now,
                    [current.get(key, 0) + 1 for key in keys],
                )
                if written != len(documents):
                    raise StaleBatchError("a new state was written by another instance meanwhile")

    async def purge_inbox(self, group: str, older_than: datetime) -> int:
        """Delete inbox rows of `group` processed before `older_than`; returns how many."""
        deleted = await self.pool.fetchval(
            "WITH gone AS (DELETE FROM hub_inbox WHERE grp = $1 AND processed_at < $2"
            " RETURNING 1) SELECT count(*) FROM gone",
            group,
            _aware(older_than),
        )
        return int(deleted)

    async def inbox_size(self, group: str) -> int:
        """How many processed ids `group` holds."""
        count = await self.pool.fetchval("SELECT count(*) FROM hub_inbox WHERE grp = $1", group)
        return int(count)

    # --- park by key -------------------------------------------------------------------
    async def park(self, group: str, key: str, head_event_id: str) -> None:
        """Mark `key` as parked behind `head_event_id` (creates the park or replaces its head)."""
        await self.pool.execute(
            "INSERT INTO hub_park (grp, key, head_event_id, parked_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (grp, key) DO UPDATE SET head_event_id = excluded.head_event_id",
            group,
            key,
            head_event_id,
            datetime.now(UTC),
        )

    async def park_head(self, group: str, key: str) -> str | None:
        """The event id the park of `key` waits for, or None when `key` is not parked."""
        head = await self.pool.fetchval(
            "SELECT head_event_id FROM hub_park WHERE grp = $1 AND key = $2", group, key
        )
        return str(head) if head is not None else None

    async def append_parked(self, group: str, key: str, record: KafkaRecord) -> bool:
        """Append `record` behind the park of `key`; False (nothing stored) when not parked."""
        async with self._transaction() as connection:
            # The park row lock orders this append against a release that empties the park:
            # a release that deleted it first makes this find no row.
            parked = await connection.fetchval(
                "SELECT true FROM hub_park WHERE grp = $1 AND key = $2 FOR UPDATE", group, key
            )
            if parked is None:
                return False
            await connection.execute(
                "INSERT INTO hub_parked (grp, key, topic, part, off, timestamp_ms, rkey, value,"
                " header_names, header_values) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                group,
                key,
                record.topic,
                record.partition,
                record.offset,
                record.timestamp_ms,
                record.key,
                record.value,
                [_header_name(name) for name, _ in record.headers],
                [value for _, value in record.headers],
            )
        return True

    async def next_parked(self, group: str, key: str) -> ParkedRecord | None:
        """The oldest follower of `key`; when there is none, delete the park and return None."""
        async with self._transaction() as connection:
            # Waits for appends in flight; the next statement's snapshot then sees them.
            await connection.execute(
                "SELECT FROM hub_park WHERE grp = $1 AND key = $2 FOR UPDATE", group, key
            )
            row = await connection.fetchrow(
                "SELECT seq, topic, part, off, timestamp_ms, rkey, value, header_names,"
                " header_values FROM hub_parked WHERE grp = $1 AND key = $2"
                " ORDER BY seq LIMIT 1",
                group,
                key,
            )
            if row is None:
                await connection.execute(
                    "DELETE FROM hub_park WHERE grp = $1 AND key = $2", group, key
                )
                return None
        return _parked(row)

    async def remove_parked(self, group: str, key: str, seq: int) -> None:
        """Remove one follower once it has been handled or handed on."""
        await self.pool.execute(
            "DELETE FROM hub_parked WHERE grp = $1 AND key = $2 AND seq = $3", group, key, seq
        )

    async def parked_keys(self, group: str) -> list[str]:
        """Every key of `group` that is parked now (for operators and tests)."""
        rows = await self.pool.fetch("SELECT key FROM hub_park WHERE grp = $1 ORDER BY key", group)
        return [str(row["key"]) for row in rows]


async def _migrate(connection: PoolConnectionProxy[asyncpg.Record]) -> None:
    """Bring the schema to SCHEMA_VERSION; the caller holds the schema lock."""
    version = await _schema_version(connection)
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database has state-store schema {version}; this hub knows only up to "
            f"{SCHEMA_VERSION}: upgrade the hub"
        )
    if version == SCHEMA_VERSION:
        return
    for script in _MIGRATIONS[version]:
        # Without arguments, execute() sends a script as one simple query: many statements.
        await connection.execute(script)
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS hub_schema_version (version integer NOT NULL)"
    )
    await connection.execute("DELETE FROM hub_schema_version")
    await connection.execute("INSERT INTO hub_schema_version (version) VALUES ($1)", SCHEMA_VERSION)
    log.info(
        "state_store_schema_migrated",
        backend="postgres",
        from_version=version,
        to_version=SCHEMA_VERSION,
    )


async def _schema_version(connection: PoolConnectionProxy[asyncpg.Record]) -> int:
    if await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", "hub_schema_version"):
        return int(await connection.fetchval("SELECT max(version) FROM hub_schema_version"))
    if await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", "hub_parked"):
        return LEGACY_VERSION
    return 0


@contextlib.asynccontextmanager
async def scratch_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A new, empty database on the server of `server_url`, dropped on exit; yields its URL."""
    url = await create_database(server_url, prefix)
    try:
        yield url
    finally:
        await drop_database(url)


async def create_database(server_url: str, prefix: str) -> str:
    """Create `<prefix>_<random>` on the server of `server_url`; returns the new database's URL."""
    database = f"{prefix}_{uuid.uuid4().hex[:12]}"
    # An identifier cannot be a bound parameter; this one is a prefix of ours and a hex token.
    await _admin(server_url, f"CREATE DATABASE {database}")
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{database}"))


async def drop_database(url: str) -> None:
    """Drop the database `url` names (its sessions are ended first)."""
    database = urlsplit(url).path.strip("/")
    await _admin(url, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


async def _admin(server_url: str, statement: str) -> None:
    # Connected to the server's maintenance database: a database cannot drop itself.
    connection = await asyncpg.connect(urlunsplit(urlsplit(server_url)._replace(path="/postgres")))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
