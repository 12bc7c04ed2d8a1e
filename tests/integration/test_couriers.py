"""Couriers on the real broker: the Kafka-native simulator, and the SF gateway with its webhook."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from kafka_io import create_topics, publish, settle_and_read

from gateway.service import build_gateway_service, declare_gateway
from gateway.sf_client import SfClient, SfCreateResult
from gateway.sf_protocol import CREATE_ORDER, SEARCH_ORDER, request_form
from gateway.webhook import RoutePushReceiver
from hub.core.envelope import Envelope
from hub.core.outbound import event_record
from hub.core.service import KafkaSink, ServiceRuntime
from hub.core.topics import (
    Subscription,
    courier_events_topic,
    courier_orders_topic,
    dead_letter_topic,
)
from hub.messages import CATALOGUE
from hub.messages.common import TimeWindow
from hub.messages.courier import (
    CourierOrderAcceptedV1,
    CourierOrderRejectedV1,
    CourierRejection,
    CourierTrackingV1,
    Leg,
    PickupCancelRequestedV1,
    PickupContact,
    PickupOrderV1,
    pickup_order_id,
)
from lab.simulators.kafka_courier import CourierKnobs, KafkaCourierSimulator
from lab.simulators.sf_courier import SfCourierSimulator, SfKnobs

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.outbound import OutRecord
    from hub.core.registry import Event
    from hub.core.settings import HubSettings

pytestmark = pytest.mark.integration
E = TypeVar("E")

JD_STEPS = ["PICKUP", "TRANSIT", "DELIVERING", "SIGNED"]
SF_ROUTES = ["50", "30", "44", "80"]


def contact(city: str) -> PickupContact:
    return PickupContact(name="李四", phone="13900139000", province="浙江省", city=city,
                         district="余杭区", street="文一西路 969 号")  # fmt: skip


def pickup_order(case_id: str) -> PickupOrderV1:
    now = datetime.now(UTC)
    return PickupOrderV1(
        order_id=pickup_order_id(case_id, Leg.INBOUND, 1), case_id=case_id, leg=Leg.INBOUND,
        sender=contact("杭州市"), receiver=contact("杭州市"), category="phone",
        declared_value=Decimal("1999.00"), insured=False,
        pickup_window=TimeWindow(start=now, end=now + timedelta(hours=4)), ordered_at=now,
    )  # fmt: skip


def order_record(order: PickupOrderV1 | PickupCancelRequestedV1, courier: str) -> OutRecord:
    return event_record(
        courier_orders_topic(courier), order, key=order.case_id, source="urn:test:dispatch"
    )


@dataclass(frozen=True, slots=True)
class Seen:
    """One record of a courier events topic, decoded."""

    key: str
    ce_id: str
    event: Event


async def read_events(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Seen]], bool],
    *,
    timeout_s: float = 60.0,
    quiet_s: float = 1.0,
) -> list[Seen]:
    """Decode `topic` from the start until `done`, then `quiet_s` longer to catch extras."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    seen: list[Seen] = []
    loop = asyncio.get_running_loop()
    finished_at: float | None = None
    deadline = loop.time() + timeout_s
    try:
        while loop.time() < deadline and (finished_at is None or loop.time() < finished_at):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                for record in batch:
                    envelope = Envelope.from_headers(record.headers)
                    event = CATALOGUE.decode(envelope.type, record.value or b"")
                    seen.append(Seen((record.key or b"").decode(), envelope.id, event))
            if finished_at is None and done(seen):
                finished_at = loop.time() + quiet_s
    finally:
        await consumer.stop()
    return seen


def of_type(seen: list[Seen], kind: type[E]) -> list[E]:
    return [s.event for s in seen if isinstance(s.event, kind)]


