from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import TypeAdapter

from dispatch import domain
from dispatch.partners import load_partners
from hub.core.errors import EarlyEventError, PermanentError
from hub.core.handler import Decision
from hub.messages.cases import (
    CaseCancelledV1,
    CaseExceptionRaisedV1,
    CaseOpenedV1,
    PickupAcceptedV1,
    PickupCancelledV1,
    PickupFailedV1,
    PickupRequestedV1,
    TrackingStatus,
    TrackingUpdatedV1,
)
from hub.messages.common import ServiceMode
from hub.messages.courier import (
    CourierOrderAcceptedV1,
    CourierOrderRejectedV1,
    CourierRejection,
    CourierTrackingV1,
    PickupCancelRequestedV1,
    PickupOrderV1,
)
from hub.messages.scores import CourierFigures, CourierScoredV1, Standing
from hub.messages.timers import PickupAcceptanceDueV1, PickupRoundDueV1
from intake.domain import decide
from lab.samples import sample_request

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
TABLE = load_partners()


def a_case(number: int = 0, **item: object) -> CaseOpenedV1:
    request = sample_request(number, now=NOW)
    request = request.model_copy(update={"item": request.item.model_copy(update=item)})
    (emit,) = decide(request, None, NOW).emits
    opened = emit.event
    assert isinstance(opened, CaseOpenedV1)
    return opened


def ranked(province: str, category: str, value: str) -> list[str]:
    choices = domain.rank_couriers(
        TABLE, province=province, category=category, value=Decimal(value)
    )
    return [choice.courier.code for choice in choices]


def test_selection_filters_by_coverage_and_ranks_by_sla_then_price() -> None:
    assert ranked("浙江省", "phone", "500") == ["jd", "sf", "yd"]
    assert ranked("新疆维吾尔自治区", "phone", "500") == ["sf", "yd"]  # jd does not go there


def test_selection_respects_category_and_insured_value() -> None:
    assert ranked("浙江省", "large_appliance", "800") == ["jd", "sf"]  # yd takes no appliances
    assert ranked("浙江省", "phone", "4999") == ["jd", "sf"]  # yd insures up to ¥2000 only
    assert ranked("新疆维吾尔自治区", "laptop", "40000") == ["sf"]
    assert ranked("新疆维吾尔自治区", "laptop", "60000") == []


def test_the_reason_of_a_choice_is_recorded() -> None:
    (first, *_) = domain.rank_couriers(
        TABLE, province="浙江省", category="phone", value=Decimal(500)
    )
    assert first.reason == (
        "covers 浙江省, carries phone worth ¥500; pickup SLA 2h at ¥18.00; rank 1 of 3"
    )


def test_no_courier_for_the_address_raises_an_exception_event() -> None:
    case = a_case(0, price=Decimal(60000))
    case = case.model_copy(
        update={"address": case.address.model_copy(update={"province": "西藏自治区"})}
    )
    decision = domain.on_case_opened(case, None, NOW, table=TABLE)
    (emit,) = decision.emits
    assert isinstance(emit.event, CaseExceptionRaisedV1)
    assert emit.event.code == "no_courier"
    assert decision.state is None


def test_an_opened_pickup_case_sends_an_order_with_only_what_a_courier_needs() -> None:
    case = a_case(0)
    planned = domain.on_case_opened(case, None, NOW, table=TABLE)
    (request,) = (emit.event for emit in planned.emits)
    assert isinstance(request, PickupRequestedV1)
    assert (request.courier, request.fallback) == ("jd", ("sf",))  # yd insures too little
    assert planned.state is not None
    decision = domain.on_pickup_requested(request, planned.state, NOW, table=TABLE)
    order, due = (emit.event for emit in decision.emits)
    assert isinstance(order, PickupOrderV1)
    assert decision.emits[0].partner == "jd"
    assert order.order_id == f"{case.case_id}-inbound-1"
    assert set(order.sender.model_dump()) == {
        "name",
        "phone",
        "province",
        "city",
        "district",
        "street",
    }
    assert order.insured  # a ¥4999 phone travels insured
    assert isinstance(due, PickupAcceptanceDueV1)
    assert decision.emits[1].delay == timedelta(minutes=2)


