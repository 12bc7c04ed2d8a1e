"""Express refund (极速退款): the policy, the repair decisions, the tracker, the messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from tracker_cases import tracking

from dispatch.partners import load_partners
from hub.messages.cases import CaseExceptionRaisedV1, CaseOpenedV1, TrackingStatus
from hub.messages.common import RequestType
from hub.messages.courier import Leg
from hub.messages.repair import (
    CaseClosedV1,
    CenterDiagnosedV1,
    CenterItemReceivedV1,
    ClawbackReason,
    DiagnosisCompletedV1,
    ItemReceivedV1,
    NotificationRequestedV1,
    RefundClawbackRequestedV1,
    RefundRequestedV1,
    RepairTicketV1,
    Resolution,
)
from hub.messages.tracker import ExpressRefundState
from intake.domain import decide
from lab.samples import sample_request
from notify.domain import Audience, plan
from repair import domain
from repair.refund_policy import (
    ExpressRefundPolicy,
    express_refund_eligibility,
    load_refund_policy,
)
from tracker.domain import CaseRecord, Status, business_time, fold
from tracker.sla import load_sla
from tracker.stats import compute_stats

if TYPE_CHECKING:
    from pathlib import Path

    from hub.core.handler import Decision, Emit
    from hub.core.registry import Event

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
POLICY = ExpressRefundPolicy(
    request_types=frozenset({RequestType.RETURN, RequestType.EXCHANGE}),
    max_amount=Decimal("8000.00"),
    categories={"phone": Decimal("6000.00"), "laptop": Decimal("9000.00")},
)
TABLE = load_partners()


def opened(
    number: int = 0,
    *,
    request_type: RequestType = RequestType.RETURN,
    trusted: bool = True,
    price: str | None = None,
) -> CaseOpenedV1:
    """A case opened by intake; a return bought two days ago (inside the 7-day window)."""
    request = sample_request(number, now=NOW, request_type=request_type, trusted_customer=trusted)
    changes: dict[str, object] = {"purchase_date": (NOW - timedelta(days=2)).date()}
    if price is not None:
        changes["price"] = Decimal(price)
    request = request.model_copy(update={"item": request.item.model_copy(update=changes)})
    (emit,) = decide(request, None, NOW).emits
    assert isinstance(emit.event, CaseOpenedV1)
    return emit.event


def eligibility(**changes: object) -> tuple[bool, str]:
    facts: dict[str, object] = {
        "trusted_customer": True,
        "request_type": RequestType.RETURN,
        "category": "phone",
        "amount": Decimal("4999.00"),
        **changes,
    }
    verdict = express_refund_eligibility(POLICY, **facts)  # type: ignore[arg-type]
    return verdict.eligible, verdict.reason


# --- the policy ----------------------------------------------------------------------------
def test_a_trusted_return_or_exchange_within_the_limits_is_refunded_at_pickup() -> None:
    assert eligibility() == (True, "trusted return of phone, ¥4999.00")
    assert eligibility(request_type=RequestType.EXCHANGE)[0]
    assert eligibility(amount=Decimal("6000.00"))[0]  # the limit itself is allowed


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"trusted_customer": False}, "the storefront does not mark the customer as trusted"),
        ({"request_type": RequestType.REPAIR}, "no express refund for a repair"),
        ({"category": "large_appliance"}, "no express refund for category large_appliance"),
        ({"amount": Decimal("6000.01")}, "¥6000.01 is above the phone limit ¥6000.00"),
        (
            {"category": "laptop", "amount": Decimal("8500.00")},
            "¥8500.00 is above the overall limit ¥8000.00",
        ),
    ],
)
def test_the_policy_refuses_with_a_reason(changes: dict[str, object], reason: str) -> None:
    assert eligibility(**changes) == (False, reason)


def test_a_switched_off_policy_refunds_nobody_at_pickup() -> None:
    off = POLICY.model_copy(update={"enabled": False})
    verdict = express_refund_eligibility(
        off,
        trusted_customer=True,
        request_type=RequestType.RETURN,
        category="phone",
        amount=Decimal("1.00"),
    )
    assert (verdict.eligible, verdict.reason) == (False, "express refunds are switched off")


def test_the_shipped_policy_and_an_operators_file(tmp_path: Path) -> None:
    shipped = load_refund_policy()
    assert shipped.request_types == {RequestType.RETURN, RequestType.EXCHANGE}
    assert shipped.categories["phone"] == Decimal("6000.00")
    assert "large_appliance" not in shipped.categories
    own = tmp_path / "refunds.yaml"
    own.write_text('request_types: [return]\ncategories: {phone: "100.00"}\n', encoding="utf-8")
    assert load_refund_policy(own).categories == {"phone": Decimal("100.00")}
    own.write_text("request_types: [return]\ncategory: {}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="category"):
        load_refund_policy(own)


# --- the repair service's decisions --------------------------------------------------------
class Repair:
    """One case through the repair service's handlers, its state carried from one to the next."""

    def __init__(self, case: CaseOpenedV1, policy: ExpressRefundPolicy = POLICY) -> None:
        self.case_id = case.case_id
        self.policy = policy
        decision = domain.on_case_opened(case, None, NOW, table=TABLE)
        assert decision.state is not None
        self.state: domain.RepairCase = decision.state
        self.serial = case.item.serial_number

    def stage(self) -> domain.Stage:
        return self.state.stage

    def _take(self, decision: Decision[domain.RepairCase]) -> list[Event]:
        if decision.state is not None:
            self.state = decision.state
        return [emit.event for emit in decision.emits]

    def track(self, status: TrackingStatus, event_id: str | None = None) -> list[Event]:
        event = tracking(self.case_id, NOW, status, event_id=event_id)
        return self._take(domain.on_tracking(event, self.state, NOW, policy=self.policy))

    def receive(self, serial: str | None = None) -> list[Event]:
        report = CenterItemReceivedV1(case_id=self.case_id, serial_number=serial or self.serial)
        return self._take(domain.on_item_received(report, self.state, NOW))

    def diagnose(
        self, resolution: Resolution = Resolution.REPAIR, *, damage: bool = False
    ) -> list[Event]:
        report = CenterDiagnosedV1(
            case_id=self.case_id,
            fault_type="dropped" if damage else "screen_flicker",
            in_warranty=not damage,
            resolution=resolution,
            quote=Decimal("299.00") if damage else None,
            customer_damage=damage,
        )
        return self._take(domain.on_diagnosed(report, self.state, NOW))