async def test_the_kafka_courier_accepts_tracks_ignores_repeats_and_stops_on_cancel(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings()
    code = f"jd{unique}"
    await create_topics(settings, [], [courier_orders_topic(code), courier_events_topic(code)])
    tracked, cancelled = pickup_order(f"AS{unique}A"), pickup_order(f"AS{unique}B")
    cancel = PickupCancelRequestedV1(
        order_id=cancelled.order_id, case_id=cancelled.case_id, reason="customer"
    )
    knobs = CourierKnobs(latency_s=0.02, step_delay_s=0.3, seed=1)
    async with KafkaCourierSimulator(code, settings.kafka_bootstrap_servers, knobs) as courier:
        # The order twice (a re-send), then an order cancelled right away.
        sent = (tracked, tracked, cancelled, cancel)
        await publish(settings, [order_record(message, code) for message in sent])

        def done(seen: list[Seen]) -> bool:
            steps = [t for t in of_type(seen, CourierTrackingV1) if t.case_id == tracked.case_id]
            return len(steps) == len(JD_STEPS) and len(of_type(seen, CourierOrderAcceptedV1)) >= 2

        seen = await read_events(
            settings.kafka_bootstrap_servers, courier_events_topic(code), done, quiet_s=1.5
        )
    assert all(s.key == s.event.model_dump()["case_id"] for s in seen)  # keyed by case id
    accepted = {a.case_id: a for a in of_type(seen, CourierOrderAcceptedV1)}
    assert len(of_type(seen, CourierOrderAcceptedV1)) == 2  # the re-sent order changed nothing
    assert accepted[tracked.case_id].waybill_no.startswith(code.upper())
    assert courier.orders_received[tracked.order_id] == 2
    steps = [t for t in of_type(seen, CourierTrackingV1) if t.case_id == tracked.case_id]
    assert [t.raw_code for t in steps] == JD_STEPS
    assert len({t.courier_event_id for t in steps}) == len(JD_STEPS)
    assert {t.waybill_no for t in steps} == {accepted[tracked.case_id].waybill_no}
    # Cancelled before the courier came: accepted, then nothing more.
    assert not [t for t in of_type(seen, CourierTrackingV1) if t.case_id == cancelled.case_id]
    assert cancelled.order_id in courier.cancelled


async def test_the_kafka_courier_rejects_for_capacity_and_pushes_duplicates(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings()
    full, noisy = f"yd{unique}", f"jd{unique}"
    topics = [t(c) for c in (full, noisy) for t in (courier_orders_topic, courier_events_topic)]
    await create_topics(settings, [], topics)
    order = pickup_order(f"AS{unique}C")
    bootstrap = settings.kafka_bootstrap_servers
    async with (
        KafkaCourierSimulator(full, bootstrap, CourierKnobs(reject_rate=1.0, seed=2)),
        KafkaCourierSimulator(
            noisy, bootstrap, CourierKnobs(step_delay_s=0.1, duplicate_push_rate=1.0, seed=3)
        ),
    ):
        await publish(settings, [order_record(order, full), order_record(order, noisy)])
        refused = await read_events(bootstrap, courier_events_topic(full), bool, quiet_s=0.5)
        pushed = await read_events(
            bootstrap,
            courier_events_topic(noisy),
            lambda seen: len(of_type(seen, CourierTrackingV1)) == 2 * len(JD_STEPS),
        )
    (rejection,) = of_type(refused, CourierOrderRejectedV1)
    assert (rejection.reason, rejection.raw_code) == (CourierRejection.CAPACITY, "CAPACITY")
    steps = of_type(pushed, CourierTrackingV1)
    assert Counter(t.courier_event_id for t in steps) == {
        f"{steps[0].waybill_no}-{n}": 2 for n in range(1, 5)
    }
    tracking_ids = [s.ce_id for s in pushed if isinstance(s.event, CourierTrackingV1)]
    assert len(set(tracking_ids)) == len(tracking_ids)  # a re-push is a new message


async def test_the_sf_simulator_refuses_as_sf_does_and_the_client_reads_it() -> None:
    async with SfCourierSimulator("P1", "cw-1", knobs=SfKnobs(capacity_rate=1.0)) as busy:
        async with SfClient(busy.url, "P1", "cw-1") as client:
            assert await client.create_order(pickup_order("ASBUSY")) == SfCreateResult(
                rejection=CourierRejection.CAPACITY, raw_code="8177", detail="运力紧张,暂无法下单"
            )
        form = request_form(partner_id="P1", request_id="r", service_code=CREATE_ORDER,
                            timestamp="1", msg_data="{}", checkword="wrong")  # fmt: skip
        async with httpx.AsyncClient(timeout=2.0) as http:
            answer = (await http.post(busy.url, data=form)).json()
        assert answer["apiResultCode"] == "A1006"
    async with (
        SfCourierSimulator("P1", "cw-1", knobs=SfKnobs(out_of_hours=True)) as closed,
        SfClient(closed.url, "P1", "cw-1") as client,
    ):
        result = await client.create_order(pickup_order("ASLATE"))
        assert (result.rejection, result.raw_code) == (CourierRejection.OUT_OF_HOURS, "8096")
        assert not closed.created
    async with (
        SfCourierSimulator("P1", "cw-1", knobs=SfKnobs(rate_limit_per_s=2)) as strict,
        SfClient(strict.url, "P1", "cw-1") as client,
    ):
        results = await asyncio.gather(
            *(client.create_order(pickup_order(f"ASRATE{n}")) for n in range(4)),
            return_exceptions=True,
        )
        limited = [r for r in results if isinstance(r, httpx.HTTPStatusError)]
        assert limited
        assert {r.response.status_code for r in limited} == {429}


async def test_the_sf_gateway_creates_each_order_once_despite_faults_and_relays_routes(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings(max_attempts=12)
    code = f"sf{unique}"
    group, orders, events = (
        f"gateway-{code}",
        courier_orders_topic(code),
        courier_events_topic(code),
    )
    await create_topics(settings, [Subscription(group, (orders,))], [events])
    cases = [f"AS{unique.upper()}{n:03d}" for n in range(20)]
    knobs = SfKnobs(error_rate=0.3, timeout_rate=0.2, hang_s=1.5, step_delay_s=0.1,
                    duplicate_push_rate=0.5, seed=5)  # fmt: skip
    sink = KafkaSink(settings, client_id=f"test-webhook-{code}")
    declared = declare_gateway(settings, code)
    webhook = RoutePushReceiver(sink, declared=declared, checkword="cw-test", courier=code)
    async with sink, webhook:
        sf = SfCourierSimulator("P-TEST", "cw-test", webhook_url=webhook.url, knobs=knobs)
        async with sf:
            client = SfClient(sf.url, "P-TEST", "cw-test", timeout_s=1.0)
            service = build_gateway_service(settings, client, code)
            runtime = ServiceRuntime(service, settings, registry=CATALOGUE, resources=(client,))
            async with runtime:
                await publish(settings, [order_record(pickup_order(c), code) for c in cases])

                def done(seen: list[Seen]) -> bool:
                    routes: dict[str, set[str]] = defaultdict(set)
                    for tracking in of_type(seen, CourierTrackingV1):
                        routes[tracking.case_id].add(tracking.raw_code)
                    accepted = {a.case_id for a in of_type(seen, CourierOrderAcceptedV1)}
                    return accepted == set(cases) and all(
                        len(routes[c]) == len(SF_ROUTES) for c in cases
                    )

                seen = await read_events(
                    settings.kafka_bootstrap_servers, events, done, timeout_s=120, quiet_s=2.0
                )
        letters = await settle_and_read(
            settings.kafka_bootstrap_servers, dead_letter_topic(orders, group), quiet_s=0.5
        )
    assert not letters
    assert all(s.key == s.event.model_dump()["case_id"] for s in seen)
    accepted = of_type(seen, CourierOrderAcceptedV1)
    assert sorted(a.case_id for a in accepted) == cases  # exactly one acceptance per case
    assert not of_type(seen, CourierOrderRejectedV1)
    assert sf.created == Counter({pickup_order_id(c, Leg.INBOUND, 1): 1 for c in cases})
    assert sum(sf.requests.values()) > len(cases)  # the faults were hit
    assert sf.requests[SEARCH_ORDER]  # a create that timed out was found again as 8016
    waybills = {a.case_id: a.waybill_no for a in accepted}
    routes: dict[str, dict[str, str]] = defaultdict(dict)  # case -> route id -> opCode
    for tracking in of_type(seen, CourierTrackingV1):
        assert tracking.waybill_no == waybills[tracking.case_id]
        assert routes[tracking.case_id].setdefault(
            tracking.courier_event_id, tracking.raw_code
        ) == (tracking.raw_code)  # a duplicate push repeats the same route id and code
    assert all(sorted(routes[c].values()) == sorted(SF_ROUTES) for c in cases)
    relayed = len(of_type(seen, CourierTrackingV1))
    assert relayed == sf.pushes > len(cases) * len(SF_ROUTES)  # duplicates were passed on