def test_the_courier_read_back_is_the_one_ordered_whatever_a_second_choice_said() -> None:
    # Dispatch chose jd and was killed before it recorded the case; chosen again later (the
    # scores moved), sf. Both requests carry one event id, so only the first one read comes
    # back here (the inbox drops the second): exactly one courier gets an order.
    case = a_case(0)
    first = domain.on_case_opened(case, None, NOW, table=TABLE)
    again = domain.on_case_opened(case, None, NOW, table=TABLE, scores=suspended("jd"))
    (chosen,), (second,) = (tuple(e.event for e in d.emits) for d in (first, again))
    assert isinstance(chosen, PickupRequestedV1)
    assert isinstance(second, PickupRequestedV1)
    assert (chosen.courier, second.courier) == ("jd", "sf")
    assert (first.emits[0].role, again.emits[0].role) == ("requested-1", "requested-1")
    # The later choice's state was the one recorded; the request read back decides.
    assert again.state is not None
    sent = domain.on_pickup_requested(chosen, again.state, NOW, table=TABLE)
    assert [(e.role, e.partner) for e in sent.emits] == [("order-1", "jd"), ("due-1", None)]
    assert isinstance(sent.state, domain.Shipment)
    assert (sent.state.courier, sent.state.remaining) == ("jd", ("sf",))
    assert sent.state.status is domain.OrderStatus.REQUESTED
    # A request of an attempt already sent (a fallback's, or a repeat) sends nothing.
    assert domain.on_pickup_requested(chosen, sent.state, NOW, table=TABLE) == Decision()


def test_a_case_cancelled_before_its_order_went_out_sends_none() -> None:
    case = a_case(0)
    planned = domain.on_case_opened(case, None, NOW, table=TABLE)
    (request,) = (emit.event for emit in planned.emits)
    assert isinstance(request, PickupRequestedV1)
    cancel = CaseCancelledV1(
        case_id=case.case_id, request_id="RQ", reason="changed my mind", cancelled_at=NOW
    )
    cancelled = domain.on_case_cancelled(cancel, planned.state, NOW)
    assert [type(e.event) for e in cancelled.emits] == [PickupCancelledV1]
    assert domain.on_pickup_requested(request, cancelled.state, NOW, table=TABLE) == Decision()


def test_onsite_and_self_ship_cases_are_not_dispatched() -> None:
    case = a_case(0).model_copy(update={"service_mode": ServiceMode.SELF_SHIP})
    assert domain.on_case_opened(case, None, NOW, table=TABLE).emits == ()


def opened_state(number: int = 0) -> tuple[str, domain.Dispatch]:
    """A case whose first order went out (its request read back)."""
    case = a_case(number)
    decision = domain.on_case_opened(case, None, NOW, table=TABLE)
    (request,) = (emit.event for emit in decision.emits)
    assert isinstance(request, PickupRequestedV1)
    assert decision.state is not None
    sent = domain.on_pickup_requested(request, decision.state, NOW, table=TABLE)
    assert sent.state is not None
    return case.case_id, sent.state


def suspended(courier: str) -> domain.Scores:
    return domain.Scores({courier: CourierScoredV1(
        courier=courier, score=0.2, standing=Standing.SUSPENDED, acceptance_rate=0.2,
        on_time_rate=1, exception_rate=0, damage_rate=0, sla_breach_rate=0,
        figures=CourierFigures(), window_s=3600, scored_at=NOW,
    )})  # fmt: skip


def test_rejection_falls_back_to_the_next_courier_then_to_an_exception() -> None:
    case_id, state = opened_state()
    reject = refusal(case_id, 1, CourierRejection.NOT_COVERED, "NOT_COVERED")
    decision = domain.on_rejected(reject, state, NOW, table=TABLE)
    failed, order, requested, _ = (emit.event for emit in decision.emits)
    assert isinstance(failed, PickupFailedV1)
    assert failed.code == "not_covered"
    assert isinstance(order, PickupOrderV1)
    assert order.order_id == f"{case_id}-inbound-2"
    assert decision.emits[1].partner == "sf"
    assert isinstance(requested, PickupRequestedV1)
    assert requested.reason == "fallback after jd: not_covered"
    assert decision.state is not None

    last = refusal(case_id, 2, CourierRejection.REFUSED, "REFUSED")
    final = domain.on_rejected(last, decision.state, NOW, table=TABLE)
    assert [type(emit.event) for emit in final.emits] == [PickupFailedV1, CaseExceptionRaisedV1]


