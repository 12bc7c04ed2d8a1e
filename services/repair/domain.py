"""Repair decisions, pure: what each center report or case event means for the case."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from hub.core.errors import EarlyEventError
from hub.core.handler import Decision, Emit
from hub.messages.cases import CaseExceptionRaisedV1, TrackingStatus
from hub.messages.common import Amount, Fault, Item, RequestType, ServiceMode
from hub.messages.courier import Leg
from hub.messages.damage import DamageClaimedV1, damage_claim_id
from hub.messages.parts import PartLine
from hub.messages.repair import (
    CaseClosedV1,
    ClawbackReason,
    DiagnosisCompletedV1,
    ItemReceivedV1,
    QuoteDecisionV1,
    QuoteIssuedV1,
    RefundClawbackRequestedV1,
    RefundRequestedV1,
    RepairTicketV1,
    ReplacementIssuedV1,
    Resolution,
    ReturnShipmentRequestedV1,
    VisitOutcome,
    VisitReportedV1,
    VisitScheduledV1,
    WorkCompletedV1,
)
from repair.refund_policy import express_refund_eligibility

if TYPE_CHECKING:
    from datetime import datetime

    from dispatch.partners import PartnerTable
    from hub.messages.cases import CaseOpenedV1, TrackingUpdatedV1
    from hub.messages.repair import (
        CenterDiagnosedV1,
        CenterItemReceivedV1,
        CenterVisitReportedV1,
        CenterWorkCompletedV1,
        QuoteAnsweredV1,
    )
    from repair.refund_policy import ExpressRefundPolicy


TRANSIT_DAMAGE = "transit_damage"
"""The exception code of an item that arrived damaged (运输损坏)."""


class Stage(StrEnum):
    """Where the case stands at the repair center."""

    AWAITING_ITEM = "awaiting_item"
    AT_CENTER = "at_center"
    QUOTED = "quoted"
    WAITING_PARTS = "waiting_parts"
    """The work waits for spare parts reserved at a supplier (repair.parts)."""
    WORKING = "working"
    RETURNING = "returning"
    CLOSED = "closed"
    EXCEPTION = "exception"


PROGRESS = {
    Stage.AWAITING_ITEM: 0,
    Stage.AT_CENTER: 1,
    Stage.QUOTED: 2,
    Stage.WAITING_PARTS: 2,
    Stage.WORKING: 3,
    Stage.RETURNING: 4,
    Stage.CLOSED: 5,
}
"""How far along each stage is; exception handling is off the path."""


def _in_stage(case: RepairCase | None, stage: Stage, what: str) -> bool:
    """Whether `case` is at `stage`, the only one `what` is read in; False when past it.

    A case still before it is early: the event that moved it there was sent on (a ticket,
    a return) and then lost to a crash before it was recorded, so it is read again after
    what it caused. The report waits in a retry tier for it.
    """
    if case is None or case.stage not in PROGRESS:
        return False
    if PROGRESS[case.stage] < PROGRESS[stage]:
        raise EarlyEventError(f"{what} for case {case.case_id}, still {case.stage.value}")
    return case.stage is stage


class PartsStatus(StrEnum):
    """Where the reservation of a case's spare parts stands."""

    REQUESTED = "requested"
    SHORT = "short"
    RESERVED = "reserved"
    GIVEN_UP = "given_up"


class Spares(BaseModel):
    """The spare parts a repair needs, and where their reservation stands."""

    model_config = ConfigDict(frozen=True)

    parts: tuple[PartLine, ...]
    quoted: bool = False
    """The customer pays the repair (the center quoted it)."""
    supplier: str | None = None
    status: PartsStatus | None = None
    expected_on: date | None = None

    def moved(self, **changes: object) -> Spares:
        """The spares after `changes`."""
        return self.model_copy(update=changes)


