"""On the real broker: request, case, courier, up to "received at the repair center"."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer
from kafka_io import read_records

from dispatch.partners import load_partners
from hub.core.envelope import Envelope
from hub.core.outbound import event_record
from hub.core.service import KafkaSink
from hub.core.settings import HubSettings
from hub.core.topics import CASES, STOREFRONT_REQUESTS, dead_letter_topic
from intake.domain import case_id_for
from lab.local_stack import LocalStack
from lab.samples import sample_request_v2
from lab.simulators.kafka_courier import CourierKnobs
from lab.simulators.sf_courier import SfKnobs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from hub.messages.storefront import AfterSalesRequestedV2

pytestmark = pytest.mark.integration

DELIVERED = ["picked_up", "in_transit", "out_for_delivery", "delivered"]
JD_CASES = range(100, 108)  # 浙江省 phones worth ¥4,999: JD first (yd insures too little), SF next
SF_CASES = range(200, 206)  # 新疆 laptops: only SF goes there


def request(number: int, **changes: Any) -> AfterSalesRequestedV2:
    base = sample_request_v2(number)
    item = base.item.model_copy(update=changes.pop("item", {}))
    address = base.address.model_copy(update=changes.pop("address", {}))
    return base.model_copy(update={"item": item, "address": address, **changes})


REQUESTS = [
    *(request(n, item={"category": "phone", "price": Decimal("4999.00")}) for n in JD_CASES),
    *(
        request(
            n,
            item={"category": "laptop"},
            address={"province": "新疆维吾尔自治区", "city": "乌鲁木齐市"},
        )
        for n in SF_CASES
    ),
    request(300, item={"purchase_date": date(2019, 1, 15)}),  # warranty over: rejected
    request(
        301,
        item={"category": "laptop", "price": Decimal("60000.00")},
        address={"province": "西藏自治区"},
    ),  # nobody insures that much there
]
DELIVERABLE = [case_id_for(r.request_id) for r in REQUESTS[: len(JD_CASES) + len(SF_CASES)]]
EXPIRED, NO_COURIER = (case_id_for(r.request_id) for r in REQUESTS[-2:])


class Run:
    """What the module's one run of the stack produced."""

    def __init__(self, stack: LocalStack, events: dict[str, list[tuple[str, dict[str, Any]]]],
                 dead_letters: list[Any]) -> None:  # fmt: skip
        self.stack = stack
        self.events = events
        self.dead_letters = dead_letters

    def of(self, case_id: str, ce_type: str) -> list[dict[str, Any]]:
        """Events of one type for the inbound leg (the stack goes on to repair and return)."""
        return [
            body
            for kind, body in self.events[case_id]
            if kind == ce_type and "-outbound-" not in body.get("order_id", "")
        ]