def due(case_id: str, attempt: int, courier: str) -> PickupAcceptanceDueV1:
    return PickupAcceptanceDueV1(
        case_id=case_id, order_id=f"{case_id}-inbound-{attempt}", courier=courier
    )


def refusal(
    case_id: str,
    attempt: int,
    reason: CourierRejection = CourierRejection.REFUSED,
    raw_code: str = "X",
) -> CourierOrderRejectedV1:
    return CourierOrderRejectedV1(
        order_id=f"{case_id}-inbound-{attempt}", case_id=case_id, reason=reason, raw_code=raw_code
    )


def acceptance(case_id: str, attempt: int, waybill_no: str) -> CourierOrderAcceptedV1:
    return CourierOrderAcceptedV1(
        order_id=f"{case_id}-inbound-{attempt}",
        case_id=case_id,
        waybill_no=waybill_no,
        accepted_at=NOW,
    )


def withdrawn(decision: Decision[domain.Dispatch]) -> list[tuple[str | None, str]]:
    """(courier, order id) of each withdrawal a decision sends."""
    return [
        (emit.partner, emit.event.order_id)
        for emit in decision.emits
        if isinstance(emit.event, PickupCancelRequestedV1)
    ]


def test_no_acceptance_in_time_sends_the_next_courier_and_the_first_to_accept_goes() -> None:
    case_id, state = opened_state()
    timed_out = domain.on_acceptance_due(due(case_id, 1, "jd"), state, NOW, table=TABLE)
    failed, order, _, _ = (emit.event for emit in timed_out.emits)
    assert isinstance(failed, PickupFailedV1)
    assert failed.code == "timeout"
    assert isinstance(order, PickupOrderV1)
    assert (timed_out.emits[1].partner, order.order_id) == ("sf", f"{case_id}-inbound-2")
    assert withdrawn(timed_out) == []  # jd's answer may still be on its way

    # jd accepts late, before sf: jd takes the pickup and sf's order is withdrawn.
    late = domain.on_accepted(acceptance(case_id, 1, "JD1"), timed_out.state, NOW)
    scheduled = late.emits[0].event
    assert isinstance(scheduled, PickupAcceptedV1)
    assert (scheduled.order_id, scheduled.courier, scheduled.waybill_no) == (
        f"{case_id}-inbound-1",
        "jd",
        "JD1",
    )
    assert withdrawn(late) == [("sf", f"{case_id}-inbound-2")]
    # sf accepting afterwards is withdrawn again, never scheduled; jd's deadline or sf's
    # changes nothing any more.
    after = domain.on_accepted(acceptance(case_id, 2, "SF2"), late.state, NOW)
    assert withdrawn(after) == [("sf", f"{case_id}-inbound-2")]
    assert after.state is None
    assert domain.on_acceptance_due(due(case_id, 2, "sf"), late.state, NOW, table=TABLE) == (
        Decision()
    )
    tracked = domain.on_tracking(tracking(case_id, "e1", "PICKUP"), late.state, NOW, table=TABLE)
    assert [type(emit.event) for emit in tracked.emits] == [TrackingUpdatedV1]


def test_the_courier_in_force_accepting_withdraws_the_orders_past_their_deadline() -> None:
    case_id, state = opened_state()
    timed_out = domain.on_acceptance_due(due(case_id, 1, "jd"), state, NOW, table=TABLE)
    taken = domain.on_accepted(acceptance(case_id, 2, "SF2"), timed_out.state, NOW)
    assert isinstance(taken.emits[0].event, PickupAcceptedV1)
    assert taken.emits[0].event.courier == "sf"
    assert withdrawn(taken) == [("jd", f"{case_id}-inbound-1")]


def every_courier_timed_out() -> tuple[str, list[str], Decision[domain.Dispatch]]:
    """A case whose every courier's deadline passed unanswered: (case id, couriers, decision)."""
    case_id, state = opened_state()
    couriers = ["jd", *state.remaining] if isinstance(state, domain.Shipment) else []
    decision: Decision[domain.Dispatch] = Decision(state=state)
    for attempt, courier in enumerate(couriers, start=1):
        decision = domain.on_acceptance_due(
            due(case_id, attempt, courier), decision.state, NOW, table=TABLE
        )
    return case_id, couriers, decision


