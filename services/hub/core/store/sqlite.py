"""SQLite state store (single instance): one file, WAL, one transaction per call."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite

from hub.core.store.base import JsonObject, KafkaRecord, ParkedRecord

if TYPE_CHECKING:
    from hub.core.store.base import Headers

SCHEMA = """
CREATE TABLE IF NOT EXISTS hub_inbox (grp TEXT, event_id TEXT, processed_at TEXT,
    PRIMARY KEY (grp, event_id));
CREATE TABLE IF NOT EXISTS hub_state (grp TEXT, key TEXT, document TEXT, updated_at TEXT,
    PRIMARY KEY (grp, key));
CREATE TABLE IF NOT EXISTS hub_park (grp TEXT, key TEXT, head_event_id TEXT, parked_at TEXT,
    PRIMARY KEY (grp, key));
CREATE TABLE IF NOT EXISTS hub_parked (grp TEXT, key TEXT, seq INTEGER, topic TEXT,
    part INTEGER, off INTEGER, timestamp_ms INTEGER, rkey BLOB, value BLOB, headers TEXT,
    PRIMARY KEY (grp, key, seq));
"""


def _encode_headers(headers: Headers) -> str:
    return json.dumps([[name, value.hex()] for name, value in headers])


def _decode_headers(text: str) -> Headers:
    return tuple((name, bytes.fromhex(value)) for name, value in json.loads(text))


class SqliteStateStore:
    """The StateStore on one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._db: aiosqlite.Connection | None = None

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("the state store is not open")
        return self._db

    async def open(self) -> None:
        """Open the file (creating it and the schema when missing)."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.executescript(SCHEMA)

    async def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def is_processed(self, group: str, event_id: str) -> bool:
        """Whether `event_id` is in the inbox of `group`."""
        async with self.db.execute(
            "SELECT 1 FROM hub_inbox WHERE grp = ? AND event_id = ?", (group, event_id)
        ) as cursor:
            return await cursor.fetchone() is not None

    async def load_state(self, group: str, key: str) -> JsonObject | None:
        """The state document of `key`, or None."""
        async with self.db.execute(
            "SELECT document FROM hub_state WHERE grp = ? AND key = ?", (group, key)
        ) as cursor:
            row = await cursor.fetchone()
        return json.loads(row[0]) if row else None

    async def record_processed(
        self,
        group: str,
        event_id: str,
        *,
        key: str | None = None,
        state: JsonObject | None = None,
    ) -> bool:
        """Inbox row and state upsert in one transaction; False if already there."""
        now = datetime.now(UTC).isoformat()
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            cursor = await self.db.execute(
                "INSERT OR IGNORE INTO hub_inbox VALUES (?, ?, ?)", (group, event_id, now)
            )
            inserted = cursor.rowcount == 1
            if inserted and key is not None and state is not None:
                await self.db.execute(
                    "INSERT INTO hub_state VALUES (?, ?, ?, ?) ON CONFLICT (grp, key) "
                    "DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
                    (group, key, json.dumps(state, ensure_ascii=False), now),
                )
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        await self.db.execute("COMMIT")
        return inserted

    async def purge_inbox(self, group: str, older_than: datetime) -> int:
        """Delete inbox rows older than `older_than`; returns how many."""
        cursor = await self.db.execute(
            "DELETE FROM hub_inbox WHERE grp = ? AND processed_at < ?",
            (group, older_than.astimezone(UTC).isoformat()),
        )
        return cursor.rowcount

    async def inbox_size(self, group: str) -> int:
        """How many processed ids `group` holds."""
        async with self.db.execute(
            "SELECT count(*) FROM hub_inbox WHERE grp = ?", (group,)
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def park(self, group: str, key: str, head_event_id: str) -> None:
        """Park `key` behind `head_event_id` (or move its head)."""
        await self.db.execute(
            "INSERT INTO hub_park VALUES (?, ?, ?, ?) ON CONFLICT (grp, key) "
            "DO UPDATE SET head_event_id = excluded.head_event_id",
            (group, key, head_event_id, datetime.now(UTC).isoformat()),
        )

    async def park_head(self, group: str, key: str) -> str | None:
        """The event id `key` is parked behind, or None."""
        async with self.db.execute(
            "SELECT head_event_id FROM hub_park WHERE grp = ? AND key = ?", (group, key)
        ) as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else None

    async def append_parked(self, group: str, key: str, record: KafkaRecord) -> bool:
        """Append a follower when `key` is parked; False otherwise."""
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            if await self.park_head(group, key) is None:
                await self.db.execute("ROLLBACK")
                return False
            await self.db.execute(
                "INSERT INTO hub_parked SELECT ?, ?, coalesce(max(seq), 0) + 1, "
                "?, ?, ?, ?, ?, ?, ? FROM hub_parked WHERE grp = ? AND key = ?",
                (
                    group,
                    key,
                    record.topic,
                    record.partition,
                    record.offset,
                    record.timestamp_ms,
                    record.key,
                    record.value,
                    _encode_headers(record.headers),
                    group,
                    key,
                ),
            )
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        await self.db.execute("COMMIT")
        return True

    async def next_parked(self, group: str, key: str) -> ParkedRecord | None:
        """The oldest follower; deletes the park when there is none."""
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            async with self.db.execute(
                "SELECT seq, topic, part, off, timestamp_ms, rkey, value, headers FROM hub_parked "
                "WHERE grp = ? AND key = ? ORDER BY seq LIMIT 1",
                (group, key),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                await self.db.execute(
                    "DELETE FROM hub_park WHERE grp = ? AND key = ?", (group, key)
                )
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        await self.db.execute("COMMIT")
        if row is None:
            return None
        seq, topic, partition, offset, timestamp_ms, record_key, value, headers = row
        return ParkedRecord(
            seq,
            KafkaRecord(
                topic, partition, offset, timestamp_ms, record_key, value, _decode_headers(headers)
            ),
        )

    async def remove_parked(self, group: str, key: str, seq: int) -> None:
        """Remove one follower."""
        await self.db.execute(
            "DELETE FROM hub_parked WHERE grp = ? AND key = ? AND seq = ?", (group, key, seq)
        )

    async def parked_keys(self, group: str) -> list[str]:
        """Every parked key of `group`."""
        async with self.db.execute("SELECT key FROM hub_park WHERE grp = ?", (group,)) as cursor:
            return [str(row[0]) for row in await cursor.fetchall()]
