"""Damage in transit on the real broker: the hub claims once and tells the customer."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from case_flow import Timeline, flow_settings, quick_couriers, request
from kafka_io import publish

from dispatch.partners import load_partners
from hub.core.outbound import event_record
from hub.core.topics import STOREFRONT_REQUESTS, center_events_topic
from hub.messages.repair import CenterItemReceivedV1
from intake.domain import case_id_for
from lab.local_stack import LocalStack
from lab.simulators.repair_center import CenterKnobs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.integration

PHONE = request(500, "screen_flicker", category="phone")
"""Goes to the repair center on Kafka (hz)."""
FRIDGE = request(501, "no_cooling", category="large_appliance", price=Decimal("3999.00"))
"""A visit that needs the workshop: picked up for the repair center over HTTP (sh)."""
IDS = {name: case_id_for(r.request_id) for name, r in (("phone", PHONE), ("fridge", FRIDGE))}


@pytest.fixture(scope="module")
async def timeline(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Timeline, LocalStack]]:
    settings = flow_settings(kafka_bootstrap, tmp_path_factory.mktemp("damage-stack"))
    table = quick_couriers(load_partners())
    knobs = CenterKnobs(damaged_cases=frozenset(IDS.values()))
    stack = LocalStack(settings, table, center_knobs=knobs)
    follow = Timeline()
    async with stack:
        follower = asyncio.create_task(follow.follow(kafka_bootstrap))
        try:
            await publish(settings, [
                event_record(STOREFRONT_REQUESTS, r, key=r.request_id, source="urn:storefront:test")
                for r in (PHONE, FRIDGE)
            ])  # fmt: skip
            for case_id in IDS.values():
                await follow.wait(case_id, "case.exception", timeout_s=120)
            # The Kafka center reports the damage again: redelivered (same id) and re-sent.
            again = CenterItemReceivedV1(
                case_id=IDS["phone"], serial_number=PHONE.item.serial_number, damaged=True,
                damage_description="again", evidence_ref="photo-2",
            )  # fmt: skip
            await publish(settings, [
                event_record(center_events_topic("hz"), again, key=IDS["phone"],
                             source="urn:partner:center-hz", event_id=event_id)
                for event_id in (f"center-hz-{IDS['phone']}-in", "center-hz-resent-damage")
            ])  # fmt: skip
            texts = {f"{case_id}:transit_damage:sms" for case_id in IDS.values()}
            async with asyncio.timeout(60):
                while not texts <= set(stack.sms.delivered):  # noqa: ASYNC110 - a polled sink
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # time for a wrong second claim or message to appear
            yield follow, stack
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)


@pytest.mark.parametrize("name", ["phone", "fridge"])
def test_the_claim_goes_to_the_inbound_courier_once(
    timeline: tuple[Timeline, LocalStack], name: str
) -> None:
    follow, _ = timeline
    case_id = IDS[name]
    (claim,) = follow.of(case_id, "damage.claimed")
    # The parcel the center received: the inbound leg's delivered scan.
    (delivered,) = [
        t
        for t in follow.of(case_id, "tracking.updated")
        if t["leg"] == "inbound" and t["status"] == "delivered"
    ]
    assert (claim["courier"], claim["waybill_no"]) == (
        delivered["courier"],
        delivered["waybill_no"],
    )
    price = (PHONE if name == "phone" else FRIDGE).item.price
    assert Decimal(claim["declared_value"]) == price
    assert claim["evidence_ref"] == f"photo-{case_id}-unpacking"
    assert claim["claim_id"] == f"{case_id}-inbound-damage"
    (exception,) = follow.of(case_id, "case.exception")
    assert exception["code"] == "transit_damage"
    assert follow.of(case_id, "repair.diagnosed") == []  # nothing is repaired


def test_the_customer_hears_of_it_once_in_their_language(
    timeline: tuple[Timeline, LocalStack],
) -> None:
    _, stack = timeline
    for case_id in IDS.values():
        body = stack.sms.delivered[f"{case_id}:transit_damage:sms"]
        assert "运输损坏" in body["text"]
        assert case_id in body["text"]
    counts = Counter(
        key.split(":")[1] for key in stack.sms.delivered if key.split(":")[0] in IDS.values()
    )
    assert counts["transit_damage"] == len(IDS)