def test_when_every_courier_timed_out_the_open_orders_get_a_last_call() -> None:
    case_id, couriers, decision = every_courier_timed_out()
    failed, last_call = decision.emits
    assert isinstance(failed.event, PickupFailedV1)
    assert isinstance(last_call.event, PickupAcceptanceDueV1)
    assert last_call.event.last_call
    assert last_call.delay == TABLE.courier(couriers[-1]).accept_deadline
    assert withdrawn(decision) == []
    # A late acceptance of the first order still takes the leg; the others are withdrawn.
    late = domain.on_accepted(acceptance(case_id, 1, "JD1"), decision.state, NOW)
    assert isinstance(late.emits[0].event, PickupAcceptedV1)
    assert withdrawn(late) == [
        (courier, f"{case_id}-inbound-{attempt}")
        for attempt, courier in enumerate(couriers, start=1)
        if attempt > 1
    ]
    assert domain.on_acceptance_due(last_call.event, late.state, NOW, table=TABLE) == Decision()


def test_when_the_last_call_passes_every_open_order_is_withdrawn() -> None:
    case_id, couriers, decision = every_courier_timed_out()
    last_call = decision.emits[-1].event
    assert isinstance(last_call, PickupAcceptanceDueV1)
    given_up = domain.on_acceptance_due(last_call, decision.state, NOW, table=TABLE)
    exception = given_up.emits[0].event
    assert isinstance(exception, CaseExceptionRaisedV1)
    assert exception.reason == f"every eligible courier failed; the last: {couriers[-1]} (timeout)"
    assert withdrawn(given_up) == [
        (courier, f"{case_id}-inbound-{attempt}")
        for attempt, courier in enumerate(couriers, start=1)
    ]
    # An acceptance after that is withdrawn: the case is an operator's now.
    late = domain.on_accepted(acceptance(case_id, 1, "JD1"), given_up.state, NOW)
    assert withdrawn(late) == [("jd", f"{case_id}-inbound-1")]
    assert domain.on_acceptance_due(last_call, given_up.state, NOW, table=TABLE) == Decision()


def test_the_last_call_ends_early_when_every_open_order_is_refused() -> None:
    case_id, couriers, decision = every_courier_timed_out()
    state = decision.state
    for attempt in range(1, len(couriers) + 1):
        assert not any(isinstance(e.event, CaseExceptionRaisedV1) for e in decision.emits[2:])
        decision = domain.on_rejected(refusal(case_id, attempt), state, NOW, table=TABLE)
        state = decision.state
    (exception,) = (emit.event for emit in decision.emits)
    assert isinstance(exception, CaseExceptionRaisedV1)
    assert exception.reason.endswith(f"{couriers[-1]} (refused)")
    assert isinstance(state, domain.Shipment)
    assert (state.status, state.open_orders) == (domain.OrderStatus.EXCEPTION, ())


def test_a_refusal_by_the_last_courier_waits_for_the_orders_past_their_deadline() -> None:
    case_id, state = opened_state()
    assert isinstance(state, domain.Shipment)
    couriers = ["jd", *state.remaining]
    decision: Decision[domain.Dispatch] = Decision(state=state)
    for attempt, courier in enumerate(couriers[:-1], start=1):
        decision = domain.on_acceptance_due(
            due(case_id, attempt, courier), decision.state, NOW, table=TABLE
        )
    last = len(couriers)
    refused = domain.on_rejected(refusal(case_id, last), decision.state, NOW, table=TABLE)
    assert [type(emit.event) for emit in refused.emits] == [PickupFailedV1, PickupAcceptanceDueV1]
    # The refused order's own deadline changes nothing; the last call ends the wait.
    waiting = refused.state
    assert domain.on_acceptance_due(
        due(case_id, last, couriers[-1]), waiting, NOW, table=TABLE
    ) == (Decision())
    last_call = refused.emits[-1].event
    assert isinstance(last_call, PickupAcceptanceDueV1)
    given_up = domain.on_acceptance_due(last_call, waiting, NOW, table=TABLE)
    assert isinstance(given_up.emits[0].event, CaseExceptionRaisedV1)
    assert withdrawn(given_up) == [
        (courier, f"{case_id}-inbound-{attempt}")
        for attempt, courier in enumerate(couriers[:-1], start=1)
    ]