class RepairCase(BaseModel):
    """The repair service's state of one case."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    center: str
    order_id: str
    order_item_id: str
    item: Item
    fault: Fault
    in_warranty: bool
    stage: Stage
    resolution: Resolution | None = None
    repaired: bool = False
    # Left out when unset, so a state stored before them is stored again byte for byte.
    request_type: RequestType = Field(
        default=RequestType.REPAIR, exclude_if=lambda kind: kind is RequestType.REPAIR
    )
    trusted_customer: bool = Field(default=False, exclude_if=lambda trusted: not trusted)
    express_refund: Amount | None = Field(default=None, exclude_if=lambda paid: paid is None)
    """What the express refund paid at pickup; set once, so it is never paid twice."""
    spares: Spares | None = Field(default=None, exclude_if=lambda value: value is None)
    """The spare parts the repair needs (repair.parts); a state without them stores as before."""
    inbound_courier: str | None = Field(default=None, exclude_if=lambda value: value is None)
    """The courier of the inbound leg, from its tracking (whom a damage claim goes to)."""
    inbound_waybill: str | None = Field(default=None, exclude_if=lambda value: value is None)

    def moved(self, **changes: object) -> RepairCase:
        """The state after `changes`."""
        return self.model_copy(update=changes)


def _ticket(case: RepairCase, *, onsite: bool, waybill: str | None) -> Emit:
    ticket = RepairTicketV1(
        case_id=case.case_id,
        item=case.item,
        fault=case.fault,
        in_warranty=case.in_warranty,
        onsite=onsite,
        waybill_no=waybill,
    )
    return Emit("ticket", ticket, partner=case.center)


def on_case_opened(
    event: CaseOpenedV1, known: RepairCase | None, at: datetime, *, table: PartnerTable
) -> Decision[RepairCase]:
    """Remember the case and its center; an onsite case books a technician right away."""
    if known is not None:
        return Decision()  # a case opened again (a replay): its repair is under way
    case = RepairCase(
        case_id=event.case_id,
        center=table.center_for(event.item.category).code,
        order_id=event.order_id,
        order_item_id=event.order_item_id,
        item=event.item,
        fault=event.fault,
        in_warranty=event.in_warranty,
        stage=Stage.AWAITING_ITEM,
        request_type=event.request_type,
        trusted_customer=event.trusted_customer,
    )
    if event.service_mode is not ServiceMode.ONSITE:
        return Decision(state=case)
    scheduled = VisitScheduledV1(case_id=case.case_id, scheduled_at=at)
    emits = (_ticket(case, onsite=True, waybill=None), Emit("visit", scheduled))
    return Decision(emits=emits, state=case)


# Tracking that proves the courier has the parcel: the first one triggers an express refund
# (a courier may skip the picked-up scan; a later scan of the leg proves the pickup as well).
PICKED_UP = frozenset(
    {
        TrackingStatus.PICKED_UP,
        TrackingStatus.IN_TRANSIT,
        TrackingStatus.OUT_FOR_DELIVERY,
        TrackingStatus.DELIVERED,
    }
)


def express_refund(
    event: TrackingUpdatedV1, case: RepairCase, at: datetime, policy: ExpressRefundPolicy
) -> RefundRequestedV1 | None:
    """The express refund the pickup of an eligible case triggers; None if none is due (now)."""
    due = (
        event.leg is Leg.INBOUND
        and event.status in PICKED_UP
        and case.stage is Stage.AWAITING_ITEM
        and case.express_refund is None
    )
    if not due:
        return None
    verdict = express_refund_eligibility(
        policy,
        trusted_customer=case.trusted_customer,
        request_type=case.request_type,
        category=case.item.category,
        amount=case.item.price,
    )
    if not verdict.eligible:
        return None
    return RefundRequestedV1(
        case_id=case.case_id,
        order_id=case.order_id,
        order_item_id=case.order_item_id,
        amount=case.item.price,
        requested_at=at,
        express=True,
    )


def on_tracking(
    event: TrackingUpdatedV1, case: RepairCase | None, at: datetime, *, policy: ExpressRefundPolicy
) -> Decision[RepairCase]:
    """Picked up: an eligible case's express refund. Delivered: open the ticket, or close."""
    if case is None:
        return Decision()
    refund = express_refund(event, case, at, policy)
    if refund is None:
        return _delivered(event, case)
    refunded = case.moved(express_refund=refund.amount)
    after = _delivered(event, refunded)
    return Decision(
        emits=(Emit("express-refund", refund), *after.emits), state=after.state or refunded
    )


def _delivered(event: TrackingUpdatedV1, case: RepairCase) -> Decision[RepairCase]:
    """Delivered inbound: open the ticket. Delivered outbound: the case is done."""
    noted = _noted_parcel(event, case)
    case = noted or case
    if event.status is not TrackingStatus.DELIVERED:
        return Decision(state=noted)
    if event.leg is Leg.INBOUND and case.stage is Stage.AWAITING_ITEM:
        emit = _ticket(case, onsite=False, waybill=event.waybill_no)
        return Decision(emits=(emit,), state=case.moved(stage=Stage.AT_CENTER))
    if event.leg is Leg.OUTBOUND and _in_stage(case, Stage.RETURNING, "the return's delivery"):
        outcome = {
            Resolution.REPLACE: "replaced",
            Resolution.REPAIR: "repaired" if case.repaired else "returned_unrepaired",
        }.get(case.resolution or Resolution.REPAIR, "returned")
        closed = CaseClosedV1(case_id=case.case_id, outcome=outcome, closed_at=event.occurred_at)
        return Decision(emits=(Emit("closed", closed),), state=case.moved(stage=Stage.CLOSED))
    return Decision(state=noted)


