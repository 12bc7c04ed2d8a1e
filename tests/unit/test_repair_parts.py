"""Spare parts in the repair domain: reserve once, wait, resume, or give up and replace."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import repair_cases

from dispatch.partners import load_partners
from hub.core.errors import EarlyEventError
from hub.core.handler import Decision, Emit
from hub.messages.parts import (
    GiveUpReason,
    PartLine,
    PartsGivenUpV1,
    PartsReadyV1,
    PartsRejection,
    PartsRequestedV1,
    PartsReservationCancelledV1,
    PartsReservationRequestedV1,
    PartsReservedV1,
    PartsShortageV1,
    PartsWaitDueV1,
    RepairWithdrawnV1,
    SupplierPartsReservedV1,
    SupplierPartsShortV1,
    SupplierReservationRejectedV1,
    reservation_id_for,
)
from hub.messages.repair import (
    CenterDiagnosedV1,
    DiagnosisCompletedV1,
    QuoteAnsweredV1,
    QuoteDecisionV1,
    ReplacementIssuedV1,
    Resolution,
    ReturnShipmentRequestedV1,
)
from repair import domain, parts
from repair.domain import PartsStatus, RepairCase, Stage

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
TABLE = load_partners()
SCREEN = (PartLine(part_no="LCD-X1-OLED", quantity=1),)


def at_center(number: int = 30) -> RepairCase:
    return repair_cases.at_center(number, NOW)


def diagnosis(case: RepairCase, *, quote: Decimal | None = None) -> CenterDiagnosedV1:
    return CenterDiagnosedV1(
        case_id=case.case_id, fault_type="screen_cracked", in_warranty=quote is None,
        resolution=Resolution.REPAIR, quote=quote, parts=SCREEN,
    )  # fmt: skip


def state_of(decision: Decision[RepairCase]) -> RepairCase:
    assert decision.state is not None
    return decision.state


def events(decision: Decision[RepairCase]) -> list[type]:
    return [type(emit.event) for emit in decision.emits]


def waiting(case: RepairCase) -> RepairCase:
    state = parts.on_diagnosed(diagnosis(case), case, NOW, table=TABLE).state
    assert state is not None
    return state


def test_a_diagnosis_needing_parts_reserves_them_once_and_sets_the_wait_timer() -> None:
    case = at_center()
    decision = parts.on_diagnosed(diagnosis(case), case, NOW, table=TABLE)
    assert events(decision) == [
        DiagnosisCompletedV1, PartsRequestedV1, PartsReservationRequestedV1, PartsWaitDueV1,
    ]  # fmt: skip
    diagnosed, _requested, order, _timer = (emit.event for emit in decision.emits)
    assert isinstance(diagnosed, DiagnosisCompletedV1)
    assert diagnosed.parts == SCREEN
    assert isinstance(order, PartsReservationRequestedV1)
    assert order.reservation_id == reservation_id_for(case.case_id) == f"{case.case_id}-P"
    assert (order.center, order.parts) == ("hz", SCREEN)
    assert decision.emits[2].partner == "bjzx"
    assert decision.emits[3].delay == timedelta(hours=168)
    state = decision.state
    assert state is not None
    assert state.spares is not None
    assert (state.stage, state.spares.status, state.spares.supplier) == (
        Stage.WAITING_PARTS, PartsStatus.REQUESTED, "bjzx",
    )  # fmt: skip
    # The diagnosis redelivered (or re-sent with a new id): no second reservation.
    assert parts.on_diagnosed(diagnosis(case), state, NOW, table=TABLE) == Decision()


def test_a_diagnosis_without_parts_or_without_a_supplier_works_as_before() -> None:
    case = at_center()
    plain = diagnosis(case).model_copy(update={"parts": ()})
    decision = parts.on_diagnosed(plain, case, NOW, table=TABLE)
    assert decision == domain.on_diagnosed(plain, case, NOW)
    no_supplier = TABLE.model_copy(update={"parts_suppliers": ()})
    decision = parts.on_diagnosed(diagnosis(case), case, NOW, table=no_supplier)
    assert events(decision) == [DiagnosisCompletedV1]
    assert decision.state is not None
    assert decision.state.stage is Stage.WORKING


def test_reserved_at_once_lets_the_center_start_without_a_customer_message() -> None:
    case = waiting(at_center())
    reserved = SupplierPartsReservedV1(
        reservation_id=reservation_id_for(case.case_id), case_id=case.case_id, reserved_at=NOW
    )
    decision = parts.on_reserved(reserved, case, NOW)
    assert events(decision) == [PartsReservedV1, PartsReadyV1]
    news, ready = decision.emits
    assert isinstance(news.event, PartsReservedV1)
    assert news.event.after_shortage is False
    assert ready.partner == "hz"
    assert decision.state is not None
    assert decision.state.stage is Stage.WORKING
    assert parts.on_reserved(reserved, decision.state, NOW) == Decision()  # a repeat


def test_a_shortage_waits_and_the_parts_arriving_later_resume_the_repair() -> None:
    case = waiting(at_center())
    reservation = reservation_id_for(case.case_id)
    short = SupplierPartsShortV1(
        reservation_id=reservation, case_id=case.case_id, missing=SCREEN,
        expected_on=date(2026, 12, 5),
    )  # fmt: skip
    decision = parts.on_shortage(short, case, NOW)
    assert events(decision) == [PartsShortageV1]
    shortage = decision.emits[0].event
    assert isinstance(shortage, PartsShortageV1)
    assert shortage.expected_on == date(2026, 12, 5)
    case = state_of(decision)
    assert case.spares is not None
    assert (case.stage, case.spares.status) == (Stage.WAITING_PARTS, PartsStatus.SHORT)
    assert parts.on_shortage(short, case, NOW) == Decision()  # the same news twice
    later = short.model_copy(update={"expected_on": date(2026, 12, 9)})
    moved = parts.on_shortage(later, case, NOW)
    assert events(moved) == [PartsShortageV1]
    assert moved.emits[0].role != decision.emits[0].role  # a new fact, a new event id
    arrived = SupplierPartsReservedV1(
        reservation_id=reservation, case_id=case.case_id, reserved_at=NOW
    )
    resumed = parts.on_reserved(arrived, case, NOW + timedelta(days=2))
    assert events(resumed) == [PartsReservedV1, PartsReadyV1]
    news = resumed.emits[0].event
    assert isinstance(news, PartsReservedV1)
    assert news.after_shortage is True
    assert resumed.state is not None
    assert resumed.state.stage is Stage.WORKING


def test_past_the_wait_a_covered_repair_is_replaced_and_the_reservation_cancelled() -> None:
    case = waiting(at_center())
    due = PartsWaitDueV1(case_id=case.case_id, reservation_id=reservation_id_for(case.case_id))
    decision = parts.on_wait_due(due, case, NOW + timedelta(days=7))
    assert events(decision) == [
        PartsGivenUpV1, PartsReservationCancelledV1, RepairWithdrawnV1, ReplacementIssuedV1,
        ReturnShipmentRequestedV1,
    ]  # fmt: skip
    given_up, cancel, withdrawn = (emit.event for emit in decision.emits[:3])
    assert isinstance(given_up, PartsGivenUpV1)
    assert given_up.reason is GiveUpReason.WAIT_EXCEEDED
    assert isinstance(cancel, PartsReservationCancelledV1)
    assert decision.emits[1].partner == "bjzx"
    assert isinstance(withdrawn, RepairWithdrawnV1)
    assert decision.emits[2].partner == "hz"
    state = decision.state
    assert state is not None
    assert state.spares is not None
    assert (state.stage, state.resolution, state.spares.status) == (
        Stage.RETURNING, Resolution.REPLACE, PartsStatus.GIVEN_UP,
    )  # fmt: skip
    # Parts reserved after the hub gave up change nothing; neither does the timer again.
    late = SupplierPartsReservedV1(
        reservation_id=due.reservation_id, case_id=case.case_id, reserved_at=NOW
    )
    assert parts.on_reserved(late, state, NOW) == Decision()
    assert parts.on_wait_due(due, state, NOW) == Decision()


def test_the_timer_after_the_parts_came_changes_nothing() -> None:
    case = waiting(at_center())
    reservation = reservation_id_for(case.case_id)
    reserved = SupplierPartsReservedV1(
        reservation_id=reservation, case_id=case.case_id, reserved_at=NOW
    )
    working = parts.on_reserved(reserved, case, NOW).state
    due = PartsWaitDueV1(case_id=case.case_id, reservation_id=reservation)
    assert parts.on_wait_due(due, working, NOW) == Decision()


def test_a_refused_reservation_gives_up_at_once_with_the_reason() -> None:
    case = waiting(at_center())
    refused = SupplierReservationRejectedV1(
        reservation_id=reservation_id_for(case.case_id), case_id=case.case_id,
        reason=PartsRejection.DISCONTINUED, detail="停产",
    )  # fmt: skip
    decision = parts.on_rejected(refused, case, NOW)
    given_up = decision.emits[0].event
    assert isinstance(given_up, PartsGivenUpV1)
    assert (given_up.reason, given_up.detail) == (GiveUpReason.REJECTED, "discontinued: 停产")
    assert events(decision) == [
        PartsGivenUpV1, RepairWithdrawnV1, ReplacementIssuedV1, ReturnShipmentRequestedV1,
    ]  # fmt: skip


def test_a_quoted_repair_reserves_only_once_approved_and_goes_back_unrepaired_on_give_up() -> None:
    case = at_center()
    quoted = parts.on_diagnosed(diagnosis(case, quote=Decimal("299.00")), case, NOW, table=TABLE)
    assert PartsReservationRequestedV1 not in events(quoted)
    case = state_of(quoted)
    assert case.spares is not None
    assert (case.stage, case.spares.quoted, case.spares.parts) == (Stage.QUOTED, True, SCREEN)
    declined = QuoteAnsweredV1(case_id=case.case_id, approved=False, answered_at=NOW)
    assert events(parts.on_quote_answered(declined, case, NOW, table=TABLE)) == [QuoteDecisionV1]
    approved = declined.model_copy(update={"approved": True})
    decision = parts.on_quote_answered(approved, case, NOW, table=TABLE)
    assert events(decision) == [
        QuoteDecisionV1, PartsRequestedV1, PartsReservationRequestedV1, PartsWaitDueV1,
    ]  # fmt: skip
    case = state_of(decision)
    due = PartsWaitDueV1(case_id=case.case_id, reservation_id=reservation_id_for(case.case_id))
    given_up = parts.on_wait_due(due, case, NOW)
    assert ReplacementIssuedV1 not in events(given_up)
    assert ReturnShipmentRequestedV1 in events(given_up)
    assert given_up.state is not None
    assert (given_up.state.resolution, given_up.state.repaired) == (Resolution.REPAIR, False)


def test_a_case_without_parts_stores_as_before_and_one_with_parts_keeps_them() -> None:
    from hub.core.settings import HubSettings  # noqa: PLC0415
    from repair.service import build_service  # noqa: PLC0415

    service = build_service(HubSettings(), TABLE)
    plain = at_center()
    document = service.dump_state(plain)
    assert document is not None
    assert "spares" not in document
    state = waiting(plain)
    assert service.load_state(service.dump_state(state)) == state


def test_a_stray_reservation_id_is_ignored() -> None:
    case = waiting(at_center())
    stray = SupplierPartsReservedV1(reservation_id="AS-OTHER-P", case_id=case.case_id,
                                    reserved_at=NOW)  # fmt: skip
    assert parts.on_reserved(stray, case, NOW) == Decision()


def test_the_suppliers_answer_before_the_reservation_is_recorded_is_early() -> None:
    # A crash between sending the reservation and recording it: the answer comes first.
    case = at_center()
    answer = SupplierPartsReservedV1(
        reservation_id=reservation_id_for(case.case_id), case_id=case.case_id, reserved_at=NOW
    )
    with pytest.raises(EarlyEventError, match=f"answer to {case.case_id}-P, not reserved yet"):
        parts.on_reserved(answer, case, NOW)
    assert events(parts.on_reserved(answer, waiting(case), NOW)) == [PartsReservedV1, PartsReadyV1]


def test_every_emit_of_the_parts_path_is_routed_by_the_repair_declaration() -> None:
    from hub.core.settings import HubSettings  # noqa: PLC0415
    from repair.service import build_service  # noqa: PLC0415

    service = build_service(HubSettings(), TABLE)
    case = waiting(at_center())
    decision = parts.on_diagnosed(diagnosis(at_center()), at_center(), NOW, table=TABLE)
    due = PartsWaitDueV1(case_id=case.case_id, reservation_id=reservation_id_for(case.case_id))
    emits: list[Emit] = [*decision.emits, *parts.on_wait_due(due, case, NOW).emits]
    topics = {type(emit.event).__name__: service.topic_for(emit) for emit in emits}
    assert topics["PartsReservationRequestedV1"] == "parts.bjzx.orders"
    assert topics["PartsReservationCancelledV1"] == "parts.bjzx.orders"
    assert topics["RepairWithdrawnV1"] == "repair.hz.tickets"
    assert topics["PartsWaitDueV1"] == "repair.timer.168h"
    assert topics["PartsRequestedV1"] == topics["PartsGivenUpV1"] == "aftersales.cases"
    assert "parts.bjzx.events" in service.inputs