def test_a_refusal_of_an_order_past_its_deadline_leaves_the_order_in_force() -> None:
    case_id, state = opened_state()
    timed_out = domain.on_acceptance_due(due(case_id, 1, "jd"), state, NOW, table=TABLE)
    refused_order = refusal(case_id, 1, CourierRejection.CAPACITY, "CAPACITY")
    refused = domain.on_rejected(refused_order, timed_out.state, NOW, table=TABLE)
    assert refused.emits == ()
    assert isinstance(refused.state, domain.Shipment)
    assert refused.state.open_orders == (f"{case_id}-inbound-2",)
    cancel = CaseCancelledV1(
        case_id=case_id, request_id="RQ", reason="changed mind", cancelled_at=NOW
    )
    assert withdrawn(domain.on_case_cancelled(cancel, timed_out.state, NOW)) == [
        ("jd", f"{case_id}-inbound-1"),
        ("sf", f"{case_id}-inbound-2"),
    ]


def test_tracking_of_an_order_past_its_deadline_takes_the_pickup() -> None:
    case_id, state = opened_state()
    timed_out = domain.on_acceptance_due(due(case_id, 1, "jd"), state, NOW, table=TABLE)
    tracked = domain.on_tracking(
        tracking(case_id, "e1", "PICKUP"), timed_out.state, NOW, table=TABLE
    )
    assert [type(emit.event) for emit in tracked.emits] == [
        PickupAcceptedV1,
        PickupCancelRequestedV1,
        TrackingUpdatedV1,
    ]
    assert withdrawn(tracked) == [("sf", f"{case_id}-inbound-2")]
    assert isinstance(tracked.state, domain.Shipment)
    assert (tracked.state.courier, tracked.state.tracking) == ("jd", TrackingStatus.PICKED_UP)


def test_a_shipment_kept_before_open_orders_counts_its_order_in_force_as_open() -> None:
    case_id, state = opened_state()
    assert isinstance(state, domain.Shipment)
    legacy = state.model_copy(update={"open_orders": ()})
    taken = domain.on_accepted(acceptance(case_id, 1, "JD1"), legacy, NOW)
    assert isinstance(taken.emits[0].event, PickupAcceptedV1)


def test_a_deadline_after_acceptance_changes_nothing() -> None:
    case_id, state = opened_state()
    accept = CourierOrderAcceptedV1(
        order_id=f"{case_id}-inbound-1", case_id=case_id, waybill_no="JD1", accepted_at=NOW
    )
    accepted = domain.on_accepted(accept, state, NOW)
    assert isinstance(accepted.emits[0].event, PickupAcceptedV1)
    due = PickupAcceptanceDueV1(case_id=case_id, order_id=f"{case_id}-inbound-1", courier="jd")
    assert domain.on_acceptance_due(due, accepted.state, NOW, table=TABLE) == Decision()


def tracking(case_id: str, event_id: str, code: str) -> CourierTrackingV1:
    return CourierTrackingV1(
        courier_event_id=event_id,
        order_id=f"{case_id}-inbound-1",
        case_id=case_id,
        waybill_no="JD1",
        raw_code=code,
        occurred_at=NOW,
    )


def test_tracking_is_normalised_and_a_repeated_push_changes_nothing() -> None:
    case_id, state = opened_state()
    first = domain.on_tracking(tracking(case_id, "e1", "PICKUP"), state, NOW, table=TABLE)
    implied, emit = first.emits
    assert isinstance(implied.event, PickupAcceptedV1)  # tracking proves the courier took it
    assert isinstance(emit.event, TrackingUpdatedV1)
    assert (emit.event.status, emit.event.raw_code) == (TrackingStatus.PICKED_UP, "PICKUP")
    again = domain.on_tracking(tracking(case_id, "e1", "PICKUP"), first.state, NOW, table=TABLE)
    assert again.emits == ()
    assert again.state is None
    late = CourierOrderAcceptedV1(
        order_id=f"{case_id}-inbound-1", case_id=case_id, waybill_no="JD1", accepted_at=NOW
    )
    assert domain.on_accepted(late, first.state, NOW).emits == ()  # no second acceptance