def types(events: list[Event]) -> list[type[Event]]:
    return [type(event) for event in events]


def test_a_trusted_return_is_refunded_once_at_pickup_and_closed_after_diagnosis() -> None:
    case = opened()
    repair = Repair(case)
    (refund,) = repair.track(TrackingStatus.PICKED_UP)
    assert isinstance(refund, RefundRequestedV1)
    assert (refund.express, refund.amount, refund.order_id) == (True, Decimal("4999.00"),
                                                                 case.order_id)  # fmt: skip
    assert repair.state.express_refund == Decimal("4999.00")
    assert repair.stage() is domain.Stage.AWAITING_ITEM  # the parcel is still on its way
    assert repair.track(TrackingStatus.PICKED_UP, event_id="another-scan") == []
    assert repair.track(TrackingStatus.IN_TRANSIT) == []
    assert types(repair.track(TrackingStatus.DELIVERED)) == [RepairTicketV1]
    assert types(repair.receive()) == [ItemReceivedV1]
    diagnosed, closed = repair.diagnose()
    assert isinstance(diagnosed, DiagnosisCompletedV1)
    assert isinstance(closed, CaseClosedV1)
    assert closed.outcome == "refunded"
    assert repair.stage() is domain.Stage.CLOSED


def test_an_express_refund_stays_the_only_refund_whatever_the_center_decides() -> None:
    for resolution in Resolution:
        repair = Repair(opened(request_type=RequestType.EXCHANGE))
        repair.track(TrackingStatus.PICKED_UP)
        repair.track(TrackingStatus.DELIVERED)
        repair.receive()
        assert types(repair.diagnose(resolution)) == [DiagnosisCompletedV1, CaseClosedV1]


