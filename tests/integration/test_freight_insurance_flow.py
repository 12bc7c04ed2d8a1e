"""On the real broker: an insured return's freight claimed once after pickup, whatever repeats."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer
from case_flow import flow_settings, quick_couriers
from kafka_io import publish, settle_and_read

from dispatch.partners import load_partners
from hub.core.envelope import Envelope
from hub.core.outbound import event_record
from hub.core.topics import CASES, NOTIFICATION_REQUESTS, STOREFRONT_REQUESTS
from hub.messages.cases import TrackingUpdatedV1
from hub.messages.common import FreightInsurance, RequestType
from hub.messages.insurance import FreightClaimFiledV1, freight_claim_id
from intake.domain import case_id_for
from lab.local_stack import LocalStack
from lab.samples import sample_request
from lab.simulators.insurer import InsurerKnobs
from tracker.snapshots import read_snapshots
from tracker.stats import compute_stats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from hub.core.outbound import OutRecord
    from hub.core.settings import HubSettings
    from hub.messages.storefront import AfterSalesRequestedV3

pytestmark = pytest.mark.integration

CAP = Decimal("15.00")


def request(
    number: int, kind: RequestType, insurance: FreightInsurance | None
) -> AfterSalesRequestedV3:
    base = sample_request(number, request_type=kind, freight_insurance=insurance)
    # Bought two days ago: a no-reason return is still open.
    bought = (datetime.now(UTC) - timedelta(days=2)).date()
    return base.model_copy(update={"item": base.item.model_copy(update={"purchase_date": bought})})


REQUESTS = {
    "approved": request(
        900,
        RequestType.RETURN,
        FreightInsurance(insurer="huatai", policy_no="YF-900", max_claim=CAP),
    ),
    "rejected": request(
        901,
        RequestType.EXCHANGE,
        FreightInsurance(insurer="zhongan", policy_no="YF-EXPIRED", max_claim=Decimal("8.00")),
    ),
    # Insured, but a repair's freight is the hub's; and a return bought without the insurance.
    "repair": request(
        902,
        RequestType.REPAIR,
        FreightInsurance(insurer="huatai", policy_no="YF-902", max_claim=CAP),
    ),
    "uninsured": request(903, RequestType.RETURN, None),
}
IDS = {name: case_id_for(r.request_id) for name, r in REQUESTS.items()}
INSURED = {"approved": "huatai", "rejected": "zhongan"}


class Timeline:
    """Case events as they arrive, with their envelopes, by case id."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[Envelope, dict[str, Any]]]] = defaultdict(list)

    def of(self, case_id: str, ce_type: str) -> list[tuple[Envelope, dict[str, Any]]]:
        return [(env, body) for env, body in self.events[case_id] if env.type == ce_type]

    async def follow(self, bootstrap: str) -> None:
        consumer = AIOKafkaConsumer(
            CASES, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            while True:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    for record in batch:
                        body = json.loads(record.value or b"{}")
                        if body.get("case_id") in IDS.values():
                            envelope = Envelope.from_headers(record.headers)
                            self.events[body["case_id"]].append((envelope, body))
        finally:
            await consumer.stop()

    async def wait(self, case_id: str, ce_type: str, timeout_s: float = 90) -> None:
        async with asyncio.timeout(timeout_s):
            while not self.of(case_id, ce_type):  # noqa: ASYNC110 - a polled topic
                await asyncio.sleep(0.1)


class Run:
    def __init__(
        self,
        stack: LocalStack,
        timeline: Timeline,
        calls_before_repeats: dict[str, int],
        notifications: list[dict[str, Any]],
        settings: HubSettings,
    ) -> None:
        self.stack = stack
        self.timeline = timeline
        self.calls_before_repeats = calls_before_repeats
        self.notifications = notifications
        self.settings = settings


def repeats(timeline: Timeline, case_id: str) -> list[OutRecord]:
    """The claim redelivered (same id), then the claim and the pickup again under new ids."""
    (filed_env, filed), *_ = timeline.of(case_id, "aftersales.freight-claim.filed.v1")
    picked = next(
        (env, body)
        for env, body in timeline.of(case_id, "aftersales.tracking.updated.v1")
        if body["leg"] == "inbound" and body["status"] == "picked_up"
    )
    claim = FreightClaimFiledV1.model_validate(filed)
    pickup = TrackingUpdatedV1.model_validate(picked[1])
    again = [
        (claim, filed_env.source, filed_env.id),
        (claim, filed_env.source, f"{filed_env.id}-again"),
        (pickup, picked[0].source, f"{picked[0].id}-again"),
    ]
    return [
        event_record(CASES, event, key=case_id, source=source, event_id=event_id)
        for event, source, event_id in again
    ]


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    settings = flow_settings(
        kafka_bootstrap, tmp_path_factory.mktemp("insurance-stack"), inline_deadline_s=5.0
    )
    table = quick_couriers(load_partners())
    # Every claim's first call fails (503); the next is settled but answered after the client
    # gave up (2 s): only a later call, under the same key, hears the answer.
    knobs = InsurerKnobs(
        fail_first=1, timeout_rate=1.0, hang_s=3.0, reject_policies=frozenset({"YF-EXPIRED"})
    )
    stack = LocalStack(settings, table, insurer_knobs=knobs)
    timeline = Timeline()
    async with stack:
        follower = asyncio.create_task(timeline.follow(kafka_bootstrap))
        try:
            await publish(settings, [
                event_record(STOREFRONT_REQUESTS, r, key=r.request_id, source="urn:storefront:test")
                for r in REQUESTS.values()
            ])  # fmt: skip
            for name in INSURED:
                await timeline.wait(IDS[name], "aftersales.freight-claim.settled.v1")
            for name in ("repair", "uninsured"):
                await timeline.wait(IDS[name], "aftersales.repair.item-received.v1")
            calls = {
                name: stack.insurers[code].calls[freight_claim_id(IDS[name])]
                for name, code in INSURED.items()
            }
            await publish(
                settings, [record for name in INSURED for record in repeats(timeline, IDS[name])]
            )
            notifications = [
                json.loads(record.value or b"{}")
                for record in await settle_and_read(
                    kafka_bootstrap, NOTIFICATION_REQUESTS, quiet_s=4
                )
            ]
            yield Run(stack, timeline, calls, notifications, settings)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)