def test_an_unknown_tracking_code_is_a_permanent_error_naming_the_fix() -> None:
    case_id, state = opened_state()
    with pytest.raises(PermanentError, match=r"courier jd sent unknown tracking code 'TELEPORTED'"):
        domain.on_tracking(tracking(case_id, "e9", "TELEPORTED"), state, NOW, table=TABLE)


def test_cancellation_before_pickup_withdraws_the_order_but_not_after_pickup() -> None:
    case_id, state = opened_state()
    cancel = CaseCancelledV1(
        case_id=case_id, request_id="RQ", reason="changed mind", cancelled_at=NOW
    )
    decision = domain.on_case_cancelled(cancel, state, NOW)
    assert [type(emit.event) for emit in decision.emits] == [
        PickupCancelRequestedV1,
        PickupCancelledV1,
    ]
    picked = domain.on_tracking(tracking(case_id, "e1", "PICKUP"), state, NOW, table=TABLE)
    assert domain.on_case_cancelled(cancel, picked.state, NOW).emits == ()


def test_answers_to_an_order_dispatch_has_not_recorded_yet_are_early() -> None:
    # A crash after sending the second order and before recording it: the courier's answers
    # come back before the rejection that sent the order is read again.
    case_id, state = opened_state()
    unsent = f"{case_id}-inbound-2"
    accept = CourierOrderAcceptedV1(
        order_id=unsent, case_id=case_id, waybill_no="SF1", accepted_at=NOW
    )
    reject = CourierOrderRejectedV1(
        order_id=unsent, case_id=case_id, reason=CourierRejection.CAPACITY, raw_code="8177"
    )
    due = PickupAcceptanceDueV1(case_id=case_id, order_id=unsent, courier="sf")
    with pytest.raises(EarlyEventError, match=f"an acceptance for order {unsent}, which"):
        domain.on_accepted(accept, state, NOW)
    with pytest.raises(EarlyEventError, match="a rejection for order"):
        domain.on_rejected(reject, state, NOW, table=TABLE)
    with pytest.raises(EarlyEventError, match="an acceptance deadline for order"):
        domain.on_acceptance_due(due, state, NOW, table=TABLE)
    moved = tracking(case_id, "e1", "PICKUP").model_copy(update={"order_id": unsent})
    with pytest.raises(EarlyEventError, match="tracking for order"):
        domain.on_tracking(moved, state, NOW, table=TABLE)
    with pytest.raises(EarlyEventError, match="no shipment for"):
        domain.on_accepted(accept, None, NOW)

    # Once the order is sent, the same acceptance schedules the pickup.
    first = refusal(case_id, 1, CourierRejection.CAPACITY, "CAPACITY")
    fallen_back = domain.on_rejected(first, state, NOW, table=TABLE).state
    (scheduled,) = domain.on_accepted(accept, fallen_back, NOW).emits
    assert isinstance(scheduled.event, PickupAcceptedV1)
    assert scheduled.event.order_id == unsent


def test_refusals_for_now_ask_the_couriers_again_in_later_rounds() -> None:
    case_id, state = opened_state()
    assert isinstance(state, domain.Shipment)
    couriers = ["jd", *state.remaining]
    decision: Decision[domain.Dispatch] = Decision(state=state)
    attempt = 0
    for round_ in range(1, domain.MAX_ROUNDS + 1):
        for courier in couriers:
            attempt += 1
            assert isinstance(decision.state, domain.Shipment)
            assert decision.state.courier == courier
            assert decision.state.order_id == f"{case_id}-inbound-{attempt}"
            decision = domain.on_rejected(
                refusal(case_id, attempt, CourierRejection.CAPACITY),
                decision.state,
                NOW,
                table=TABLE,
            )
        if round_ == domain.MAX_ROUNDS:
            break
        # Everyone refused for now: no operator yet, the round's timer instead.
        failed, timer = decision.emits
        assert isinstance(failed.event, PickupFailedV1)
        assert isinstance(timer.event, PickupRoundDueV1)
        assert (timer.event.round, timer.delay) == (round_, max(TABLE.deadlines))
        assert isinstance(decision.state, domain.Shipment)
        assert decision.state.status is domain.OrderStatus.WAITING
        stored = TypeAdapter(domain.Dispatch)
        assert stored.validate_json(stored.dump_json(decision.state)) == decision.state
        decision = domain.on_round_due(timer.event, decision.state, NOW, table=TABLE)
        order, requested, _ = (emit.event for emit in decision.emits)
        assert isinstance(order, PickupOrderV1)
        assert isinstance(requested, PickupRequestedV1)
        assert requested.reason == f"round {round_ + 1}: asked again after refusals for now"
        # The round's timer read again changes nothing.
        assert domain.on_round_due(timer.event, decision.state, NOW, table=TABLE) == Decision()
    _, exception = (emit.event for emit in decision.emits)
    assert isinstance(exception, CaseExceptionRaisedV1)
    assert exception.reason.endswith(f"{couriers[-1]} (capacity)")


