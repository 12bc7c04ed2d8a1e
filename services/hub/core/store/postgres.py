"""PostgreSQL state store, for several instances of a group sharing one database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg

from hub.core.store.base import JsonObject, KafkaRecord, ParkedRecord

if TYPE_CHECKING:
    from hub.core.store.base import Headers

SCHEMA = """
CREATE TABLE IF NOT EXISTS hub_inbox (grp text, event_id text, processed_at timestamptz NOT NULL,
    PRIMARY KEY (grp, event_id));
CREATE INDEX IF NOT EXISTS hub_inbox_age ON hub_inbox (grp, processed_at);
CREATE TABLE IF NOT EXISTS hub_state (grp text, key text, document jsonb NOT NULL,
    updated_at timestamptz NOT NULL, PRIMARY KEY (grp, key));
CREATE TABLE IF NOT EXISTS hub_park (grp text, key text, head_event_id text NOT NULL,
    parked_at timestamptz NOT NULL, PRIMARY KEY (grp, key));
CREATE TABLE IF NOT EXISTS hub_parked (grp text, key text, seq bigint, topic text NOT NULL,
    part integer NOT NULL, off bigint NOT NULL, timestamp_ms bigint NOT NULL, rkey bytea,
    value bytea, header_names text[] NOT NULL, header_values bytea[] NOT NULL,
    PRIMARY KEY (grp, key, seq));
"""
# Two processes creating the schema at once would race on the catalogue; one lock serialises.
SCHEMA_LOCK = 0x6875625F736368  # "hub_sch"


class PostgresStateStore:
    """The StateStore on PostgreSQL through an asyncpg pool."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The open pool."""
        if self._pool is None:
            raise RuntimeError("the state store is not open")
        return self._pool

    async def open(self) -> None:
        """Connect and create the schema when missing."""
        self._pool = await asyncpg.create_pool(self._url, min_size=1, max_size=4)
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
            await connection.execute(SCHEMA)

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def is_processed(self, group: str, event_id: str) -> bool:
        """Whether `event_id` is in the inbox of `group`."""
        found = await self.pool.fetchval(
            "SELECT 1 FROM hub_inbox WHERE grp = $1 AND event_id = $2", group, event_id
        )
        return found is not None

    async def load_state(self, group: str, key: str) -> JsonObject | None:
        """The state document of `key`, or None."""
        document = await self.pool.fetchval(
            "SELECT document FROM hub_state WHERE grp = $1 AND key = $2", group, key
        )
        return json.loads(document) if document is not None else None

    async def record_processed(
        self,
        group: str,
        event_id: str,
        *,
        key: str | None = None,
        state: JsonObject | None = None,
    ) -> bool:
        """Inbox row and state upsert in one transaction; False if already there."""
        now = datetime.now(UTC)
        async with self.pool.acquire() as connection, connection.transaction():
            inserted = await connection.fetchval(
                "INSERT INTO hub_inbox VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                group,
                event_id,
                now,
            )
            if inserted is None:
                return False
            if key is not None and state is not None:
                await connection.execute(
                    "INSERT INTO hub_state VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (grp, key) "
                    "DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
                    group,
                    key,
                    json.dumps(state, ensure_ascii=False),
                    now,
                )
        return True

    async def purge_inbox(self, group: str, older_than: datetime) -> int:
        """Delete inbox rows older than `older_than`; returns how many."""
        status: str = await self.pool.execute(
            "DELETE FROM hub_inbox WHERE grp = $1 AND processed_at < $2", group, older_than
        )
        return int(status.rsplit(" ", 1)[-1])

    async def inbox_size(self, group: str) -> int:
        """How many processed ids `group` holds."""
        count = await self.pool.fetchval("SELECT count(*) FROM hub_inbox WHERE grp = $1", group)
        return int(count)

    async def park(self, group: str, key: str, head_event_id: str) -> None:
        """Park `key` behind `head_event_id` (or move its head)."""
        await self.pool.execute(
            "INSERT INTO hub_park VALUES ($1, $2, $3, $4) ON CONFLICT (grp, key) "
            "DO UPDATE SET head_event_id = excluded.head_event_id",
            group,
            key,
            head_event_id,
            datetime.now(UTC),
        )

    async def park_head(self, group: str, key: str) -> str | None:
        """The event id `key` is parked behind, or None."""
        head = await self.pool.fetchval(
            "SELECT head_event_id FROM hub_park WHERE grp = $1 AND key = $2", group, key
        )
        return str(head) if head is not None else None

    async def append_parked(self, group: str, key: str, record: KafkaRecord) -> bool:
        """Append a follower when `key` is parked; False otherwise."""
        async with self.pool.acquire() as connection, connection.transaction():
            # The park row lock orders this append against a release that empties the park.
            parked = await connection.fetchval(
                "SELECT 1 FROM hub_park WHERE grp = $1 AND key = $2 FOR UPDATE", group, key
            )
            if parked is None:
                return False
            await connection.execute(
                "INSERT INTO hub_parked SELECT $1, $2, coalesce(max(seq), 0) + 1, $3, $4, $5, $6, "
                "$7, $8, $9, $10 FROM hub_parked WHERE grp = $1 AND key = $2",
                group,
                key,
                record.topic,
                record.partition,
                record.offset,
                record.timestamp_ms,
                record.key,
                record.value,
                [name for name, _ in record.headers],
                [value for _, value in record.headers],
            )
        return True

    async def next_parked(self, group: str, key: str) -> ParkedRecord | None:
        """The oldest follower; deletes the park when there is none."""
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "SELECT 1 FROM hub_park WHERE grp = $1 AND key = $2 FOR UPDATE", group, key
            )
            row = await connection.fetchrow(
                "SELECT seq, topic, part, off, timestamp_ms, rkey, value, header_names, "
                "header_values FROM hub_parked WHERE grp = $1 AND key = $2 ORDER BY seq LIMIT 1",
                group,
                key,
            )
            if row is None:
                await connection.execute(
                    "DELETE FROM hub_park WHERE grp = $1 AND key = $2", group, key
                )
                return None
        headers: Headers = tuple(zip(row["header_names"], row["header_values"], strict=True))
        record = KafkaRecord(
            row["topic"],
            row["part"],
            row["off"],
            row["timestamp_ms"],
            row["rkey"],
            row["value"],
            headers,
        )
        return ParkedRecord(row["seq"], record)

    async def remove_parked(self, group: str, key: str, seq: int) -> None:
        """Remove one follower."""
        await self.pool.execute(
            "DELETE FROM hub_parked WHERE grp = $1 AND key = $2 AND seq = $3", group, key, seq
        )

    async def parked_keys(self, group: str) -> list[str]:
        """Every parked key of `group`."""
        rows = await self.pool.fetch("SELECT key FROM hub_park WHERE grp = $1", group)
        return [str(row["key"]) for row in rows]
