"""`make demo`: requests travel through intake, dispatch and two couriers to the repair center."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from aiokafka import AIOKafkaConsumer

from dispatch.partners import load_partners
from hub.core.connection import kafka_security
from hub.core.envelope import Envelope
from hub.core.ops_http import OpsServer
from hub.core.outbound import event_record
from hub.core.service import KafkaSink
from hub.core.topics import CASES, STOREFRONT_REQUESTS
from hub.messages.common import FreightInsurance, RequestType
from hub.messages.storefront import ComplaintFiledV1, RatingGivenV1
from intake.domain import case_id_for
from lab.local_stack import LocalStack
from lab.samples import sample_request, sample_request_v1, sample_request_v2
from lab.simulators.kafka_courier import CourierKnobs
from lab.simulators.parts_supplier import Stock, SupplierKnobs
from lab.simulators.repair_center import CenterKnobs
from lab.simulators.sf_courier import SfKnobs
from tracker.sla import load_sla
from tracker.snapshots import read_scorecards, read_snapshots
from tracker.stats import Stats, compute_stats

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiokafka import ConsumerRecord

    from hub.core.registry import Event
    from hub.core.settings import HubSettings
    from hub.messages.scores import CourierScoredV1

FINISHED = {
    "aftersales.case.rejected.v1",
    "aftersales.case.exception.v1",
    "aftersales.case.closed.v1",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a case's timeline."""

    at: datetime
    what: str
    detail: str


def demo_requests() -> list[Event]:
    """A repair, refunds, a replacement, a v1 request, a rejection, SF-only, parts, damage."""
    xinjiang = sample_request_v2(5)
    xinjiang = xinjiang.model_copy(
        update={"address": xinjiang.address.model_copy(
            update={"province": "新疆维吾尔自治区", "city": "乌鲁木齐市", "district": "天山区",
                    "street": "解放北路 88 号"})},
    )  # fmt: skip
    expired = sample_request_v2(6)
    old_item = expired.item.model_copy(update={"purchase_date": date(2019, 3, 1)})
    expired = expired.model_copy(update={"item": old_item})
    valuable = sample_request_v2(7)
    valuable = valuable.model_copy(
        update={"item": valuable.item.model_copy(update={"price": Decimal("12999.00")})}
    )
    # A trusted customer's return, bought two days ago: refunded when the courier picks it up.
    trusted = sample_request(8, request_type=RequestType.RETURN, trusted_customer=True)
    recent = (datetime.now(UTC) - timedelta(days=2)).date()
    trusted = trusted.model_copy(
        update={"item": trusted.item.model_copy(update={"purchase_date": recent})}
    )
    # A cracked screen: the part is short at the supplier, then comes in (waiting for parts).
    cracked = sample_request_v2(9)
    cracked = cracked.model_copy(update={
        "item": cracked.item.model_copy(update={"category": "phone"}),
        "fault": cracked.fault.model_copy(update={"code": "screen_cracked"})})  # fmt: skip
    # An exchange whose order carries return-freight insurance: its pickup claims the freight.
    policy = FreightInsurance(insurer="huatai", policy_no="YF-00000011", max_claim=Decimal("15.00"))
    insured = sample_request(11, request_type=RequestType.EXCHANGE, freight_insurance=policy)
    return [
        sample_request_v2(3),
        sample_request_v1(4),
        xinjiang,
        expired,
        valuable,
        trusted,
        cracked,
        DAMAGED,
        insured,
    ]


DAMAGED = sample_request_v2(10)
"""Its parcel arrives at the center damaged in transit: a claim against the courier."""


