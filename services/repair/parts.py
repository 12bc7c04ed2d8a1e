"""Spare parts (备件), pure: reserve what a diagnosis needs, wait for it, or give up and replace."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.core.errors import EarlyEventError
from hub.core.handler import Decision, Emit
from hub.messages.parts import (
    GiveUpReason,
    PartsGivenUpV1,
    PartsReadyV1,
    PartsRequestedV1,
    PartsReservationCancelledV1,
    PartsReservationRequestedV1,
    PartsReservedV1,
    PartsShortageV1,
    PartsWaitDueV1,
    RepairWithdrawnV1,
    reservation_id_for,
)
from hub.messages.repair import ReplacementIssuedV1, Resolution, ReturnShipmentRequestedV1
from repair import domain
from repair.domain import PartsStatus, RepairCase, Spares, Stage

if TYPE_CHECKING:
    from datetime import datetime

    from dispatch.partners import PartnerTable
    from hub.messages.parts import (
        SupplierPartsReservedV1,
        SupplierPartsShortV1,
        SupplierReservationRejectedV1,
    )
    from hub.messages.repair import CenterDiagnosedV1, QuoteAnsweredV1


def on_diagnosed(
    event: CenterDiagnosedV1, case: RepairCase | None, at: datetime, *, table: PartnerTable
) -> Decision[RepairCase]:
    """The diagnosis as `domain.on_diagnosed` decides it; a repair needing parts reserves them."""
    decision = domain.on_diagnosed(event, case, at)
    if decision.state is None or not event.parts:
        return decision
    spares = Spares(parts=event.parts, quoted=event.quote is not None)
    state = decision.state.moved(spares=spares)
    if state.stage is Stage.WORKING:
        return _reserve(decision.emits, state, at, table)
    return Decision(emits=decision.emits, state=state)  # quoted: reserved once approved


def on_quote_answered(
    event: QuoteAnsweredV1, case: RepairCase | None, at: datetime, *, table: PartnerTable
) -> Decision[RepairCase]:
    """The answer as `domain.on_quote_answered` passes it on; an approved repair reserves parts."""
    decision = domain.on_quote_answered(event, case, at)
    state = decision.state
    if state is None or not event.approved or state.spares is None:
        return decision
    return _reserve(decision.emits, state, at, table)


def _reserve(
    emits: tuple[Emit, ...], case: RepairCase, at: datetime, table: PartnerTable
) -> Decision[RepairCase]:
    """Ask the category's supplier for the parts, once per case, and wait at most its max_wait."""
    supplier = table.supplier_for(case.item.category)
    spares = case.spares
    if supplier is None or spares is None:
        return Decision(emits=emits, state=case)  # no supplier: the center's own stock serves
    reservation = reservation_id_for(case.case_id)
    requested = PartsRequestedV1(
        case_id=case.case_id,
        reservation_id=reservation,
        supplier=supplier.code,
        parts=spares.parts,
        requested_at=at,
    )
    order = PartsReservationRequestedV1(
        reservation_id=reservation,
        case_id=case.case_id,
        center=case.center,
        parts=spares.parts,
        requested_at=at,
    )
    due = PartsWaitDueV1(case_id=case.case_id, reservation_id=reservation)
    return Decision(
        emits=(
            *emits,
            Emit("parts-requested", requested),
            Emit("parts-order", order, partner=supplier.code),
            Emit.timer("parts-wait-due", due, supplier.max_wait),
        ),
        state=case.moved(
            stage=Stage.WAITING_PARTS,
            spares=spares.moved(supplier=supplier.code, status=PartsStatus.REQUESTED),
        ),
    )


BEFORE_RESERVING = frozenset({Stage.AWAITING_ITEM, Stage.AT_CENTER, Stage.QUOTED})
"""Stages a case reserves its parts from: a supplier's answer there was read early."""


def _waiting(case: RepairCase | None, reservation_id: str) -> tuple[RepairCase, Spares] | None:
    """The case and its spares when it waits for `reservation_id`, else None (late or stray).

    A case that has not recorded the reservation yet (a crash between sending and recording
    it) makes the answer early: it waits in a retry tier for the diagnosis or approval.
    """
    if case is None or reservation_id != reservation_id_for(case.case_id):
        return None
    if case.stage in BEFORE_RESERVING:
        raise EarlyEventError(f"the supplier's answer to {reservation_id}, not reserved yet")
    if case.stage is not Stage.WAITING_PARTS or case.spares is None:
        return None
    return case, case.spares