def test_a_courier_that_skips_the_pickup_scan_still_triggers_the_refund_once() -> None:
    repair = Repair(opened())
    refund, ticket = repair.track(TrackingStatus.DELIVERED)
    assert isinstance(refund, RefundRequestedV1)
    assert refund.express
    assert isinstance(ticket, RepairTicketV1)
    assert repair.track(TrackingStatus.DELIVERED, event_id="again") == []


def test_the_outbound_leg_and_cases_outside_the_policy_get_no_refund_at_pickup() -> None:
    for case in (
        opened(trusted=False),
        opened(request_type=RequestType.REPAIR),
        opened(price="7000.00"),
    ):
        repair = Repair(case)
        assert repair.track(TrackingStatus.PICKED_UP) == []
        assert repair.state.express_refund is None
    repair = Repair(opened())
    outbound = tracking(repair.case_id, NOW, TrackingStatus.PICKED_UP, leg=Leg.OUTBOUND)
    assert domain.on_tracking(outbound, repair.state, NOW, policy=POLICY).emits == ()


def test_an_untrusted_return_is_refunded_after_diagnosis_as_before() -> None:
    repair = Repair(opened(trusted=False))
    repair.track(TrackingStatus.PICKED_UP)
    repair.track(TrackingStatus.DELIVERED)
    repair.receive()
    _, refund, closed = repair.diagnose(Resolution.REFUND)
    assert isinstance(refund, RefundRequestedV1)
    assert refund.express is False
    assert "express" not in refund.model_dump(mode="json")  # the 1.0 document, unchanged
    assert isinstance(closed, CaseClosedV1)


def test_a_serial_mismatch_after_an_express_refund_raises_an_exception_and_claws_back() -> None:
    repair = Repair(opened())
    repair.track(TrackingStatus.PICKED_UP)
    repair.track(TrackingStatus.DELIVERED)
    received, exception, clawback = repair.receive(serial="SN-SOMETHING-ELSE")
    assert isinstance(received, ItemReceivedV1)
    assert not received.serial_matches
    assert isinstance(exception, CaseExceptionRaisedV1)
    assert exception.code == "serial_mismatch"
    assert isinstance(clawback, RefundClawbackRequestedV1)
    assert (clawback.amount, clawback.reason_code) == (Decimal("4999.00"),
                                                       ClawbackReason.SERIAL_MISMATCH)  # fmt: skip
    assert clawback.reason == exception.reason
    assert repair.state.stage is domain.Stage.EXCEPTION
    assert repair.diagnose() == []  # nothing more happens by itself


def test_a_serial_mismatch_without_an_express_refund_claws_nothing_back() -> None:
    repair = Repair(opened(trusted=False))
    repair.track(TrackingStatus.DELIVERED)
    assert types(repair.receive(serial="SN-X")) == [ItemReceivedV1, CaseExceptionRaisedV1]


def test_damage_by_the_customer_after_an_express_refund_claws_back() -> None:
    repair = Repair(opened())
    repair.track(TrackingStatus.PICKED_UP)
    repair.track(TrackingStatus.DELIVERED)
    repair.receive()
    diagnosed, exception, clawback = repair.diagnose(damage=True)
    assert isinstance(diagnosed, DiagnosisCompletedV1)
    assert isinstance(exception, CaseExceptionRaisedV1)
    assert exception.code == "customer_damage"
    assert isinstance(clawback, RefundClawbackRequestedV1)
    assert clawback.reason_code is ClawbackReason.CUSTOMER_DAMAGE
    assert clawback.reason == "damaged by the customer (dropped) after an express refund"


def test_a_state_without_express_fields_is_stored_as_before() -> None:
    repair = Repair(opened(request_type=RequestType.REPAIR, trusted=False))
    dumped = repair.state.model_dump(mode="json")
    assert not {"request_type", "trusted_customer", "express_refund"} & set(dumped)
    paid = Repair(opened())
    paid.track(TrackingStatus.PICKED_UP)
    again = domain.RepairCase.model_validate(paid.state.model_dump(mode="json"))
    assert again == paid.state


# --- the tracker, the statistics and the customer's messages -------------------------------
def fold_all(events: list[Event]) -> CaseRecord:
    state: CaseRecord | None = None
    for event in events:
        decision = fold(event, state, business_time(event, NOW), load_sla()).decision
        state = decision.state or state
    assert state is not None
    return state