TEMPLATES = {
    "case.opened": "mode={service_mode} in_warranty={in_warranty}",
    "case.rejected": "{reason_code}: {reason}",
    "case.exception": "{code}: {reason}",
    "pickup.requested": "{courier} attempt {attempt} ({reason})",
    "pickup.accepted": "{courier} waybill {waybill_no}",
    "pickup.failed": "{courier} {code}: {reason}",
    "pickup.cancelled": "{courier}: {reason}",
    "tracking.updated": "{leg:<8} {status:<17} {courier} {raw_code} {description} @{location}",
    "repair.item-received": "serial {serial_number} matches={serial_matches}",
    "repair.diagnosed": "{fault_type}: {resolution} (in warranty: {in_warranty})",
    "repair.quote-issued": "¥{amount}, waiting for the customer",
    "repair.work-completed": "repaired={repaired} parts={parts_used}",
    "refund.requested": "¥{amount} to order {order_id}",
    "refund.clawback-requested": "take back ¥{amount}: {reason_code}",
    "replacement.issued": "new {sku}",
    "return.requested": "back to the customer",
    "onsite.visit-scheduled": "technician booked",
    "onsite.visit-reported": "{outcome} {notes}",
    "case.closed": "{outcome}",
    "parts.requested": "{reservation_id} at {supplier}",
    "parts.shortage": "waiting for parts, expected {expected_on}",
    "parts.reserved": "reserved (after a shortage: {after_shortage}), repair resumes",
    "parts.given-up": "{reason}: {detail}",
    "damage.claimed": "against {courier} waybill {waybill_no}, ¥{declared_value}, {evidence_ref}",
    "freight-claim.filed": "{claim_id} ¥{amount} from {insurer} ({courier} {waybill_no})",
    "freight-claim.settled": "{outcome} ¥{paid} {reason}",
}


def describe(kind: str, body: dict[str, Any]) -> tuple[str, str]:
    """A short label and detail for one case event."""
    short = kind.removeprefix("aftersales.").rsplit(".v", 1)[0]
    detail = TEMPLATES.get(short, "").format_map(body)
    return short, f"express (极速退款) at pickup: {detail}" if body.get("express") else detail


@dataclass(frozen=True, slots=True)
class DemoResult:
    """Each case's timeline, and the messages each customer received."""

    timelines: dict[str, list[Step]]
    messages: dict[str, list[str]]
    stats: Stats | None = None
    """The tracker's statistics over the demo's cases."""
    scorecards: dict[str, CourierScoredV1] = field(default_factory=dict)
    """Each courier's latest scorecard, what dispatch ranks by."""


async def run_demo(
    settings: HubSettings, *, say: Callable[[str], None], timeout_s: float = 120.0
) -> DemoResult:
    """Run the local stack, publish the demo requests, and follow every case to its end."""
    requests = demo_requests()
    partners = load_partners()
    # Deadlines short enough to watch a silent courier lose its order during the demo.
    table = partners.model_copy(update={"couriers": tuple(
        c.model_copy(update={"accept_deadline": timedelta(seconds=10 if c.code == "sf" else 3)})
        for c in partners.couriers
    )})  # fmt: skip
    # SLA thresholds in seconds, so that the tracker escalates slow cases while you watch.
    sla = load_sla()
    quick = sla.default.model_copy(
        update={
            "repair": (timedelta(seconds=2), timedelta(seconds=30)),
            "turnaround": (timedelta(seconds=3), timedelta(seconds=30)),
        }
    )
    stack = LocalStack(
        settings, table,
        sf_knobs=SfKnobs(error_rate=0.2, step_delay_s=0.3, duplicate_push_rate=0.3, seed=1),
        courier_knobs={"jd": CourierKnobs(reject_rate=0.25, step_delay_s=0.3, seed=3)},
        parts_knobs=SupplierKnobs(stock={"LCD-X1-OLED": Stock.RESTOCK}, restock_after_s=2.0),
        center_knobs=CenterKnobs(damaged_cases=frozenset({case_id_for(DAMAGED.request_id)})),
        sla=sla.model_copy(update={"default": quick, "categories": {}}),
    )  # fmt: skip
    case_ids = {case_id_for(getattr(r, "request_id", "")): r for r in requests}
    timelines: dict[str, list[Step]] = {case_id: [] for case_id in case_ids}
    async with stack, contextlib.AsyncExitStack() as serving:
        say(
            f"services: intake, dispatch, gateway-sf, repair, notify, tracker; couriers: jd on "
            f"Kafka, sf on {stack.sf.url}"
        )
        http: OpsServer | None = None
        if settings.http_port:  # HUB_HTTP_PORT: the demo's services on /metrics, as `hub run`
            http = await serving.enter_async_context(OpsServer(settings, stack.runtimes))
            say(f"metrics on http://127.0.0.1:{http.port}/metrics (and /healthz, /readyz)")
        await _publish(settings, requests, say)
        await _follow(settings, timelines, timeout_s)
        await _rate_and_complain(settings, timelines, case_ids, say)
        messages = await _messages(stack, timelines)
        stats = await _stats(settings, set(case_ids))
        scorecards = await read_scorecards(settings)
        if http is not None:
            # Under the working directory: the demo's own state lives in a temporary one.
            await _save_scrape(http, Path(".hub") / "demo-metrics.txt", say)
    return DemoResult(timelines, messages, stats, scorecards)


