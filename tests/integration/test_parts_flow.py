"""On the real broker: spare parts short, then arriving (repair resumes), or never (replacement)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from case_flow import Timeline, flow_settings, quick_couriers
from kafka_io import publish

from dispatch.partners import load_partners
from hub.core.outbound import event_record
from hub.core.topics import STOREFRONT_REQUESTS, center_events_topic
from hub.messages.common import Channel, Fault
from hub.messages.parts import reservation_id_for
from hub.messages.repair import CenterDiagnosedV1, Resolution
from intake.domain import case_id_for
from lab.local_stack import LocalStack
from lab.samples import sample_request
from lab.simulators.parts_supplier import Stock, SupplierKnobs
from lab.simulators.repair_center import PARTS
from tracker.snapshots import read_snapshots
from tracker.stats import compute_stats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from hub.core.settings import HubSettings
    from hub.messages.storefront import AfterSalesRequestedV3
    from hub.messages.tracker import CaseStatusV1
    from tracker.stats import Stats

pytestmark = pytest.mark.integration


def request(number: int, fault: str, category: str = "phone") -> AfterSalesRequestedV3:
    """A repair of a `category` item with `fault`, its customer reachable by SMS."""
    base = sample_request(number)
    customer = base.customer.model_copy(update={"channels": (Channel.SMS,)})
    item = base.item.model_copy(update={"category": category, "price": Decimal("4999.00")})
    fault_ = Fault(code=fault, description="客户描述")
    return base.model_copy(update={"customer": customer, "item": item, "fault": fault_})


REQUESTS = {
    "restock": request(460, "screen_cracked"),
    "never": request(461, "battery_swelling"),
    "refused": request(462, "camera_blurry"),
    # A fridge: visited, then repaired at the HTTP center, which hears of its parts by API.
    "http": request(463, "compressor_noise", category="large_appliance"),
}
IDS = {name: case_id_for(r.request_id) for name, r in REQUESTS.items()}
MAX_WAIT = timedelta(seconds=8)
"""The supplier's longest wait, in seconds here: the `never` case is replaced after it."""


class Run:
    def __init__(
        self,
        stack: LocalStack,
        timeline: Timeline,
        snapshots: dict[str, CaseStatusV1],
        stats: Stats,
    ) -> None:
        self.stack = stack
        self.timeline = timeline
        self.snapshots = snapshots
        self.stats = stats


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    settings = flow_settings(kafka_bootstrap, tmp_path_factory.mktemp("parts-stack"))
    partners = quick_couriers(load_partners())
    table = partners.model_copy(
        update={
            "parts_suppliers": tuple(
                s.model_copy(update={"max_wait": MAX_WAIT}) for s in partners.parts_suppliers
            ),
        }
    )
    (screen,) = PARTS["screen_cracked"]
    battery, _adhesive = PARTS["battery_swelling"]
    (camera,) = PARTS["camera_blurry"]
    knobs = SupplierKnobs(
        stock={
            screen.part_no: Stock.RESTOCK,
            battery.part_no: Stock.SHORTAGE,
            camera.part_no: Stock.FAIL,
        },
        restock_after_s=1.5,
    )
    stack = LocalStack(settings, table, parts_knobs=knobs)
    timeline = Timeline()
    async with stack:
        follower = asyncio.create_task(timeline.follow(kafka_bootstrap))
        try:
            await publish(settings, [
                event_record(STOREFRONT_REQUESTS, r, key=r.request_id, source="urn:storefront:test")
                for r in REQUESTS.values()
            ])  # fmt: skip
            # While the `never` case waits for its parts, the center's diagnosis comes again:
            # redelivered (same id) and re-sent (new id). Neither may reserve a second time.
            never = IDS["never"]
            await timeline.wait(never, "parts.shortage", timeout_s=90)
            diagnosis = CenterDiagnosedV1(
                case_id=never, fault_type="battery_swelling", in_warranty=True,
                resolution=Resolution.REPAIR, parts=PARTS["battery_swelling"],
            )  # fmt: skip
            await publish(settings, [
                event_record(center_events_topic("hz"), diagnosis, key=never,
                             source="urn:partner:center-hz", event_id=event_id)
                for event_id in (f"center-hz-{never}-diagnosis", "center-hz-resent-parts")
            ])  # fmt: skip
            for case_id in IDS.values():
                await timeline.wait(case_id, "case.closed", timeout_s=120)
            await asyncio.sleep(2)  # time for a wrong second reservation or cancellation
            snapshots = await _closed_snapshots(settings)
            stats = compute_stats(s for s in snapshots.values() if s.case_id in IDS.values())
            yield Run(stack, timeline, snapshots, stats)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)


async def _closed_snapshots(settings: HubSettings) -> dict[str, CaseStatusV1]:
    """The tracker's snapshots once it has folded both cases' closing."""
    async with asyncio.timeout(30):
        while True:
            snapshots = await read_snapshots(settings)
            if all(
                case_id in snapshots and snapshots[case_id].status == "closed"
                for case_id in IDS.values()
            ):
                return snapshots
            await asyncio.sleep(0.5)


