"""On the real broker: whole cases to closed, refunds and notifications exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from case_flow import Timeline, flow_settings, quick_couriers, request
from kafka_io import publish

from dispatch.partners import load_partners
from hub.core.outbound import event_record
from hub.core.topics import STOREFRONT_REQUESTS, center_events_topic
from hub.messages.repair import CenterDiagnosedV1, Resolution
from hub.messages.storefront import QuoteAnswerGivenV1
from intake.domain import case_id_for
from lab.local_stack import LocalStack
from lab.simulators.notification_sinks import SinkKnobs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


pytestmark = pytest.mark.integration


CASES_BY_NAME = {
    "repair": request(400, "screen_flicker", category="phone"),
    "refund": request(401, "no_power", category="phone"),
    "replace": request(402, "leak", category="phone"),
    "quote": request(403, "water_damage", category="phone"),
    "onsite_fixed": request(404, "noise", category="large_appliance", price=Decimal("3999.00")),
    "onsite_workshop": request(
        405, "no_cooling", category="large_appliance", price=Decimal("3999.00")
    ),
}
IDS = {name: case_id_for(r.request_id) for name, r in CASES_BY_NAME.items()}
EXPECTED_OUTCOME = {
    "repair": "repaired",
    "refund": "refunded",
    "replace": "replaced",
    "quote": "returned_unrepaired",
    "onsite_fixed": "fixed_onsite",
    "onsite_workshop": "repaired",
}


class Run:
    def __init__(self, stack: LocalStack, timeline: Timeline) -> None:
        self.stack = stack
        self.timeline = timeline


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    settings = flow_settings(kafka_bootstrap, tmp_path_factory.mktemp("repair-stack"))
    table = quick_couriers(load_partners())
    stack = LocalStack(settings, table, sms_knobs=SinkKnobs(error_rate=0.2, seed=5))
    timeline = Timeline()
    async with stack:
        follower = asyncio.create_task(timeline.follow(kafka_bootstrap))
        try:
            await publish(settings, [
                event_record(STOREFRONT_REQUESTS, r, key=r.request_id, source="urn:storefront:test")
                for r in CASES_BY_NAME.values()
            ])  # fmt: skip
            # Mid-flow, the repair and notification services restart (drained, same state).
            await timeline.wait(IDS["repair"], "repair.item-received")
            await stack.restart("repair")
            await stack.restart("notify-sender")
            # The customer declines the quote in the storefront.
            await timeline.wait(IDS["quote"], "repair.quote-issued")
            quoted = CASES_BY_NAME["quote"]
            answer = QuoteAnswerGivenV1(
                request_id=quoted.request_id,
                order_item_id=quoted.order_item_id,
                approved=False,
                answered_at=datetime.now(UTC),
            )
            await publish(settings, [event_record(STOREFRONT_REQUESTS, answer,
                                                  key=quoted.request_id,
                                                  source="urn:storefront:test")])  # fmt: skip
            for case_id in IDS.values():
                await timeline.wait(case_id, "case.closed", timeout_s=120)
            # The center re-sends its refund diagnosis: once as a redelivery (same id), once
            # as a new message; neither may refund again.
            diagnosis = CenterDiagnosedV1(
                case_id=IDS["refund"], fault_type="no_power", in_warranty=True,
                resolution=Resolution.REFUND,
            )  # fmt: skip
            await publish(settings, [
                event_record(center_events_topic("hz"), diagnosis, key=IDS["refund"],
                             source="urn:partner:center-hz", event_id=event_id)
                for event_id in (f"center-hz-{IDS['refund']}-diagnosis", "center-hz-resent-1")
            ])  # fmt: skip
            closing_texts = {f"{case_id}:closed:sms" for case_id in IDS.values()}
            async with asyncio.timeout(60):
                while not closing_texts <= set(stack.sms.delivered):  # noqa: ASYNC110 - a polled sink
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # time for a wrong second refund or message to appear
            yield Run(stack, timeline)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)


def test_every_case_closes_with_its_outcome(run: Run) -> None:
    for name, case_id in IDS.items():
        (closed,) = run.timeline.of(case_id, "case.closed")
        assert closed["outcome"] == EXPECTED_OUTCOME[name], run.timeline.kinds(case_id)


def test_a_repair_case_goes_there_and_back(run: Run) -> None:
    case_id = IDS["repair"]
    legs = [(u["leg"], u["status"]) for u in run.timeline.of(case_id, "tracking.updated")]
    assert legs == [
        *(("inbound", s) for s in ("picked_up", "in_transit", "out_for_delivery", "delivered")),
        *(("outbound", s) for s in ("picked_up", "in_transit", "out_for_delivery", "delivered")),
    ]
    (received,) = run.timeline.of(case_id, "repair.item-received")
    assert received["serial_matches"]
    (completed,) = run.timeline.of(case_id, "repair.work-completed")
    assert completed["repaired"]


def test_refund_and_replacement_happen_exactly_once(run: Run) -> None:
    (refund,) = run.timeline.of(IDS["refund"], "refund.requested")
    assert Decimal(refund["amount"]) == CASES_BY_NAME["refund"].item.price
    assert run.timeline.of(IDS["refund"], "return.requested") == []  # refunded items stay
    (replacement,) = run.timeline.of(IDS["replace"], "replacement.issued")
    assert replacement["sku"] == CASES_BY_NAME["replace"].item.sku
    assert len(run.timeline.of(IDS["replace"], "return.requested")) == 1


def test_a_declined_quote_sends_the_item_back_unrepaired(run: Run) -> None:
    (quote,) = run.timeline.of(IDS["quote"], "repair.quote-issued")
    assert Decimal(quote["amount"]) == Decimal("299.00")
    (completed,) = run.timeline.of(IDS["quote"], "repair.work-completed")
    assert completed["repaired"] is False


def test_large_appliances_go_to_the_http_center_and_phones_to_the_kafka_one(run: Run) -> None:
    http_tickets = set(run.stack.http_center.workshop.tickets)
    assert http_tickets == {
        f"{IDS['onsite_fixed']}:visit",
        f"{IDS['onsite_workshop']}:visit",
        f"{IDS['onsite_workshop']}:workshop",
    }
    assert set(run.stack.http_center.workshop.tickets.values()) == {1}
    kafka_cases = {key.split(":")[0] for key in run.stack.center.workshop.tickets}
    assert kafka_cases >= {IDS["repair"], IDS["refund"], IDS["replace"], IDS["quote"]}
    requests = run.timeline.of(IDS["onsite_workshop"], "pickup.requested")
    (inbound,) = [body for body in requests if body["leg"] == "inbound"]
    assert inbound["courier"] in {"jd", "sf"}


def test_onsite_visits_fix_at_home_or_turn_into_a_pickup(run: Run) -> None:
    (visit,) = run.timeline.of(IDS["onsite_fixed"], "onsite.visit-reported")
    assert visit["outcome"] == "fixed"
    assert run.timeline.of(IDS["onsite_fixed"], "pickup.requested") == []
    (visit,) = run.timeline.of(IDS["onsite_workshop"], "onsite.visit-reported")
    assert visit["outcome"] == "needs_workshop"
    assert run.timeline.of(IDS["onsite_workshop"], "pickup.requested")


def test_each_milestone_reaches_each_chosen_channel_once(run: Run) -> None:
    sms, smtp = run.stack.sms.delivered, run.stack.smtp
    assert set(smtp.by_message_id.values()) == {1}  # no e-mail twice
    # Nobody here chose app push (other modules' cases share the topics, hence the filter).
    assert [key for key in run.stack.push.delivered if key.split(":")[0] in IDS.values()] == []
    for name, case_id in IDS.items():
        texts = {key.split(":")[1] for key in sms if key.startswith(case_id)}
        mails = {mid.split(".")[1] for mid in smtp.by_message_id if case_id in mid}
        assert texts == mails, name
        assert {"opened", "closed"} <= texts, name
    assert {key.split(":")[1] for key in sms if key.startswith(IDS["refund"])} == {
        "opened", "pickup_scheduled", "picked_up", "received", "refunded", "closed",
    }  # fmt: skip
    assert run.stack.sms.requests > len(sms)  # the gateway failed sometimes; retries delivered


def test_messages_are_in_the_customers_language(run: Run) -> None:
    customer = CASES_BY_NAME["refund"].customer
    body = run.stack.sms.delivered[f"{IDS['refund']}:refunded:sms"]
    assert body["to"] == customer.phone
    assert body["text"] == f"{customer.name}您好,我们已为您申请退款 ¥199.00,将原路退回。"
    counts = Counter(kind for kind, _ in run.timeline.events[IDS["refund"]])
    assert counts["aftersales.refund.requested.v1"] == 1