def _noted_parcel(event: TrackingUpdatedV1, case: RepairCase) -> RepairCase | None:
    """The case noting the inbound parcel's courier and waybill; None when it knows them."""
    if event.leg is not Leg.INBOUND or case.inbound_waybill == event.waybill_no:
        return None
    return case.moved(inbound_courier=event.courier, inbound_waybill=event.waybill_no)


def on_item_received(
    event: CenterItemReceivedV1, case: RepairCase | None, at: datetime
) -> Decision[RepairCase]:
    """The center has the item: damage in transit or a serial that differs stops the case."""
    if case is None or case.stage not in {Stage.AT_CENTER, Stage.AWAITING_ITEM}:
        return Decision()
    matches = event.serial_number == case.item.serial_number
    received = ItemReceivedV1(
        case_id=case.case_id,
        serial_number=event.serial_number,
        serial_matches=matches,
        received_at=at,
    )
    if event.damaged:
        return _damaged_in_transit(event, case, received, at)
    if matches:
        return Decision(
            emits=(Emit("received", received),), state=case.moved(stage=Stage.AT_CENTER)
        )
    reason = f"received serial {event.serial_number}, ordered {case.item.serial_number}"
    exception = _to_exception(case, ClawbackReason.SERIAL_MISMATCH, reason, at)
    emits = (Emit("received", received), *exception)
    return Decision(emits=emits, state=case.moved(stage=Stage.EXCEPTION))


def _to_exception(
    case: RepairCase, code: ClawbackReason, reason: str, at: datetime
) -> tuple[Emit, ...]:
    """People must look at the case; an express refund already paid is to be clawed back."""
    exception = CaseExceptionRaisedV1(case_id=case.case_id, code=code, reason=reason, raised_at=at)
    if case.express_refund is None:
        return (Emit("exception", exception),)
    clawback = RefundClawbackRequestedV1(
        case_id=case.case_id,
        order_id=case.order_id,
        order_item_id=case.order_item_id,
        amount=case.express_refund,
        reason_code=code,
        reason=reason,
        requested_at=at,
    )
    return Emit("exception", exception), Emit("clawback", clawback)


def _damaged_in_transit(
    event: CenterItemReceivedV1, case: RepairCase, received: ItemReceivedV1, at: datetime
) -> Decision[RepairCase]:
    """A claim against the inbound courier, and the case to exception handling.

    Once per case: the exception stage is not one an item-received report is read in.
    """
    what = event.damage_description or "damaged on arrival"
    emits = [Emit("received", received)]
    if case.inbound_courier is not None and case.inbound_waybill is not None:
        claim = DamageClaimedV1(
            claim_id=damage_claim_id(case.case_id, Leg.INBOUND),
            case_id=case.case_id,
            courier=case.inbound_courier,
            leg=Leg.INBOUND,
            waybill_no=case.inbound_waybill,
            declared_value=case.item.price,  # what dispatch declared on the pickup order
            description=what,
            evidence_ref=event.evidence_ref,
            claimed_at=at,
        )
        emits.append(Emit("damage-claim", claim))
        reason = f"{what}; claimed against {claim.courier} waybill {claim.waybill_no}"
    else:
        reason = f"{what}; no courier leg to claim against"  # the customer brought or sent it
    if event.serial_number != case.item.serial_number:
        reason += f"; received serial {event.serial_number}, ordered {case.item.serial_number}"
    exception = CaseExceptionRaisedV1(
        case_id=case.case_id, code=TRANSIT_DAMAGE, reason=reason, raised_at=at
    )
    emits.append(Emit("exception", exception))
    return Decision(emits=tuple(emits), state=case.moved(stage=Stage.EXCEPTION))