async def _save_scrape(http: OpsServer, path: Path, say: Callable[[str], None]) -> None:
    """Keep the last /metrics scrape of the run, to read after the services are gone."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{http.port}/metrics")
    path.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(path.write_text, response.text)
    say(f"last /metrics scrape saved to {path}")


async def _rate_and_complain(
    settings: HubSettings,
    timelines: dict[str, list[Step]],
    requests: dict[str, Event],
    say: Callable[[str], None],
) -> None:
    """The first closed case gets five stars; another case a complaint (to arbitration)."""
    ended = [case_id for case_id, steps in timelines.items() if steps[-1:]]
    closed = [case_id for case_id in ended if timelines[case_id][-1].what == "case.closed"]
    if not closed:
        return
    now = datetime.now(UTC)
    rated = requests[closed[0]]
    feedback: list[Event] = [RatingGivenV1(
        request_id=getattr(rated, "request_id", ""),
        order_item_id=getattr(rated, "order_item_id", ""),
        score=5, comment="修得又快又好", rated_at=now)]  # fmt: skip
    if len(closed) > 1:
        other = requests[closed[1]]
        feedback.append(ComplaintFiledV1(
            request_id=getattr(other, "request_id", ""),
            order_item_id=getattr(other, "order_item_id", ""),
            complaint="取件比约定晚了两天", filed_at=now))  # fmt: skip
    await _publish(settings, feedback, say)


async def _publish(settings: HubSettings, events: list[Event], say: Callable[[str], None]) -> None:
    """Publish storefront events in order, each keyed by its request id."""
    sink = KafkaSink(settings, client_id="demo-storefront")
    await sink.start()
    try:
        for event in events:
            request_id = getattr(event, "request_id", "")
            await sink.send([event_record(STOREFRONT_REQUESTS, event, key=request_id,
                                          source="urn:storefront:demo")])  # fmt: skip
            say(f"storefront published {event.ce_type()} {request_id}")
    finally:
        await sink.stop()


async def _stats(settings: HubSettings, case_ids: set[str]) -> Stats:
    """The tracker's figures over the demo's cases, once it has recorded the rating."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(15):
            while True:
                snapshots = await read_snapshots(settings)
                ours = [s for s in snapshots.values() if s.case_id in case_ids]
                if any(s.rating for s in ours) and any(s.in_arbitration for s in ours):
                    break
                await asyncio.sleep(0.5)
    snapshots = await read_snapshots(settings)
    return compute_stats(s for s in snapshots.values() if s.case_id in case_ids)


async def _messages(stack: LocalStack, timelines: dict[str, list[Step]]) -> dict[str, list[str]]:
    """The texts and pushes each customer got, once the closing ones have arrived."""
    closed = {
        case_id
        for case_id, steps in timelines.items()
        if steps[-1:] and steps[-1].what == "case.closed"
    }
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            while not {f"{case_id}:closed:sms" for case_id in closed} <= set(stack.sms.delivered):  # noqa: ASYNC110 - a polled sink
                await asyncio.sleep(0.2)
    messages: dict[str, list[str]] = {case_id: [] for case_id in timelines}
    for channel, sink in (("sms", stack.sms), ("push", stack.push)):
        for key, body in sink.delivered.items():
            messages.setdefault(key.split(":")[0], []).append(f"{channel:<4} {body['text']}")
    return messages


async def _follow(
    settings: HubSettings, timelines: dict[str, list[Step]], timeout_s: float
) -> None:
    consumer = AIOKafkaConsumer(
        CASES,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        **kafka_security(settings),
    )
    await consumer.start()
    finished: set[str] = set()
    try:
        async with asyncio.timeout(timeout_s):
            while finished < set(timelines):
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    for record in batch:
                        envelope = Envelope.from_headers(record.headers)
                        body = json.loads(record.value or b"{}")
                        if body.get("case_id") not in timelines:
                            continue
                        what, detail = describe(envelope.type, body)
                        timelines[body["case_id"]].append(Step(record_time(record), what, detail))
                        if envelope.type in FINISHED:
                            finished.add(body["case_id"])
    except TimeoutError:
        pass
    finally:
        await consumer.stop()


def record_time(record: ConsumerRecord[bytes, bytes]) -> datetime:
    """When the broker took the record."""
    return datetime.fromtimestamp(record.timestamp / 1000).astimezone()
