"""Reading the tracker's records: the latest snapshot of every case, of every courier's card."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from aiokafka import AIOKafkaConsumer

from hub.core.connection import kafka_security
from hub.core.envelope import Envelope
from hub.core.errors import PermanentError
from hub.core.topics import CASE_STATUS, COURIER_SCORES
from hub.messages import CATALOGUE
from hub.messages.scores import CourierScoredV1
from hub.messages.tracker import CaseStatusV1

if TYPE_CHECKING:
    from hub.core.registry import Event
    from hub.core.settings import HubSettings

log = structlog.get_logger(__name__)


async def read_snapshots(
    settings: HubSettings, *, timeout_s: float = 30.0
) -> dict[str, CaseStatusV1]:
    """Every case's latest snapshot: the compacted topic read from its start to its end now."""
    latest: dict[str, CaseStatusV1] = {}
    for snapshot in await read_compacted(settings, CASE_STATUS, timeout_s=timeout_s):
        known = latest.get(snapshot.case_id) if isinstance(snapshot, CaseStatusV1) else None
        if isinstance(snapshot, CaseStatusV1) and (known is None or snapshot.seq >= known.seq):
            latest[snapshot.case_id] = snapshot
    return latest


async def read_scorecards(
    settings: HubSettings, *, timeout_s: float = 30.0
) -> dict[str, CourierScoredV1]:
    """Every courier's latest scorecard, from the compacted `aftersales.courier-scores`."""
    # A hub deployed before courier scores has no such topic: no cards, not an error.
    cards = await read_compacted(settings, COURIER_SCORES, timeout_s=timeout_s, missing_ok=True)
    latest = {card.courier: card for card in cards if isinstance(card, CourierScoredV1)}
    return dict(sorted(latest.items()))


async def read_compacted(
    settings: HubSettings, topic: str, *, timeout_s: float = 30.0, missing_ok: bool = False
) -> list[Event]:
    """The readable events of a compacted topic from its start to its end now, in order.

    `missing_ok`: a topic that does not exist reads as empty.
    """
    if missing_ok and not await _exists(settings, topic):
        return []
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="hub-snapshots",
        **kafka_security(settings),
    )
    await consumer.start()
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        # Without a group, every partition is assigned once the topic's metadata is known.
        while not consumer.assignment() and loop.time() < deadline:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.05)
        partitions = sorted(consumer.assignment())
        if not partitions:
            return events
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        while pending and loop.time() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=500)
            for records in batches.values():
                for record in records:
                    event = _decode(record.headers, record.value)
                    if event is not None:
                        events.append(event)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return events


async def _exists(settings: HubSettings, topic: str) -> bool:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="hub-snapshots",
        **kafka_security(settings),
    )
    await consumer.start()
    try:
        return topic in await consumer.topics()
    finally:
        await consumer.stop()


def _decode(headers: object, value: bytes | None) -> Event | None:
    try:
        envelope = Envelope.from_headers(headers)  # type: ignore[arg-type]
        return CATALOGUE.decode(envelope.type, value or b"")
    except PermanentError as error:
        log.warning("snapshot_unreadable", error=str(error))
        return None