def on_diagnosed(
    event: CenterDiagnosedV1, case: RepairCase | None, at: datetime
) -> Decision[RepairCase]:
    """Diagnosis decides the path: quote, refund, replacement, or repair."""
    if case is None or not _in_stage(case, Stage.AT_CENTER, "a diagnosis"):
        return Decision()
    diagnosed = DiagnosisCompletedV1(
        case_id=case.case_id,
        fault_type=event.fault_type,
        in_warranty=event.in_warranty,
        resolution=event.resolution,
        diagnosed_at=at,
        parts=event.parts,
    )
    emits = [Emit("diagnosed", diagnosed)]
    if case.express_refund is not None:
        return _after_express_refund(event, case, diagnosed, at)
    if event.quote is not None:
        emits.append(
            Emit(
                "quote",
                QuoteIssuedV1(case_id=case.case_id, amount=event.quote, issued_at=at),
            )
        )
        stage = Stage.QUOTED
    elif event.resolution is Resolution.REFUND:
        refund = RefundRequestedV1(
            case_id=case.case_id,
            order_id=case.order_id,
            order_item_id=case.order_item_id,
            amount=case.item.price,
            requested_at=at,
        )
        closed = CaseClosedV1(case_id=case.case_id, outcome="refunded", closed_at=at)
        emits += [Emit("refund", refund), Emit("closed", closed)]
        stage = Stage.CLOSED
    elif event.resolution is Resolution.REPLACE:
        issued = ReplacementIssuedV1(case_id=case.case_id, sku=case.item.sku, issued_at=at)
        back = ReturnShipmentRequestedV1(case_id=case.case_id, requested_at=at)
        emits += [Emit("replacement", issued), Emit("return", back)]
        stage = Stage.RETURNING
    else:
        stage = Stage.WORKING
    return Decision(emits=tuple(emits), state=case.moved(stage=stage, resolution=event.resolution))


def _after_express_refund(
    event: CenterDiagnosedV1, case: RepairCase, diagnosed: DiagnosisCompletedV1, at: datetime
) -> Decision[RepairCase]:
    """Refunded at pickup: the item stays, whatever the center would do; damage claws back."""
    emits: tuple[Emit, ...] = (Emit("diagnosed", diagnosed),)
    if event.customer_damage:
        reason = f"damaged by the customer ({event.fault_type}) after an express refund"
        emits += _to_exception(case, ClawbackReason.CUSTOMER_DAMAGE, reason, at)
        return Decision(emits=emits, state=case.moved(stage=Stage.EXCEPTION))
    closed = CaseClosedV1(case_id=case.case_id, outcome="refunded", closed_at=at)
    return Decision(
        emits=(*emits, Emit("closed", closed)),
        state=case.moved(stage=Stage.CLOSED, resolution=Resolution.REFUND),
    )


def on_quote_answered(
    event: QuoteAnsweredV1, case: RepairCase | None, _at: datetime
) -> Decision[RepairCase]:
    """Pass the customer's answer to the center, which repairs or gives the item back."""
    if case is None or not _in_stage(case, Stage.QUOTED, "a quote answer"):
        return Decision()
    decision = QuoteDecisionV1(case_id=case.case_id, approved=event.approved)
    return Decision(
        emits=(Emit("quote-decision", decision, partner=case.center),),
        state=case.moved(stage=Stage.WORKING),
    )


def on_work_completed(
    event: CenterWorkCompletedV1, case: RepairCase | None, at: datetime
) -> Decision[RepairCase]:
    """Work done (or refused): the item goes back to the customer."""
    if case is None or not _in_stage(case, Stage.WORKING, "completed work"):
        return Decision()
    done = WorkCompletedV1(
        case_id=case.case_id,
        resolution=event.resolution,
        repaired=event.repaired,
        parts_used=event.parts_used,
        completed_at=at,
    )
    back = ReturnShipmentRequestedV1(case_id=case.case_id, requested_at=at)
    return Decision(
        emits=(Emit("completed", done), Emit("return", back)),
        state=case.moved(stage=Stage.RETURNING, repaired=event.repaired),
    )


def on_visit_reported(
    event: CenterVisitReportedV1, case: RepairCase | None, at: datetime
) -> Decision[RepairCase]:
    """Fixed at home closes the case; "needs workshop" waits for the pickup dispatch now makes."""
    if case is None or case.stage is not Stage.AWAITING_ITEM:
        return Decision()
    reported = VisitReportedV1(
        case_id=case.case_id, outcome=event.outcome, notes=event.notes, reported_at=at
    )
    if event.outcome is VisitOutcome.NEEDS_WORKSHOP:
        return Decision(emits=(Emit("visit", reported),))
    done = WorkCompletedV1(
        case_id=case.case_id,
        resolution=Resolution.REPAIR,
        repaired=True,
        parts_used=(),
        completed_at=at,
    )
    closed = CaseClosedV1(case_id=case.case_id, outcome="fixed_onsite", closed_at=at)
    return Decision(
        emits=(
            Emit("visit", reported),
            Emit("completed", done),
            Emit("closed", closed),
        ),
        state=case.moved(stage=Stage.CLOSED, resolution=Resolution.REPAIR, repaired=True),
    )