def test_a_shortage_waits_for_parts_and_the_parts_arriving_resume_the_repair(run: Run) -> None:
    case_id = IDS["restock"]
    kinds = [k.removeprefix("aftersales.").rsplit(".v", 1)[0] for k in run.timeline.kinds(case_id)]
    path = [k for k in kinds if k.startswith(("repair.", "parts.", "return.", "case.closed"))]
    assert path == [
        "repair.item-received", "repair.diagnosed", "parts.requested", "parts.shortage",
        "parts.reserved", "repair.work-completed", "return.requested", "case.closed",
    ]  # fmt: skip
    (reserved,) = run.timeline.of(case_id, "parts.reserved")
    assert reserved["after_shortage"] is True
    (completed,) = run.timeline.of(case_id, "repair.work-completed")
    assert completed["parts_used"] == ["LCD-X1-OLED"]
    (closed,) = run.timeline.of(case_id, "case.closed")
    assert closed["outcome"] == "repaired"
    statuses = [entry.status for entry in run.snapshots[case_id].timeline]
    assert "waiting_for_parts" in statuses
    assert statuses.index("waiting_for_parts") < statuses.index("return_shipping")
    clock = next(c for c in run.snapshots[case_id].clocks if c.clock == "parts")
    assert clock.started_at is not None
    assert clock.stopped_at is not None


def test_past_the_wait_the_hub_replaces_the_item_and_cancels_the_reservation(run: Run) -> None:
    case_id = IDS["never"]
    (given_up,) = run.timeline.of(case_id, "parts.given-up")
    assert given_up["reason"] == "wait_exceeded"
    (replacement,) = run.timeline.of(case_id, "replacement.issued")
    assert replacement["sku"] == REQUESTS["never"].item.sku
    assert run.timeline.of(case_id, "repair.work-completed") == []  # the center was withdrawn
    assert run.timeline.of(case_id, "parts.reserved") == []
    (closed,) = run.timeline.of(case_id, "case.closed")
    assert closed["outcome"] == "replaced"
    supplier = run.stack.suppliers["bjzx"]
    assert supplier.cancelled == {reservation_id_for(case_id)}


def test_a_refused_reservation_is_replaced_at_once_without_waiting(run: Run) -> None:
    case_id = IDS["refused"]
    (given_up,) = run.timeline.of(case_id, "parts.given-up")
    assert (given_up["reason"], given_up["detail"]) == (
        "rejected",
        "discontinued: 该型号备件已停产",
    )
    assert run.timeline.of(case_id, "parts.shortage") == []
    (closed,) = run.timeline.of(case_id, "case.closed")
    assert closed["outcome"] == "replaced"
    assert "waiting_for_parts" not in {e.status for e in run.snapshots[case_id].timeline}


def test_an_http_center_hears_of_its_parts_through_the_gateway(run: Run) -> None:
    case_id = IDS["http"]
    (reserved,) = run.timeline.of(case_id, "parts.reserved")
    assert reserved["after_shortage"] is False
    (completed,) = run.timeline.of(case_id, "repair.work-completed")
    assert completed["parts_used"] == ["CMP-R1-220V"]
    assert run.timeline.of(case_id, "case.closed")[0]["outcome"] == "repaired"
    assert run.stack.http_center.workshop.parts[case_id].result() is True


def test_each_case_reserves_its_parts_exactly_once_despite_a_redelivered_diagnosis(
    run: Run,
) -> None:
    supplier = run.stack.suppliers["bjzx"]
    assert supplier.requests == Counter(
        {reservation_id_for(case_id): 1 for case_id in IDS.values()}
    )
    for case_id in IDS.values():
        counts = Counter(kind for kind, _ in run.timeline.events[case_id])
        assert counts["aftersales.parts.requested.v1"] == 1, case_id
        assert counts["aftersales.repair.diagnosed.v1"] == 1, case_id
    assert len(run.timeline.of(IDS["never"], "replacement.issued")) == 1


def test_the_customer_hears_of_the_shortage_and_of_the_parts_arriving(run: Run) -> None:
    sms = run.stack.sms.delivered
    restock, never = IDS["restock"], IDS["never"]
    assert {key.split(":")[1] for key in sms if key.startswith(restock)} >= {
        "parts_shortage", "parts_arrived", "repaired", "closed",
    }  # fmt: skip
    assert {key.split(":")[1] for key in sms if key.startswith(never)} >= {
        "parts_shortage", "replaced",
    }  # fmt: skip
    assert f"{never}:parts_arrived:sms" not in sms
    text = sms[f"{restock}:parts_shortage:sms"]["text"]
    assert "维修所需备件暂时缺货" in text


def test_hub_stats_counts_the_parts_path(run: Run) -> None:
    parts = run.stats.parts
    assert (parts.reservations, parts.shortages, parts.waiting, parts.replaced) == (4, 2, 0, 2)
    assert parts.wait_p50_s is not None
    assert parts.wait_p90_s is not None
    assert parts.wait_p50_s <= parts.wait_p90_s
