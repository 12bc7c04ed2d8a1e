"""A table on the real broker: every instance holds every key, restored before it consumes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from kafka_io import create_topics, publish

from hub.core.outbound import OutRecord, event_record
from hub.core.table import LatestTable
from hub.messages import CATALOGUE
from hub.messages.scores import CourierFigures, CourierScoredV1, Standing

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.settings import HubSettings

pytestmark = pytest.mark.integration
COURIERS = ("jd", "sf", "yd", "zt", "st", "ems")
"""Keys enough to land on every one of the topic's three partitions."""


def card(courier: str, score: float) -> CourierScoredV1:
    return CourierScoredV1(
        courier=courier, score=score, standing=Standing.ACTIVE, acceptance_rate=score,
        on_time_rate=1, exception_rate=0, damage_rate=0, sla_breach_rate=0,
        figures=CourierFigures(), window_s=60, scored_at=datetime.now(UTC),
    )  # fmt: skip


def records(topic: str, cards: list[CourierScoredV1]) -> list[OutRecord]:
    return [event_record(topic, c, key=c.courier, source="urn:test:scores") for c in cards]


async def test_two_instances_hold_every_courier_and_follow_changes(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings()
    topic = f"test.courier-scores.{unique}"
    await create_topics(settings, [], [topic])
    await publish(settings, records(topic, [card(code, 0.9) for code in COURIERS]))
    # The last value of a key wins; the table keeps only the latest.
    await publish(settings, records(topic, [card("jd", 0.5)]))
    first, second = (LatestTable(topic, CourierScoredV1) for _ in range(2))
    async with first.reader(settings, CATALOGUE), second.reader(settings, CATALOGUE):
        # Restored when started: what a dispatch instance knows before its first case.
        for table in (first, second):
            assert set(table) == set(COURIERS)
            assert table["jd"].score == 0.5
            assert table["sf"].score == 0.9
        await publish(settings, records(topic, [card("sf", 0.3)]))
        async with asyncio.timeout(30):
            while first["sf"].score != 0.3 or second["sf"].score != 0.3:  # noqa: ASYNC110 - followed in the background
                await asyncio.sleep(0.1)
        # A tombstone forgets the key in both.
        tombstone = OutRecord(topic, b"yd", None, ())
        await publish(settings, [tombstone])
        async with asyncio.timeout(30):
            while "yd" in first or "yd" in second:  # noqa: ASYNC110 - followed in the background
                await asyncio.sleep(0.1)
    assert len(first) == len(second) == len(COURIERS) - 1