def on_reserved(
    event: SupplierPartsReservedV1, case: RepairCase | None, at: datetime
) -> Decision[RepairCase]:
    """Parts reserved (at once or after a shortage): the center starts the repair."""
    waiting = _waiting(case, event.reservation_id)
    if waiting is None:
        return Decision()  # given up already, or a repeat: the case has moved on
    case, spares = waiting
    reserved = PartsReservedV1(
        case_id=case.case_id,
        reservation_id=event.reservation_id,
        after_shortage=spares.status is PartsStatus.SHORT,
        reserved_at=at,
    )
    ready = PartsReadyV1(
        case_id=case.case_id, reservation_id=event.reservation_id, parts=spares.parts
    )
    return Decision(
        emits=(
            Emit("parts-reserved", reserved),
            Emit("parts-ready", ready, partner=case.center),
        ),
        state=case.moved(stage=Stage.WORKING, spares=spares.moved(status=PartsStatus.RESERVED)),
    )


def on_shortage(
    event: SupplierPartsShortV1, case: RepairCase | None, at: datetime
) -> Decision[RepairCase]:
    """Out of stock: the case waits for parts; a new expected date is passed on, a repeat is not."""
    waiting = _waiting(case, event.reservation_id)
    if waiting is None:
        return Decision()
    case, spares = waiting
    if spares.status is PartsStatus.SHORT and spares.expected_on == event.expected_on:
        return Decision()
    shortage = PartsShortageV1(
        case_id=case.case_id,
        reservation_id=event.reservation_id,
        missing=event.missing,
        expected_on=event.expected_on,
        reported_at=at,
    )
    short = spares.moved(status=PartsStatus.SHORT, expected_on=event.expected_on)
    return Decision(
        emits=(Emit(f"parts-shortage-{event.expected_on.isoformat()}", shortage),),
        state=case.moved(spares=short),
    )


def on_rejected(
    event: SupplierReservationRejectedV1, case: RepairCase | None, at: datetime
) -> Decision[RepairCase]:
    """The supplier cannot serve the parts at all: no point waiting, resolve without them."""
    waiting = _waiting(case, event.reservation_id)
    if waiting is None:
        return Decision()
    detail = f"{event.reason}: {event.detail}" if event.detail else str(event.reason)
    return _give_up(*waiting, GiveUpReason.REJECTED, detail, at)


def on_wait_due(
    event: PartsWaitDueV1, case: RepairCase | None, at: datetime
) -> Decision[RepairCase]:
    """The longest wait for parts is over: resolve without them (nothing if they came)."""
    waiting = _waiting(case, event.reservation_id)
    if waiting is None:
        return Decision()
    return _give_up(*waiting, GiveUpReason.WAIT_EXCEEDED, "parts did not arrive in time", at)


def _give_up(
    case: RepairCase, spares: Spares, reason: GiveUpReason, detail: str, at: datetime
) -> Decision[RepairCase]:
    """Cancel the reservation, withdraw the ticket, and replace (covered) or return (paid).

    A covered repair becomes a replacement at once, not an offer the customer must accept: under
    warranty they are owed a working item, and a question would only add a round trip to a case
    that is late already. A paid (quoted) repair goes back unrepaired and uncharged: the hub owes
    no new unit for a fault the warranty does not cover.
    """
    reservation = reservation_id_for(case.case_id)
    given_up = PartsGivenUpV1(
        case_id=case.case_id,
        reservation_id=reservation,
        reason=reason,
        detail=detail,
        given_up_at=at,
    )
    cancel = PartsReservationCancelledV1(
        reservation_id=reservation, case_id=case.case_id, reason=reason.value
    )
    withdrawn = RepairWithdrawnV1(case_id=case.case_id, reason=f"parts_{reason.value}")
    emits = [Emit("parts-given-up", given_up)]
    if reason is GiveUpReason.WAIT_EXCEEDED:  # a refused reservation holds nothing to cancel
        emits.append(Emit("parts-cancel", cancel, partner=spares.supplier))
    emits.append(Emit("repair-withdrawn", withdrawn, partner=case.center))
    back = ReturnShipmentRequestedV1(case_id=case.case_id, requested_at=at)
    gone = spares.moved(status=PartsStatus.GIVEN_UP)
    if spares.quoted:
        emits.append(Emit("return", back))
        state = case.moved(stage=Stage.RETURNING, repaired=False, spares=gone)
        return Decision(emits=tuple(emits), state=state)
    issued = ReplacementIssuedV1(case_id=case.case_id, sku=case.item.sku, issued_at=at)
    emits += [Emit("replacement", issued), Emit("return", back)]
    state = case.moved(stage=Stage.RETURNING, resolution=Resolution.REPLACE, spares=gone)
    return Decision(emits=tuple(emits), state=state)
