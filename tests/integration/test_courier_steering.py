"""On the real broker: a courier that keeps rejecting loses new orders, and wins them back."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer
from case_flow import Timeline, request
from kafka_io import publish
from rich.console import Console

from dispatch.partners import load_partners
from hub.cli.stats import render_scorecards
from hub.core.outbound import event_record
from hub.core.settings import HubSettings
from hub.core.topics import COURIER_SCORES, STOREFRONT_REQUESTS
from hub.messages.scores import Standing
from intake.domain import case_id_for
from lab.local_stack import LocalStack
from lab.simulators.kafka_courier import CourierKnobs
from tracker.snapshots import read_scorecards

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.integration

MAX_CASES = 8
"""Cases sent, one after the other, before the steering must have shown."""
JD = f"jd{uuid.uuid4().hex[:8]}"
"""JD Logistics' entry of the partner table (2h pickup SLA, ¥18), under a code of this run."""


class Cards:
    """The scorecards as published, in order."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def of(self, courier: str) -> list[dict[str, Any]]:
        return [card for card in self.seen if card["courier"] == courier]

    async def follow(self, bootstrap: str) -> None:
        consumer = AIOKafkaConsumer(
            COURIER_SCORES, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            while True:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    self.seen += [json.loads(record.value or b"{}") for record in batch]
        finally:
            await consumer.stop()

    async def wait(self, courier: str, standing: str, after: int = 0) -> dict[str, Any]:
        async with asyncio.timeout(90):
            while True:
                found = [c for c in self.of(courier)[after:] if c["standing"] == standing]
                if found:
                    return found[0]
                await asyncio.sleep(0.2)


class Run:
    def __init__(self, stack: LocalStack, timeline: Timeline, cards: Cards) -> None:
        self.stack = stack
        self.timeline = timeline
        self.cards = cards
        self.sent = 0

    async def first_courier_of_a_new_case(self) -> str:
        """Send one phone case from Hangzhou; the courier its first pickup order went to."""
        self.sent += 1
        base = request(700 + self.sent, "screen_flicker", category="phone", price=Decimal(999))
        address = base.address.model_copy(
            update={"province": "浙江省", "city": "杭州市", "district": "西湖区"}
        )
        case = base.model_copy(update={"address": address})
        await publish(self.stack.settings, [event_record(
            STOREFRONT_REQUESTS, case, key=case.request_id, source="urn:storefront:test",
        )])  # fmt: skip
        case_id = case_id_for(case.request_id)
        await self.timeline.wait(case_id, "pickup.accepted", timeout_s=60)
        requested = self.timeline.of(case_id, "pickup.requested")
        return str(next(r["courier"] for r in requested if r["attempt"] == 1))


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    settings = HubSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        state_dir=str(tmp_path_factory.mktemp("steering-stack")),
        retry_tiers=("1s", "2s"),
        inline_attempts=2,
        inline_backoff_s=0.05,
        max_attempts=12,
        code_version="test",
        # A short window, so that the rejecting courier's record ages out while we watch.
        courier_score_window=timedelta(seconds=30),
        courier_score_interval=timedelta(seconds=2),
        # The score barely weighs in the ranking here, so that what moves the orders is the
        # floor (the blend alone would move them earlier: see tests/unit/test_courier_scores).
        dispatch_weight_score=0.1,
    )
    partners = load_partners()
    # JD under a code of this run: cards other modules left on the shared broker are not its.
    table = partners.model_copy(update={"couriers": tuple(
        c.model_copy(update={"accept_deadline": timedelta(seconds=20),
                             "code": JD if c.code == "jd" else c.code})
        for c in partners.couriers
    )})  # fmt: skip
    stack = LocalStack(settings, table, courier_knobs={JD: CourierKnobs(reject_rate=1.0)})
    timeline, cards = Timeline(), Cards()
    async with stack:
        followers = [
            asyncio.create_task(timeline.follow(kafka_bootstrap)),
            asyncio.create_task(cards.follow(kafka_bootstrap)),
        ]
        try:
            yield Run(stack, timeline, cards)
        finally:
            for follower in followers:
                follower.cancel()
            await asyncio.gather(*followers, return_exceptions=True)


async def test_orders_move_away_from_a_rejecting_courier_and_come_back(run: Run) -> None:
    # JD ranks first for a phone in Zhejiang, but rejects every order.
    firsts = [await run.first_courier_of_a_new_case()]
    while firsts[-1] == JD and len(firsts) < MAX_CASES:
        firsts.append(await run.first_courier_of_a_new_case())
    assert firsts[0] == JD
    assert firsts[-1] != JD, firsts
    suspended = await run.cards.wait(JD, "suspended")
    assert suspended["score"] < run.stack.settings.courier_score_floor
    assert suspended["figures"]["failed"] >= 3
    assert suspended["figures"]["accepted"] == 0
    # Suspended, jd is not offered the new case's order, not even as a fallback.
    moved = case_id_for(f"RQ-{700 + run.sent:08d}")
    orders = run.timeline.of(moved, "pickup.requested")
    assert f"passed over {JD} (suspended" in orders[0]["reason"]
    assert all(order["courier"] != JD for order in orders)

    # jd mends its ways; its rejections leave the window and it is offered orders again.
    jd = run.stack.couriers[JD]
    jd.knobs = replace(jd.knobs, reject_rate=0.0)
    position = run.cards.of(JD).index(suspended)
    recovered = await run.cards.wait(JD, "active", after=position)
    assert recovered["score"] >= run.stack.settings.courier_score_recover
    back = [await run.first_courier_of_a_new_case()]
    while back[-1] != JD and len(back) < MAX_CASES:
        back.append(await run.first_courier_of_a_new_case())
    assert back[-1] == JD, back

    # `hub stats` reads the same cards: the latest of each courier, jd active again.
    cards = await read_scorecards(run.stack.settings)
    assert cards[JD].standing is Standing.ACTIVE
    screen = Console(file=io.StringIO(), width=200)
    render_scorecards(cards, screen)
    lines = screen.file.getvalue().splitlines()  # type: ignore[attr-defined]
    rows = [line.replace("│", " ").split()[:3] for line in lines]
    assert [JD, f"{cards[JD].score:.2f}", "active"] in rows