async def collect(bootstrap: str, until: set[str], timeout_s: float) -> dict[str, list[Any]]:
    """Case events by case id, read until every case in `until` is finished."""
    consumer = AIOKafkaConsumer(CASES, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    events: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    finished: set[str] = set()
    try:
        async with asyncio.timeout(timeout_s):
            while not until <= finished:
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    for record in batch:
                        kind = Envelope.from_headers(record.headers).type
                        body = json.loads(record.value or b"{}")
                        events[body["case_id"]].append((kind, body))
                        done = kind in {"aftersales.case.rejected.v1",
                                        "aftersales.case.exception.v1"} or (
                            kind == "aftersales.tracking.updated.v1"
                            and body["status"] == "delivered" and body["leg"] == "inbound"
                        )  # fmt: skip
                        if done:
                            finished.add(body["case_id"])
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return events


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    state: Path = tmp_path_factory.mktemp("stack")
    settings = HubSettings(
        kafka_bootstrap_servers=kafka_bootstrap, state_dir=str(state), retry_tiers=("1s", "2s"),
        inline_attempts=2, inline_backoff_s=0.05, inline_deadline_s=3.0, max_attempts=12,
        code_version="test",
    )  # fmt: skip
    partners = load_partners()
    # A silent JD must time out quickly; SF's deadline has to cover its gateway's retries.
    deadlines = {"jd": timedelta(seconds=8), "sf": timedelta(seconds=20)}
    table = partners.model_copy(update={"couriers": tuple(
        c.model_copy(update={"accept_deadline": deadlines.get(c.code, c.accept_deadline)})
        for c in partners.couriers
    )})  # fmt: skip
    stack = LocalStack(
        settings, table,
        sf_knobs=SfKnobs(error_rate=0.3, timeout_rate=0.1, hang_s=3.0, step_delay_s=0.15,
                         duplicate_push_rate=0.5, seed=7),
        courier_knobs={"jd": CourierKnobs(reject_rate=0.3, silent_rate=0.2, step_delay_s=0.15,
                                          duplicate_push_rate=0.5, seed=11)},
    )  # fmt: skip
    async with stack:
        sink = KafkaSink(settings, client_id="test-storefront")
        await sink.start()
        try:
            records = [
                event_record(STOREFRONT_REQUESTS, r, key=r.request_id, source="urn:storefront:test")
                for r in REQUESTS
            ]
            invalid = event_record(
                STOREFRONT_REQUESTS, REQUESTS[0], key="RQ-invalid", source="urn:storefront:test"
            )
            broken_body = (invalid.value or b"").replace(b'"request_type":"repair"',
                                                         b'"request_type":"teleport"')  # fmt: skip
            await sink.send([*records, type(invalid)(invalid.topic, invalid.key, broken_body,
                                                     invalid.headers)])  # fmt: skip
        finally:
            await sink.stop()
        events = await collect(kafka_bootstrap, {*DELIVERABLE, EXPIRED, NO_COURIER}, 150)
        letters = await read_records(
            kafka_bootstrap, dead_letter_topic(STOREFRONT_REQUESTS, "intake"), count=1,
            match=lambda record: record.key == b"RQ-invalid",
        )  # fmt: skip
        yield Run(stack, events, letters)


def test_every_case_reaches_the_repair_center_through_each_tracking_status(run: Run) -> None:
    for case_id in DELIVERABLE:
        statuses = [u["status"] for u in run.of(case_id, "aftersales.tracking.updated.v1")]
        timeline = [
            (kind, body.get("courier"), body.get("code")) for kind, body in run.events[case_id]
        ]
        assert statuses == DELIVERED, timeline  # duplicate pushes changed nothing


def test_each_case_has_exactly_one_accepted_pickup_and_sf_created_each_order_once(
    run: Run,
) -> None:
    for case_id in DELIVERABLE:
        timeline = [
            (kind, body.get("courier"), body.get("order_id")) for kind, body in run.events[case_id]
        ]
        assert len(run.of(case_id, "aftersales.pickup.accepted.v1")) == 1, timeline
    assert run.stack.sf.created, "SF served no order: the test did not exercise the HTTP courier"
    assert set(run.stack.sf.created.values()) == {1}
    assert sum(run.stack.sf.requests.values()) > len(run.stack.sf.created)  # faults were hit


def test_http_and_kafka_couriers_both_carried_cases(run: Run) -> None:
    carriers = Counter(
        run.of(case_id, "aftersales.pickup.accepted.v1")[0]["courier"] for case_id in DELIVERABLE
    )
    assert carriers["sf"] >= len(SF_CASES)
    assert carriers["jd"] >= 1


def test_rejected_or_silent_orders_fall_back_to_the_next_courier(run: Run) -> None:
    fell_back = 0
    for case_id in (case_id_for(f"RQ-{n:08d}") for n in JD_CASES):
        failures = run.of(case_id, "aftersales.pickup.failed.v1")
        requests = run.of(case_id, "aftersales.pickup.requested.v1")
        assert len(requests) == len(failures) + 1, case_id
        if failures:
            fell_back += 1
            assert failures[0]["code"] in {"capacity", "timeout"}
            assert (requests[1]["courier"], requests[1]["attempt"]) == ("sf", 2)
            if failures[0]["code"] == "timeout":  # the silent courier was told to stand down
                assert failures[0]["order_id"] in run.stack.couriers["jd"].cancelled
    assert fell_back >= 1, "the knobs made no courier fail: fallback was not exercised"


def test_bad_requests_get_a_rejection_or_a_dead_letter_and_the_flow_goes_on(run: Run) -> None:
    (rejected,) = run.of(EXPIRED, "aftersales.case.rejected.v1")
    assert rejected["reason_code"] == "warranty_expired"
    (exception,) = run.of(NO_COURIER, "aftersales.case.exception.v1")
    assert exception["code"] == "no_courier"
    (letter,) = run.dead_letters
    headers = {name: bytes(value).decode() for name, value in letter.headers}
    assert headers["x-hub-error-stage"] == "validate"
    assert "request_type" in headers["x-hub-error-message"]


def test_a_courier_receives_only_name_phone_and_address_of_the_customer(run: Run) -> None:
    orders = run.stack.couriers["jd"].raw_orders
    assert orders, "JD received no order"
    for raw in orders.values():
        order = json.loads(raw)
        assert set(order["sender"]) == {"name", "phone", "province", "city", "district", "street"}
        text = raw.decode()
        for private in ("customer_id", "email", "order_item_id", "OD-", "serial_number", "fault"):
            assert private not in text, private