def life(*, serial: str | None = None) -> list[Event]:
    """A trusted return's case events as the repair service emits them."""
    case = opened()
    repair = Repair(case)
    events: list[Event] = [case, tracking(case.case_id, NOW, TrackingStatus.PICKED_UP)]
    events += repair.track(TrackingStatus.PICKED_UP)
    events.append(tracking(case.case_id, NOW, TrackingStatus.IN_TRANSIT))
    events += repair.receive(serial=serial)
    events += repair.diagnose() if serial is None else []
    return events


def test_the_tracker_shows_the_express_refund_without_moving_the_case_ahead() -> None:
    record = fold_all(life())
    snapshot = record.snapshot
    kinds = [(entry.kind, entry.status, entry.applied) for entry in snapshot.timeline]
    assert kinds[2:4] == [
        ("refund.requested", "picked_up", True),
        ("tracking.updated", "in_transit", True),  # a later scan still fits
    ]
    assert snapshot.timeline[2].detail == "express refund 4999.00 at pickup"
    assert snapshot.express_refund == ExpressRefundState(
        amount=Decimal("4999.00"), requested_at=NOW
    )
    assert snapshot.status == Status.CLOSED
    assert "work_completed" not in snapshot.milestones  # no repair work was refunded
    assert snapshot.milestones["express_refunded"] == NOW
    diagnosed = next(e for e in snapshot.timeline if e.kind == "repair.diagnosed")
    assert diagnosed.status == Status.REFUNDING


def test_the_tracker_records_the_clawback_and_stats_count_it() -> None:
    clawed = fold_all(life(serial="SN-X")).snapshot
    assert clawed.status == Status.EXCEPTION
    assert clawed.express_refund is not None
    assert clawed.express_refund.clawback_reason == "serial_mismatch"
    assert clawed.timeline[-1].detail == "claw back express refund 4999.00: serial_mismatch"
    kept = fold_all(life()).snapshot.model_copy(update={"case_id": "AS-OTHER"})
    plain = fold_all([opened(1, trusted=False)]).snapshot
    figures = compute_stats([clawed, kept, plain]).express_refunds
    assert (figures.count, figures.amount) == (2, Decimal("9998.00"))
    assert (figures.clawbacks, figures.clawback_amount) == (1, Decimal("4999.00"))
    assert figures.clawback_rate == 0.5
    assert figures.clawback_reasons == {"serial_mismatch": 1}
    assert compute_stats([plain]).express_refunds.clawback_rate is None


def messages(locale: str, event: Event) -> NotificationRequestedV1:
    case = opened()
    customer = case.customer.model_copy(update={"locale": locale})
    audience = Audience(customer=customer)
    emits: tuple[Emit, ...] = plan(event, audience, NOW).emits
    requests = [e.event for e in emits if isinstance(e.event, NotificationRequestedV1)]
    (sms,) = [r for r in requests if isinstance(r, NotificationRequestedV1) and r.channel == "sms"]
    assert isinstance(sms, NotificationRequestedV1)
    return sms


def test_the_customer_is_told_of_the_express_refund_and_of_the_clawback() -> None:
    case = opened()
    refund, *_ = Repair(case).track(TrackingStatus.PICKED_UP)
    zh = messages("zh-CN", refund)
    assert zh.milestone == "express_refunded"
    assert zh.subject == "极速退款已到账"
    assert "极速退款 ¥4999.00" in zh.body
    en = messages("en", refund)
    assert en.body.startswith("Hello 张伟, the courier has your parcel: an express refund of ¥4999")
    clawback = RefundClawbackRequestedV1(
        case_id=case.case_id, order_id=case.order_id, order_item_id=case.order_item_id,
        amount=Decimal("4999.00"), reason_code=ClawbackReason.CUSTOMER_DAMAGE, reason="dropped",
        requested_at=NOW,
    )  # fmt: skip
    zh = messages("zh-CN", clawback)
    assert (zh.milestone, zh.subject) == ("refund_clawback", "极速退款需退回")
    assert "追回" in zh.body
    assert "being taken back" in messages("en", clawback).body
