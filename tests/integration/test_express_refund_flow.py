"""On the real broker: express refunds (极速退款) at pickup, exactly once, and their claw-backs."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer
from case_flow import flow_settings, quick_couriers
from kafka_io import publish

from dispatch.partners import load_partners
from hub.core.envelope import Envelope
from hub.core.outbound import event_record
from hub.core.topics import CASES, STOREFRONT_REQUESTS, center_events_topic
from hub.messages.cases import TrackingUpdatedV1
from hub.messages.common import Fault, RequestType
from hub.messages.repair import CenterDiagnosedV1, CenterItemReceivedV1, Resolution
from intake.domain import case_id_for
from lab.local_stack import LocalStack
from lab.samples import sample_request
from lab.simulators.repair_center import CenterKnobs
from tracker.snapshots import read_snapshots
from tracker.stats import compute_stats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from hub.core.settings import HubSettings
    from hub.messages.storefront import AfterSalesRequestedV3

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def request(
    number: int, request_type: RequestType, *, trusted: bool = True, fault: str | None = None
) -> AfterSalesRequestedV3:
    """A request of its own order (no other module's case shares it), bought two days ago."""
    base = sample_request(number, now=NOW, request_type=request_type, trusted_customer=trusted)
    item = base.item.model_copy(update={"purchase_date": (NOW - timedelta(days=2)).date()})
    return base.model_copy(
        update={
            "request_id": f"RQ-EXPRESS-{number}",
            "order_id": f"OD-EXPRESS-{number}",
            "order_item_id": f"OI-EXPRESS-{number}-1",
            "item": item,
            "fault": Fault(code=fault, description="客户描述") if fault else base.fault,
        }
    )


REQUESTS = {
    # Phones (the Kafka-native center hz): the center repairs a screen flicker, which a refunded
    # return no longer needs.
    "return": request(900, RequestType.RETURN),
    # A kettle the center would replace: refunded at pickup, so no replacement goes out.
    "exchange": request(902, RequestType.EXCHANGE),
    # Not trusted: a laptop without power, refunded after diagnosis as before.
    "untrusted": request(904, RequestType.RETURN, trusted=False),
    # The parcel holds another phone.
    "mismatch": request(906, RequestType.RETURN),
    # Dropped: the center finds damage by the customer.
    "damaged": request(909, RequestType.RETURN, fault="dropped"),
}
IDS = {name: case_id_for(r.request_id) for name, r in REQUESTS.items()}
WRONG_SERIALS = frozenset({REQUESTS["mismatch"].item.serial_number})


@dataclass(frozen=True, slots=True)
class Seen:
    """One record of the case topic: its type, id, source and body."""

    type: str
    id: str
    source: str
    body: dict[str, Any]


class Topic:
    """Every record of `aftersales.cases`, by case id, read from the start."""

    def __init__(self) -> None:
        self.records: dict[str, list[Seen]] = defaultdict(list)

    def of(self, name: str, short: str) -> list[Seen]:
        return [
            seen
            for seen in self.records[IDS[name]]
            if seen.type.startswith(f"aftersales.{short}.v")
        ]

    async def follow(self, bootstrap: str) -> None:
        consumer = AIOKafkaConsumer(
            CASES, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            while True:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    for record in batch:
                        envelope = Envelope.from_headers(record.headers)
                        body = json.loads(record.value or b"{}")
                        seen = Seen(envelope.type, envelope.id, envelope.source, body)
                        self.records[body.get("case_id", "")].append(seen)
        finally:
            await consumer.stop()

    async def wait(self, name: str, short: str, timeout_s: float = 120) -> Seen:
        async with asyncio.timeout(timeout_s):
            while not self.of(name, short):  # noqa: ASYNC110 - a polled topic
                await asyncio.sleep(0.1)
        return self.of(name, short)[0]


@dataclass
class Run:
    stack: LocalStack
    topic: Topic
    settings: HubSettings


async def redeliver(settings: HubSettings, topic: Topic) -> None:
    """The pickup scan and the center's reports of the refunded return, again and again."""
    case_id = IDS["return"]
    pickup = next(
        seen
        for seen in topic.of("return", "tracking.updated")
        if seen.body["leg"] == "inbound" and seen.body["status"] == "picked_up"
    )
    scan = TrackingUpdatedV1.model_validate(pickup.body)
    received = CenterItemReceivedV1(
        case_id=case_id, serial_number=REQUESTS["return"].item.serial_number
    )
    diagnosis = CenterDiagnosedV1(
        case_id=case_id, fault_type="screen_flicker", in_warranty=True, resolution=Resolution.REFUND
    )
    center = center_events_topic("hz")
    await publish(settings, [
        # The same record again (same source and id), and the same scan as a new record.
        event_record(CASES, scan, key=case_id, source=pickup.source, event_id=pickup.id),
        event_record(CASES, scan, key=case_id, source=pickup.source, event_id="scan-again-1"),
        # The center re-sends its reports: as redeliveries, then as new messages.
        *(event_record(center, report, key=case_id, source="urn:partner:center-hz",
                       event_id=f"center-hz-{case_id}-{name}")
          for report, name in ((received, "in"), (diagnosis, "diagnosis"))),
        *(event_record(center, report, key=case_id, source="urn:partner:center-hz",
                       event_id=f"resent-{name}")
          for report, name in ((received, "in"), (diagnosis, "diagnosis"))),
    ])  # fmt: skip


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    settings = flow_settings(kafka_bootstrap, tmp_path_factory.mktemp("express-refund"))
    table = quick_couriers(load_partners())
    stack = LocalStack(settings, table, center_knobs=CenterKnobs(wrong_serials=WRONG_SERIALS))
    topic = Topic()
    async with stack:
        follower = asyncio.create_task(topic.follow(kafka_bootstrap))
        try:
            await publish(settings, [
                event_record(STOREFRONT_REQUESTS, r, key=r.request_id, source="urn:storefront:test")
                for r in REQUESTS.values()
            ])  # fmt: skip
            # Refunded at pickup, the repair service restarts (drained, on the same state).
            await topic.wait("return", "refund.requested")
            await stack.restart("repair")
            for name in ("return", "exchange", "untrusted"):
                await topic.wait(name, "case.closed")
            for name in ("mismatch", "damaged"):
                await topic.wait(name, "refund.clawback-requested")
            await redeliver(settings, topic)
            clawbacks = {f"{IDS[name]}:refund_clawback:sms" for name in ("mismatch", "damaged")}
            async with asyncio.timeout(60):
                while not clawbacks <= set(stack.sms.delivered):  # noqa: ASYNC110 - a polled sink
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # time for a wrong second refund or message to appear
            yield Run(stack, topic, settings)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)


def test_a_trusted_return_is_refunded_once_at_pickup_and_closed_without_a_second(run: Run) -> None:
    kinds = [seen.type.removeprefix("aftersales.") for seen in run.topic.records[IDS["return"]]]
    refunds = run.topic.of("return", "refund.requested")
    assert len(refunds) == 1, kinds  # one record on the topic, whatever was redelivered
    (refund,) = refunds
    assert refund.body["express"] is True
    assert Decimal(refund.body["amount"]) == REQUESTS["return"].item.price
    # Requested after the pickup scan, before the parcel reached the center.
    assert kinds.index("refund.requested.v1") < kinds.index("repair.item-received.v1")
    scans = [s.body["status"] for s in run.topic.of("return", "tracking.updated")]
    assert scans.index("picked_up") < kinds.index("refund.requested.v1")
    (closed,) = run.topic.of("return", "case.closed")
    assert closed.body["outcome"] == "refunded"
    for short in ("replacement.issued", "return.requested", "refund.clawback-requested"):
        assert run.topic.of("return", short) == [], short


def test_an_exchange_refunded_at_pickup_gets_no_replacement(run: Run) -> None:
    (refund,) = run.topic.of("exchange", "refund.requested")
    assert refund.body["express"] is True
    (diagnosed,) = run.topic.of("exchange", "repair.diagnosed")
    assert diagnosed.body["resolution"] == "replace"  # what the center would have done
    assert run.topic.of("exchange", "replacement.issued") == []
    assert run.topic.of("exchange", "return.requested") == []
    (closed,) = run.topic.of("exchange", "case.closed")
    assert closed.body["outcome"] == "refunded"


def test_an_untrusted_return_is_refunded_after_diagnosis_as_before(run: Run) -> None:
    (refund,) = run.topic.of("untrusted", "refund.requested")
    assert "express" not in refund.body
    kinds = [seen.type for seen in run.topic.records[IDS["untrusted"]]]
    assert kinds.index("aftersales.repair.diagnosed.v1") < kinds.index(
        "aftersales.refund.requested.v1"
    )


@pytest.mark.parametrize(
    ("name", "code"), [("mismatch", "serial_mismatch"), ("damaged", "customer_damage")]
)
def test_a_mismatch_found_by_the_center_raises_an_exception_and_claws_back(
    run: Run, name: str, code: str
) -> None:
    (refund,) = run.topic.of(name, "refund.requested")
    assert refund.body["express"] is True
    (exception,) = run.topic.of(name, "case.exception")
    assert exception.body["code"] == code
    (clawback,) = run.topic.of(name, "refund.clawback-requested")
    assert clawback.body["reason_code"] == code
    assert Decimal(clawback.body["amount"]) == Decimal(refund.body["amount"])
    assert clawback.body["order_id"] == REQUESTS[name].order_id
    assert run.topic.of(name, "case.closed") == []


def test_the_customer_hears_of_the_express_refund_and_of_the_clawback(run: Run) -> None:
    sms = run.stack.sms.delivered
    milestones = {
        name: {key.split(":")[1] for key in sms if key.startswith(IDS[name])} for name in IDS
    }
    assert milestones["return"] >= {"picked_up", "express_refunded", "closed"}
    assert "refunded" not in milestones["return"]
    assert "refund_clawback" not in milestones["return"]
    assert milestones["untrusted"] >= {"refunded"}
    assert "express_refunded" not in milestones["untrusted"]
    for name in ("mismatch", "damaged"):
        assert milestones[name] >= {"express_refunded", "refund_clawback"}, name
    customer = REQUESTS["return"].customer
    text = sms[f"{IDS['return']}:express_refunded:sms"]["text"]
    assert text.startswith(f"{customer.name}您好,快递员已取件,我们已为您办理极速退款 ¥4999.00")


async def test_the_tracker_shows_both_and_stats_count_them(run: Run) -> None:
    snapshots = await read_snapshots(run.settings)
    ours = {name: snapshots[case_id] for name, case_id in IDS.items()}
    refunded = ours["return"]
    assert refunded.status == "closed"
    assert refunded.express_refund is not None
    assert refunded.express_refund.clawback_reason is None
    kinds = [entry.kind for entry in refunded.timeline]
    assert "refund.requested" in kinds
    clawed = ours["mismatch"]
    assert clawed.status == "exception"
    assert clawed.express_refund is not None
    assert clawed.express_refund.clawback_reason == "serial_mismatch"
    assert [e.kind for e in clawed.timeline][-2:] == ["case.exception", "refund.clawback-requested"]
    figures = compute_stats(ours.values()).express_refunds
    prices = [REQUESTS[name].item.price for name in ("return", "exchange", "mismatch", "damaged")]
    assert (figures.count, figures.amount) == (4, sum(prices))
    assert (figures.clawbacks, figures.clawback_reasons) == (
        2,
        {"serial_mismatch": 1, "customer_damage": 1},
    )
