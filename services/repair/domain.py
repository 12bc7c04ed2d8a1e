"""Repair decisions, pure: what each center report or case event means for the case."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from hub.core.handler import Decision, Emit
from hub.messages.cases import CaseExceptionRaisedV1, TrackingStatus
from hub.messages.common import Fault, Item, ServiceMode
from hub.messages.courier import Leg
from hub.messages.damage import DamageClaimedV1, damage_claim_id
from hub.messages.repair import (
    CaseClosedV1,
    DiagnosisCompletedV1,
    ItemReceivedV1,
    QuoteDecisionV1,
    QuoteIssuedV1,
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


TRANSIT_DAMAGE = "transit_damage"
"""The exception code of an item that arrived damaged (运输损坏)."""


class Stage(StrEnum):
    """Where the case stands at the repair center."""

    AWAITING_ITEM = "awaiting_item"
    AT_CENTER = "at_center"
    QUOTED = "quoted"
    WORKING = "working"
    RETURNING = "returning"
    CLOSED = "closed"
    EXCEPTION = "exception"


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
    inbound_courier: str | None = None
    """The courier of the inbound leg, from its tracking (whom a damage claim goes to)."""
    inbound_waybill: str | None = None

    @model_serializer(mode="wrap")
    def _stored(self, serialize: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Until the parcel is known, the document is stored as it was before these fields.
        document: dict[str, Any] = serialize(self)
        for name in ("inbound_courier", "inbound_waybill"):
            if document.get(name) is None:
                document.pop(name, None)
        return document

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
    )
    if event.service_mode is not ServiceMode.ONSITE:
        return Decision(state=case)
    scheduled = VisitScheduledV1(case_id=case.case_id, scheduled_at=at)
    emits = (_ticket(case, onsite=True, waybill=None), Emit("visit", scheduled))
    return Decision(emits=emits, state=case)


def on_tracking(
    event: TrackingUpdatedV1, case: RepairCase | None, _at: datetime
) -> Decision[RepairCase]:
    """Delivered inbound: open the ticket. Delivered outbound: the case is done."""
    if case is None:
        return Decision()
    noted = _noted_parcel(event, case)
    case = noted or case
    if event.status is not TrackingStatus.DELIVERED:
        return Decision(state=noted)
    if event.leg is Leg.INBOUND and case.stage is Stage.AWAITING_ITEM:
        emit = _ticket(case, onsite=False, waybill=event.waybill_no)
        return Decision(emits=(emit,), state=case.moved(stage=Stage.AT_CENTER))
    if event.leg is Leg.OUTBOUND and case.stage is Stage.RETURNING:
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
    exception = CaseExceptionRaisedV1(
        case_id=case.case_id,
        code="serial_mismatch",
        reason=f"received serial {event.serial_number}, ordered {case.item.serial_number}",
        raised_at=at,
    )
    emits = (Emit("received", received), Emit("exception", exception))
    return Decision(emits=emits, state=case.moved(stage=Stage.EXCEPTION))


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
    if case is None or case.stage is not Stage.AT_CENTER:
        return Decision()
    diagnosed = DiagnosisCompletedV1(
        case_id=case.case_id,
        fault_type=event.fault_type,
        in_warranty=event.in_warranty,
        resolution=event.resolution,
        diagnosed_at=at,
    )
    emits = [Emit("diagnosed", diagnosed)]
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


def on_quote_answered(
    event: QuoteAnsweredV1, case: RepairCase | None, _at: datetime
) -> Decision[RepairCase]:
    """Pass the customer's answer to the center, which repairs or gives the item back."""
    if case is None or case.stage is not Stage.QUOTED:
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
    if case is None or case.stage is not Stage.WORKING:
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
