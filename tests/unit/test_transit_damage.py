"""Damage in transit, pure: the claim against the inbound courier, the exception, the message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tracker_cases import opened, tracking

from dispatch.partners import load_partners
from hub.messages.cases import CaseExceptionRaisedV1, CaseOpenedV1, TrackingStatus
from hub.messages.common import Channel
from hub.messages.damage import DamageClaimedV1
from hub.messages.repair import CenterItemReceivedV1, ItemReceivedV1, RepairTicketV1
from notify.domain import Audience, plan
from repair import domain
from repair.domain import RepairCase, Stage
from repair.refund_policy import load_refund_policy
from tracker.domain import fold
from tracker.sla import load_sla

if TYPE_CHECKING:
    from hub.core.handler import Decision

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CASE = "AS-DAMAGE-1"

POLICY = load_refund_policy()


def track(status: TrackingStatus, state: RepairCase | None) -> Decision[RepairCase]:
    return domain.on_tracking(tracking(CASE, T0, status), state, T0, policy=POLICY)


def case_opened() -> CaseOpenedV1:
    return opened(CASE, T0)


def at_center(*, with_tracking: bool = True) -> RepairCase:
    """The repair state of a phone the jd courier delivered to the center."""
    state = domain.on_case_opened(case_opened(), None, T0, table=load_partners()).state
    assert state is not None
    if with_tracking:
        for status in (TrackingStatus.PICKED_UP, TrackingStatus.DELIVERED):
            decided = domain.on_tracking(tracking(CASE, T0, status), state, T0, policy=POLICY)
            state = decided.state or state
    else:
        state = state.moved(stage=Stage.AT_CENTER)  # the customer sent it by themselves
    assert state.stage is Stage.AT_CENTER
    return state


def damaged_report(serial: str | None = None) -> CenterItemReceivedV1:
    return CenterItemReceivedV1(
        case_id=CASE,
        serial_number=serial or case_opened().item.serial_number,
        damaged=True,
        damage_description="屏幕碎裂",
        evidence_ref="photo-123",
    )


def events(decision: Decision[RepairCase]) -> list[object]:
    return [emit.event for emit in decision.emits]


def test_inbound_tracking_notes_the_courier_and_waybill_once() -> None:
    state = domain.on_case_opened(case_opened(), None, T0, table=load_partners()).state
    assert state is not None
    picked = domain.on_tracking(
        tracking(CASE, T0, TrackingStatus.PICKED_UP), state, T0, policy=POLICY
    )
    assert picked.emits == ()
    assert picked.state is not None
    assert (picked.state.inbound_courier, picked.state.inbound_waybill) == ("jd", "WB1MAGE-1")
    again = domain.on_tracking(
        tracking(CASE, T0, TrackingStatus.IN_TRANSIT), picked.state, T0, policy=POLICY
    )
    assert again.state is None  # nothing new: no state written
    delivered = domain.on_tracking(
        tracking(CASE, T0, TrackingStatus.DELIVERED), picked.state, T0, policy=POLICY
    )
    (ticket,) = events(delivered)
    assert isinstance(ticket, RepairTicketV1)
    assert ticket.waybill_no == "WB1MAGE-1"


def test_damage_on_arrival_claims_against_the_inbound_courier_and_raises_an_exception() -> None:
    decided = domain.on_item_received(damaged_report(), at_center(), T0)
    received, claim, exception = events(decided)
    assert isinstance(received, ItemReceivedV1)
    assert received.serial_matches
    assert isinstance(claim, DamageClaimedV1)
    assert claim.model_dump(mode="json") == {
        "claim_id": f"{CASE}-inbound-damage",
        "case_id": CASE,
        "courier": "jd",
        "leg": "inbound",
        "waybill_no": "WB1MAGE-1",
        "declared_value": str(case_opened().item.price),
        "description": "屏幕碎裂",
        "evidence_ref": "photo-123",
        "claimed_at": "2026-11-30T09:00:00Z",
    }
    assert isinstance(exception, CaseExceptionRaisedV1)
    assert exception.code == "transit_damage"
    assert exception.reason == "屏幕碎裂; claimed against jd waybill WB1MAGE-1"
    assert decided.state is not None
    assert decided.state.stage is Stage.EXCEPTION


def test_a_redelivered_damage_report_claims_nothing_more() -> None:
    first = domain.on_item_received(damaged_report(), at_center(), T0)
    again = domain.on_item_received(damaged_report(), first.state, T0 + timedelta(minutes=5))
    assert again.emits == ()
    assert again.state is None


def test_damage_without_a_courier_leg_is_an_exception_without_a_claim() -> None:
    decided = domain.on_item_received(
        damaged_report(serial="OTHER-SN"), at_center(with_tracking=False), T0
    )
    kinds = [type(event) for event in events(decided)]
    assert kinds == [ItemReceivedV1, CaseExceptionRaisedV1]
    exception = events(decided)[-1]
    assert isinstance(exception, CaseExceptionRaisedV1)
    assert exception.reason.startswith("屏幕碎裂; no courier leg to claim against; received serial")


def test_an_undamaged_report_of_the_older_minor_reads_as_undamaged() -> None:
    raw = b'{"case_id": "AS-1", "serial_number": "SN1"}'
    report = CenterItemReceivedV1.model_validate_json(raw)
    assert (report.damaged, report.damage_description, report.evidence_ref) == (False, "", None)


def test_the_customer_is_told_of_transit_damage_in_their_language() -> None:
    base = case_opened()
    exception = CaseExceptionRaisedV1(
        case_id=CASE, code="transit_damage", reason="屏幕碎裂", raised_at=T0
    )
    for locale, text in (
        ("zh-CN", "运输损坏"),
        ("en", "found your item damaged in transit"),
    ):
        customer = base.customer.model_copy(update={"locale": locale, "channels": (Channel.SMS,)})
        audience = Audience(customer=customer)
        (emit,) = plan(exception, audience, T0).emits
        assert emit.event.model_dump()["milestone"] == "transit_damage"
        assert text in emit.event.model_dump()["body"]
        assert CASE in emit.event.model_dump()["body"]
    other = exception.model_copy(update={"code": "no_courier"})
    assert plan(other, Audience(customer=base.customer), T0).emits == ()


def test_the_tracker_keeps_the_claim_in_the_timeline_and_the_case_in_exception() -> None:
    claim = events(domain.on_item_received(damaged_report(), at_center(), T0))[1]
    exception = CaseExceptionRaisedV1(
        case_id=CASE, code="transit_damage", reason="屏幕碎裂", raised_at=T0
    )
    state = None
    for event in (case_opened(), claim, exception):
        assert isinstance(event, CaseOpenedV1 | DamageClaimedV1 | CaseExceptionRaisedV1)
        state = fold(event, state, T0, load_sla()).decision.state or state
    assert state is not None
    assert state.snapshot.status == "exception"
    entry = next(e for e in state.snapshot.timeline if e.kind == "damage.claimed")
    assert entry.detail == "inbound jd waybill WB1MAGE-1 value 6999.00: 屏幕碎裂 evidence photo-123"
