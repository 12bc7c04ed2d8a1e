"""Reading the tracker's records: the latest snapshot of every case on `aftersales.case-status`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from aiokafka import AIOKafkaConsumer

from hub.core.connection import kafka_security
from hub.core.envelope import Envelope
from hub.core.errors import PermanentError
from hub.core.topics import CASE_STATUS
from hub.messages import CATALOGUE
from hub.messages.tracker import CaseStatusV1

if TYPE_CHECKING:
    from hub.core.settings import HubSettings

log = structlog.get_logger(__name__)


async def read_snapshots(
    settings: HubSettings, *, timeout_s: float = 30.0
) -> dict[str, CaseStatusV1]:
    """Every case's latest snapshot: the compacted topic read from its start to its end now."""
    consumer = AIOKafkaConsumer(
        CASE_STATUS,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="hub-snapshots",
        **kafka_security(settings),
    )
    await consumer.start()
    latest: dict[str, CaseStatusV1] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        # Without a group, every partition is assigned once the topic's metadata is known.
        while not consumer.assignment() and loop.time() < deadline:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.05)
        partitions = sorted(consumer.assignment())
        if not partitions:
            return latest
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        while pending and loop.time() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=500)
            for records in batches.values():
                for record in records:
                    snapshot = _decode(record.headers, record.value)
                    known = latest.get(snapshot.case_id) if snapshot else None
                    if snapshot is not None and (known is None or snapshot.seq >= known.seq):
                        latest[snapshot.case_id] = snapshot
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return latest


def _decode(headers: object, value: bytes | None) -> CaseStatusV1 | None:
    try:
        envelope = Envelope.from_headers(headers)  # type: ignore[arg-type]
        event = CATALOGUE.decode(envelope.type, value or b"")
    except PermanentError as error:
        log.warning("snapshot_unreadable", error=str(error))
        return None
    return event if isinstance(event, CaseStatusV1) else None