def test_a_final_refusal_is_not_asked_again() -> None:
    case_id, state = opened_state()
    first = domain.on_rejected(
        refusal(case_id, 1, CourierRejection.CAPACITY), state, NOW, table=TABLE
    )
    rounds = domain.on_rejected(refusal(case_id, 2), first.state, NOW, table=TABLE)
    timer = rounds.emits[-1].event
    assert isinstance(timer, PickupRoundDueV1)
    again = domain.on_round_due(timer, rounds.state, NOW, table=TABLE)
    assert again.emits[0].partner == "jd"  # sf refused for good: only jd is asked again
    assert isinstance(again.state, domain.Shipment)
    assert again.state.remaining == ()


def test_a_case_cancelled_while_waiting_for_a_round_withdraws_nothing() -> None:
    case_id, state = opened_state()
    first = domain.on_rejected(
        refusal(case_id, 1, CourierRejection.CAPACITY), state, NOW, table=TABLE
    )
    waiting = domain.on_rejected(
        refusal(case_id, 2, CourierRejection.OUT_OF_HOURS), first.state, NOW, table=TABLE
    )
    cancel = CaseCancelledV1(
        case_id=case_id, request_id="RQ", reason="changed mind", cancelled_at=NOW
    )
    cancelled = domain.on_case_cancelled(cancel, waiting.state, NOW)
    assert [type(emit.event) for emit in cancelled.emits] == [PickupCancelledV1]
    timer = waiting.emits[-1].event
    assert isinstance(timer, PickupRoundDueV1)
    assert domain.on_round_due(timer, cancelled.state, NOW, table=TABLE) == Decision()


def test_a_pickup_scan_of_an_order_withdrawn_for_a_round_takes_the_leg() -> None:
    # jd's order passed its deadline, sf refused for now, the last call passed: every order
    # was withdrawn and the leg waits for its next round. jd had taken the order meanwhile
    # and its withdrawal came too late: jd scans the pickup. The item is with jd.
    case_id, state = opened_state()
    late = domain.on_acceptance_due(due(case_id, 1, "jd"), state, NOW, table=TABLE)
    refused = domain.on_rejected(
        refusal(case_id, 2, CourierRejection.CAPACITY), late.state, NOW, table=TABLE
    )
    last_call = refused.emits[-1].event
    assert isinstance(last_call, PickupAcceptanceDueV1)
    assert last_call.last_call
    waiting = domain.on_acceptance_due(last_call, refused.state, NOW, table=TABLE)
    assert isinstance(waiting.state, domain.Shipment)
    assert waiting.state.status is domain.OrderStatus.WAITING
    withdrawn = [e.event for e in waiting.emits if isinstance(e.event, PickupCancelRequestedV1)]
    assert [w.order_id for w in withdrawn] == [f"{case_id}-inbound-1"]

    scanned = domain.on_tracking(tracking(case_id, "e1", "PICKUP"), waiting.state, NOW, table=TABLE)

    accepted, updated = (emit.event for emit in scanned.emits)
    assert isinstance(accepted, PickupAcceptedV1)
    assert (accepted.order_id, accepted.courier) == (f"{case_id}-inbound-1", "jd")
    assert isinstance(updated, TrackingUpdatedV1)
    assert isinstance(scanned.state, domain.Shipment)
    assert scanned.state.status is domain.OrderStatus.ACCEPTED
    round_due = waiting.emits[-1].event
    assert isinstance(round_due, PickupRoundDueV1)
    assert domain.on_round_due(round_due, scanned.state, NOW, table=TABLE) == Decision()