def test_the_insurer_settled_exactly_one_claim_per_insured_case(run: Run) -> None:
    for name, code in INSURED.items():
        claim_id = freight_claim_id(IDS[name])
        insurer = run.stack.insurers[code]
        assert insurer.settled == {claim_id: 1}
        # A failed call, one settled whose answer was lost, one answered from the first answer.
        assert run.calls_before_repeats[name] >= 3
        assert insurer.replayed[claim_id] >= 1
        # The redelivered and re-sent records asked the insurer nothing more.
        assert insurer.calls[claim_id] == run.calls_before_repeats[name]


def test_one_claim_and_one_outcome_event_per_insured_case(run: Run) -> None:
    for name, code in INSURED.items():
        case_id = IDS[name]
        filed = [
            body
            for env, body in run.timeline.of(case_id, "aftersales.freight-claim.filed.v1")
            if not env.id.endswith("-again") and env.source.endswith("/insurance")
        ]
        settled = [
            body for _, body in run.timeline.of(case_id, "aftersales.freight-claim.settled.v1")
        ]
        assert len(settled) == 1, settled
        # The claim on the broker: the original and its redelivery carry one id.
        assert len({json.dumps(body, sort_keys=True) for body in filed}) == 1
        claim = filed[0]
        freight = load_partners().courier(claim["courier"]).price
        cap = REQUESTS[name].freight_insurance.max_claim  # type: ignore[union-attr]
        assert Decimal(claim["amount"]) == min(freight, cap)
        assert (claim["insurer"], claim["claim_id"]) == (code, freight_claim_id(case_id))
        pickups = [
            body for _, body in run.timeline.of(case_id, "aftersales.tracking.updated.v1")
            if body["leg"] == "inbound" and body["status"] == "picked_up"
        ]  # fmt: skip
        assert claim["waybill_no"] == pickups[0]["waybill_no"]
    (approved,) = run.timeline.of(IDS["approved"], "aftersales.freight-claim.settled.v1")
    assert approved[1]["outcome"] == "approved"
    assert Decimal(approved[1]["paid"]) == Decimal(approved[1]["claimed"]) > 0
    (rejected,) = run.timeline.of(IDS["rejected"], "aftersales.freight-claim.settled.v1")
    assert (rejected[1]["outcome"], rejected[1]["reason_code"]) == ("rejected", "policy_expired")
    assert Decimal(rejected[1]["paid"]) == 0


def test_no_claim_for_a_repair_or_an_uninsured_return(run: Run) -> None:
    for name in ("repair", "uninsured"):
        assert run.timeline.of(IDS[name], "aftersales.freight-claim.filed.v1") == []
        for insurer in run.stack.insurers.values():
            assert freight_claim_id(IDS[name]) not in insurer.calls


def test_the_customer_hears_the_outcome_once_per_channel(run: Run) -> None:
    for name in INSURED:
        case_id = IDS[name]
        milestone = f"freight_claim_{name}"
        told = [
            n for n in run.notifications if n["case_id"] == case_id and n["milestone"] == milestone
        ]
        channels = REQUESTS[name].customer.channels
        assert sorted(n["channel"] for n in told) == sorted(c.value for c in channels)
        assert f"{case_id}:{milestone}:sms" in run.stack.sms.delivered
    (sms,) = [
        n
        for n in run.notifications
        if n["dedupe_key"] == f"{IDS['approved']}:freight_claim_approved:sms"
    ]
    assert "退货运费险已理赔" in sms["body"]


async def test_the_tracker_shows_the_claim_and_counts_it(run: Run) -> None:
    snapshots = await read_snapshots(run.settings)
    ours = [snapshots[case_id] for case_id in IDS.values()]
    approved = snapshots[IDS["approved"]]
    kinds = [entry.kind for entry in approved.timeline]
    assert kinds.count("freight-claim.filed") == 1
    assert kinds.count("freight-claim.settled") == 1
    assert approved.freight_claim is not None
    assert approved.freight_claim.outcome == "approved"
    figures = compute_stats(ours).freight_claims
    assert (figures.claims, figures.approved, figures.rejected, figures.pending) == (2, 1, 1, 0)
    assert Decimal(figures.paid) == approved.freight_claim.paid
