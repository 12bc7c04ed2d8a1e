"""Dispatch decisions, pure: which courier, which pickup order, how to read its tracking."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from hub.core.errors import EarlyEventError, PermanentError
from hub.core.handler import Decision, Emit
from hub.messages.cases import (
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
    CourierRejection,
    Leg,
    PickupCancelRequestedV1,
    PickupContact,
    PickupOrderV1,
    pickup_order_id,
)
from hub.messages.repair import VisitOutcome
from hub.messages.scores import CourierScoredV1, Standing
from hub.messages.timers import PickupAcceptanceDueV1, PickupRoundDueV1

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from dispatch.partners import Courier, PartnerTable
    from hub.messages.cases import CaseCancelledV1
    from hub.messages.courier import (
        CourierOrderAcceptedV1,
        CourierOrderRejectedV1,
        CourierTrackingV1,
    )
    from hub.messages.repair import ReturnShipmentRequestedV1, VisitReportedV1

INSURE_ABOVE = Decimal("1000.00")
"""Items worth more travel insured, so only couriers that insure that much may carry them."""


@dataclass(frozen=True, slots=True)
class Choice:
    """A courier that can take the parcel, and why it ranks where it does."""

    courier: Courier
    reason: str


@dataclass(frozen=True, slots=True)
class Blend:
    """How dispatch weighs a courier's score against its price and pickup SLA.

    Value = score x `score` - price / dearest x `cost` - SLA hours / slowest x `sla`, among
    the eligible couriers (HUB_DISPATCH_WEIGHT_*); the highest value ranks first.
    """

    score: float = 1.0
    cost: float = 0.5
    sla: float = 1.0


@dataclass(frozen=True, slots=True)
class Scores:
    """The couriers' latest scorecards (by code) and the blend to rank them with."""

    cards: Mapping[str, CourierScoredV1] = field(default_factory=dict)
    blend: Blend = field(default_factory=Blend)


NO_SCORES = Scores()
"""No scorecard known: every courier counts as flawless, ranked by SLA and price alone."""


def rank_couriers(
    table: PartnerTable,
    *,
    province: str,
    category: str,
    value: Decimal,
    scores: Scores = NO_SCORES,
) -> list[Choice]:
    """Couriers that cover the province and carry the category (insured), best blend first.

    A suspended courier (below the score floor) is left out, unless no other one is eligible.
    """
    eligible = [
        courier
        for courier in table.couriers
        if courier.covers(province)
        and courier.carries(category)
        and (value <= INSURE_ABOVE or courier.max_insured_value >= value)
    ]
    if not eligible:
        return []
    cards = scores.cards
    suspended = [c for c in eligible if _suspended(cards.get(c.code))]
    offered = [c for c in eligible if c not in suspended] or eligible
    dearest = max(c.price for c in offered)
    slowest = max(c.pickup_sla_hours for c in offered)
    blend = scores.blend

    def worth(courier: Courier) -> float:
        card = cards.get(courier.code)
        score = card.score if card is not None else 1.0
        return (
            blend.score * score
            - blend.cost * float(courier.price / dearest)
            - blend.sla * courier.pickup_sla_hours / slowest
        )

    ranked = sorted(offered, key=lambda c: (-worth(c), c.pickup_sla_hours, c.price, c.code))
    passed = "".join(
        f"; passed over {c.code} (suspended, score {cards[c.code].score:.2f})"
        for c in suspended
        if c not in offered
    )
    return [
        Choice(
            courier,
            f"covers {province}, carries {category} worth ¥{value}; pickup SLA "
            f"{courier.pickup_sla_hours}h at ¥{courier.price}{_score_note(cards.get(courier.code))}"
            f"; rank {rank} of {len(ranked)}{passed}",
        )
        for rank, courier in enumerate(ranked, start=1)
    ]


def _suspended(card: CourierScoredV1 | None) -> bool:
    return card is not None and card.standing is Standing.SUSPENDED


def _score_note(card: CourierScoredV1 | None) -> str:
    if card is None:
        return ""
    suspended = ", suspended: no other courier is eligible" if _suspended(card) else ""
    return f"; score {card.score:.2f}{suspended}"


class OrderStatus(StrEnum):
    """Where the current pickup order stands."""

    REQUESTED = "requested"
    ACCEPTED = "accepted"
    CANCELLED = "cancelled"
    EXCEPTION = "exception"
    WAITING = "waiting"
    """Every courier refused for now (capacity, hours): the leg's next round is due later."""
    PLANNED = "planned"
    """A courier was chosen (`pickup.requested` is out); its order goes once that is read back."""


MAX_ROUNDS = 3
"""Rounds of asking the couriers that refused for now before a case goes to an operator."""

FOR_NOW = frozenset({CourierRejection.CAPACITY.value, CourierRejection.OUT_OF_HOURS.value})
"""Refusals that say "not now" rather than "not us": SF's 8177 at peak, 8096 out of hours."""


class Shipment(BaseModel):
    """Dispatch's state of one case: the order in force, the couriers left to try, what was seen."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    leg: Leg
    status: OrderStatus
    attempt: int
    courier: str
    order: PickupOrderV1
    remaining: tuple[str, ...]
    waybill_no: str | None = None
    tracking: TrackingStatus | None = None
    courier_of_order: dict[str, str] = {}
    seen_events: tuple[str, ...] = ()
    # Not written while empty: a state stored before the field is stored again as it was.
    open_orders: tuple[str, ...] = Field(default=(), exclude_if=lambda orders: not orders)
    """Orders of this leg sent, neither refused nor withdrawn: the first accepted takes the leg.

    A deadline sends the next courier's order without withdrawing the late one, whose answer
    may be on its way behind the hub's own lag (a gateway that is behind); one acceptance
    then withdraws all the others.
    """
    last_call: bool = Field(default=False, exclude_if=lambda waiting: not waiting)
    """Every courier was tried and some orders are still open: one last deadline for them."""
    round: int = Field(default=1, exclude_if=lambda round_: round_ == 1)
    """How many times the leg's couriers were asked; a round ends when none is left to ask."""
    retry_later: tuple[str, ...] = Field(default=(), exclude_if=lambda couriers: not couriers)
    """Couriers of this round that refused for now: the next round asks them again."""

    @property
    def order_id(self) -> str:
        """The id of the order in force."""
        return self.order.order_id


class DormantCase(BaseModel):
    """Dispatch's state of an onsite case, kept in case its technician visit ends in a pickup."""

    model_config = ConfigDict(frozen=True)

    dormant_case: CaseOpenedV1


Dispatch = Shipment | DormantCase
"""What dispatch keeps per case: the shipment in force, or an onsite case not shipped yet."""


def _send(
    shipment: Shipment, courier: Courier, reason: str, at: datetime
) -> tuple[list[Emit], Shipment]:
    """The attempt's order to `courier`, told on the case, with its acceptance deadline."""
    (order, due), sent = _order_out(shipment, courier, at)
    request = _request(sent, courier.code, reason, at)
    return [order, Emit(f"requested-{shipment.attempt}", request), due], sent


def _request(shipment: Shipment, courier: str, reason: str, at: datetime) -> PickupRequestedV1:
    return PickupRequestedV1(
        case_id=shipment.case_id,
        order_id=pickup_order_id(shipment.case_id, shipment.leg, shipment.attempt),
        courier=courier,
        leg=shipment.leg,
        attempt=shipment.attempt,
        reason=reason,
        requested_at=at,
        fallback=shipment.remaining,
    )


def _order_out(
    shipment: Shipment, courier: Courier, at: datetime
) -> tuple[tuple[Emit, Emit], Shipment]:
    """The attempt's order to `courier` and its acceptance deadline; the order is open."""
    order = shipment.order.model_copy(
        update={
            "order_id": pickup_order_id(shipment.case_id, shipment.leg, shipment.attempt),
            "ordered_at": at,
        }
    )
    sent = shipment.model_copy(
        update={
            "order": order,
            "courier": courier.code,
            "status": OrderStatus.REQUESTED,
            "courier_of_order": {**shipment.courier_of_order, order.order_id: courier.code},
            "open_orders": (*shipment.open_orders, order.order_id),
        }
    )
    attempt = shipment.attempt
    due = PickupAcceptanceDueV1(
        case_id=shipment.case_id, order_id=order.order_id, courier=courier.code
    )
    emits = (
        Emit(f"order-{attempt}", order, partner=courier.code),
        Emit.timer(f"due-{attempt}", due, courier.accept_deadline),
    )
    return emits, sent


def _plan(shipment: Shipment, choices: list[Choice], at: datetime) -> Decision[Dispatch]:
    """A new leg's courier, chosen by the scores of the moment: told first, ordered when read back.

    Decided again after a crash (its inputs read again), the choice may differ, as the scores
    moved meanwhile. Both requests carry one event id, so the first one read back is the only
    one ordered: one courier comes, never two.
    """
    first, *rest = choices
    planned = shipment.model_copy(
        update={
            "status": OrderStatus.PLANNED,
            "courier": first.courier.code,
            "remaining": tuple(choice.courier.code for choice in rest),
        }
    )
    request = _request(planned, first.courier.code, first.reason, at)
    return Decision(emits=(Emit(f"requested-{shipment.attempt}", request),), state=planned)


def on_pickup_requested(
    event: PickupRequestedV1, state: Dispatch | None, at: datetime, *, table: PartnerTable
) -> Decision[Dispatch]:
    """A leg's first request read back: its order goes to the courier the request names."""
    if not isinstance(state, Shipment) or state.status is not OrderStatus.PLANNED:
        return Decision()  # a fallback's request (its order went with it), or one read again
    if (event.leg, event.attempt) != (state.leg, state.attempt):
        return Decision()  # a request of an earlier leg
    chosen = state.model_copy(update={"remaining": event.fallback})
    emits, sent = _order_out(chosen, table.courier(event.courier), at)
    return Decision(emits=emits, state=sent)


def on_case_opened(
    case: CaseOpenedV1,
    known: Dispatch | None,
    at: datetime,
    *,
    table: PartnerTable,
    scores: Scores = NO_SCORES,
) -> Decision[Dispatch]:
    """A new case to be picked up is dispatched; one known already (a replay) is left alone."""
    if known is not None:
        return Decision()  # already dispatched (or kept for an onsite visit)
    return _open_shipment(case, table, at, scores)


def _open_shipment(
    case: CaseOpenedV1, table: PartnerTable, at: datetime, scores: Scores = NO_SCORES
) -> Decision[Dispatch]:
    """A case to be picked up gets the best courier's pickup order (or an exception)."""
    if case.service_mode is ServiceMode.ONSITE:
        return Decision(state=DormantCase(dormant_case=case))
    if case.service_mode is not ServiceMode.PICKUP:
        return Decision()
    choices = rank_couriers(
        table,
        province=case.address.province,
        category=case.item.category,
        value=case.item.price,
        scores=scores,
    )
    if not choices:
        exception = CaseExceptionRaisedV1(
            case_id=case.case_id,
            code="no_courier",
            reason=f"no courier covers {case.address.province} for {case.item.category} "
            f"worth ¥{case.item.price}",
            raised_at=at,
        )
        return Decision(emits=(Emit("exception", exception),))
    sender = PickupContact(
        name=case.customer.name,
        phone=case.customer.phone,
        province=case.address.province,
        city=case.address.city,
        district=case.address.district,
        street=case.address.street,
    )
    draft = PickupOrderV1(
        order_id=pickup_order_id(case.case_id, Leg.INBOUND, 1),
        case_id=case.case_id,
        leg=Leg.INBOUND,
        sender=sender,
        receiver=table.center_for(case.item.category).contact,
        category=case.item.category,
        declared_value=case.item.price,
        insured=case.item.price > INSURE_ABOVE,
        pickup_window=case.pickup_window,
        ordered_at=at,
    )
    first, *rest = choices
    shipment = Shipment(
        case_id=case.case_id,
        leg=Leg.INBOUND,
        status=OrderStatus.REQUESTED,
        attempt=1,
        courier=first.courier.code,
        order=draft,
        remaining=tuple(choice.courier.code for choice in rest),
    )
    return _plan(shipment, choices, at)


def _fall_back(
    shipment: Shipment, table: PartnerTable, *, code: str, reason: str, at: datetime
) -> Decision[Dispatch]:
    """The order in force failed: tell why, then try the next courier or raise an exception."""
    failed = PickupFailedV1(
        case_id=shipment.case_id,
        order_id=shipment.order_id,
        courier=shipment.courier,
        leg=shipment.leg,
        code=code,
        reason=reason,
        failed_at=at,
    )
    emits = [Emit(f"failed-{shipment.attempt}", failed)]
    if code in FOR_NOW:
        shipment = _ask_later(shipment, shipment.courier)
    if not shipment.remaining:
        if shipment.open_orders and not shipment.last_call:
            return _last_call(shipment, table, emits)
        return _out_of_couriers(shipment, table, f"{shipment.courier} ({code})", at, emits)
    following, *rest = shipment.remaining
    courier = table.courier(following)
    retry = shipment.model_copy(update={"attempt": shipment.attempt + 1, "remaining": tuple(rest)})
    sent_emits, sent = _send(retry, courier, f"fallback after {shipment.courier}: {code}", at)
    return Decision(emits=(*emits, *sent_emits), state=sent)


def _last_call(shipment: Shipment, table: PartnerTable, emits: list[Emit]) -> Decision[Dispatch]:
    """Every courier was tried, yet orders are open: their answers get one more deadline.

    Under lag an acceptance can be written well after its deadline (a gateway behind); an
    operator should get the case only when no courier has answered even then.
    """
    courier = table.courier(shipment.courier)
    last_call = PickupAcceptanceDueV1(
        case_id=shipment.case_id,
        order_id=shipment.order_id,
        courier=shipment.courier,
        last_call=True,
    )
    emits.append(Emit.timer("last-call", last_call, courier.accept_deadline))
    waiting = shipment.model_copy(update={"last_call": True})
    return Decision(emits=tuple(emits), state=waiting)


def _ask_later(shipment: Shipment, courier: str) -> Shipment:
    if courier in shipment.retry_later:
        return shipment
    return shipment.model_copy(update={"retry_later": (*shipment.retry_later, courier)})


def _out_of_couriers(
    shipment: Shipment, table: PartnerTable, last_failure: str, at: datetime, emits: list[Emit]
) -> Decision[Dispatch]:
    """No courier is left to ask in this round: wait for the next one, or give up."""
    if not shipment.retry_later or shipment.round >= MAX_ROUNDS:
        return _give_up(shipment, last_failure, at, emits)
    # A refusal at peak or out of hours is not an operator's problem yet: ask again later,
    # after the longest acceptance deadline (a timer topic dispatch has anyway).
    due = PickupRoundDueV1(case_id=shipment.case_id, round=shipment.round)
    emits.extend(_withdraw(shipment, shipment.open_orders, "no courier accepted in time"))
    emits.append(Emit.timer(f"round-{shipment.round}", due, max(table.deadlines)))
    waiting = shipment.model_copy(
        update={"status": OrderStatus.WAITING, "open_orders": (), "last_call": False}
    )
    return Decision(emits=tuple(emits), state=waiting)


def on_round_due(
    event: PickupRoundDueV1, state: Dispatch | None, at: datetime, *, table: PartnerTable
) -> Decision[Dispatch]:
    """The leg's next round: the couriers that refused for now get a new order, in turn."""
    shipment = _shipment(state, "a round deadline")
    if shipment.status is not OrderStatus.WAITING or event.round != shipment.round:
        return Decision()  # cancelled since, or a timer of an earlier round read again
    first, *rest = shipment.retry_later
    following = shipment.model_copy(
        update={
            "attempt": shipment.attempt + 1,
            "remaining": tuple(rest),
            "retry_later": (),
            "round": shipment.round + 1,
        }
    )
    reason = f"round {following.round}: asked again after refusals for now"
    emits, sent = _send(following, table.courier(first), reason, at)
    return Decision(emits=tuple(emits), state=sent)


def _give_up(
    shipment: Shipment, last_failure: str, at: datetime, emits: list[Emit]
) -> Decision[Dispatch]:
    """No courier is left: the case goes to an operator and every open order is withdrawn."""
    exception = CaseExceptionRaisedV1(
        case_id=shipment.case_id,
        code="no_courier_left",
        reason=f"every eligible courier failed; the last: {last_failure}",
        raised_at=at,
    )
    emits.append(Emit("exception", exception))
    emits.extend(_withdraw(shipment, shipment.open_orders, "no courier accepted in time"))
    done = shipment.model_copy(
        update={
            "status": OrderStatus.EXCEPTION,
            "open_orders": (),
            "last_call": False,
            "retry_later": (),
        }
    )
    return Decision(emits=tuple(emits), state=done)


def _shipment(state: Dispatch | None, what: str, order_id: str | None = None) -> Shipment:
    """The shipment `order_id` belongs to; early when dispatch has not recorded that order yet.

    An answer can be read before the order it answers is in dispatch's state: a crash came
    between sending the order and recording it, and the event that sent it (a case opened, a
    return requested, a rejection) is read again after the answer, on another topic. It waits
    in a retry tier without holding the case, dead-lettered once attempts run out.
    """
    if not isinstance(state, Shipment):
        raise EarlyEventError(f"{what} for a case dispatch has no shipment for (yet)")
    if order_id not in {None, state.order_id, *state.courier_of_order}:
        raise EarlyEventError(f"{what} for order {order_id}, which dispatch has not sent (yet)")
    if state.status is OrderStatus.REQUESTED and not state.open_orders:
        # Kept before orders stayed open past their deadline: only the order in force is.
        return state.model_copy(update={"open_orders": (state.order_id,)})
    return state


def _cancel_at_courier(order_id: str, shipment: Shipment, reason: str, role: str) -> Emit:
    courier = shipment.courier_of_order.get(order_id, shipment.courier)
    request = PickupCancelRequestedV1(order_id=order_id, case_id=shipment.case_id, reason=reason)
    return Emit(role, request, partner=courier)


def _withdraw(shipment: Shipment, order_ids: Iterable[str], reason: str) -> list[Emit]:
    return [
        _cancel_at_courier(order_id, shipment, reason, f"withdraw-{order_id}")
        for order_id in order_ids
    ]


def _take(
    shipment: Shipment, order_id: str, waybill_no: str, accepted_at: datetime
) -> tuple[list[Emit], Shipment]:
    """An open order was accepted: it takes the leg, and every other open order is withdrawn."""
    courier = shipment.courier_of_order.get(order_id, shipment.courier)
    accepted = PickupAcceptedV1(
        case_id=shipment.case_id,
        order_id=order_id,
        courier=courier,
        leg=shipment.leg,
        waybill_no=waybill_no,
        accepted_at=accepted_at,
    )
    others = [o for o in shipment.open_orders if o != order_id]
    scheduled = shipment.model_copy(
        update={
            "status": OrderStatus.ACCEPTED,
            "waybill_no": waybill_no,
            "courier": courier,
            "order": shipment.order.model_copy(update={"order_id": order_id}),
            "open_orders": (),
            "last_call": False,
            "retry_later": (),
        }
    )
    withdrawn = _withdraw(shipment, others, f"another courier accepted first ({courier})")
    return [Emit("accepted", accepted), *withdrawn], scheduled


def on_accepted(
    event: CourierOrderAcceptedV1, state: Dispatch | None, at: datetime
) -> Decision[Dispatch]:
    """The first acceptance of an open order schedules the pickup; any later one is withdrawn."""
    shipment = _shipment(state, "an acceptance", event.order_id)
    if shipment.status is OrderStatus.REQUESTED and event.order_id in shipment.open_orders:
        emits, scheduled = _take(shipment, event.order_id, event.waybill_no, at)
        return Decision(emits=tuple(emits), state=scheduled)
    if event.order_id == shipment.order_id and shipment.status is not OrderStatus.CANCELLED:
        return Decision()  # a repeated answer, or one after the case went to an operator
    # An acceptance of an order that lost to another, or of a cancelled case: withdraw it, or
    # two couriers would come.
    stale = _cancel_at_courier(event.order_id, shipment, "superseded", "cancel-superseded")
    return Decision(emits=(stale,))


def on_rejected(
    event: CourierOrderRejectedV1, state: Dispatch | None, at: datetime, *, table: PartnerTable
) -> Decision[Dispatch]:
    """The courier refused: the order in force falls back to the next courier."""
    shipment = _shipment(state, "a rejection", event.order_id)
    if shipment.status is not OrderStatus.REQUESTED or event.order_id not in shipment.open_orders:
        return Decision()
    still_open = tuple(o for o in shipment.open_orders if o != event.order_id)
    refused = shipment.model_copy(update={"open_orders": still_open})
    reason = f"{event.reason.value} ({event.raw_code}) {event.detail}".strip()
    if event.order_id != shipment.order_id or shipment.last_call:
        courier = refused.courier_of_order.get(event.order_id, refused.courier)
        if event.reason.value in FOR_NOW:
            refused = _ask_later(refused, courier)
        if still_open:
            return Decision(state=refused)  # an order past its deadline: the rest stand
        return _out_of_couriers(refused, table, f"{courier} ({event.reason.value})", at, [])
    return _fall_back(refused, table, code=event.reason.value, reason=reason, at=at)


def on_acceptance_due(
    event: PickupAcceptanceDueV1, state: Dispatch | None, at: datetime, *, table: PartnerTable
) -> Decision[Dispatch]:
    """No acceptance in time: the next courier gets an order too; the first to accept goes."""
    shipment = _shipment(state, "an acceptance deadline", event.order_id)
    if shipment.status is not OrderStatus.REQUESTED:
        return Decision()
    if event.last_call:
        if not shipment.last_call:
            return Decision()  # taken, or given up, since
        return _out_of_couriers(shipment, table, f"{shipment.courier} (timeout)", at, [])
    if event.order_id != shipment.order_id or event.order_id not in shipment.open_orders:
        return Decision()
    courier = table.courier(shipment.courier)
    return _fall_back(
        shipment,
        table,
        code="timeout",
        reason=f"not accepted within {courier.accept_deadline}",
        at=at,
    )


def on_tracking(
    event: CourierTrackingV1, state: Dispatch | None, at: datetime, *, table: PartnerTable
) -> Decision[Dispatch]:
    """Normalise a courier's tracking code; a repeated push (same courier event id) is dropped."""
    del at  # tracking carries its own time
    shipment = _shipment(state, "tracking", event.order_id)
    if event.courier_event_id in shipment.seen_events:
        return Decision()
    courier = shipment.courier_of_order.get(event.order_id, shipment.courier)
    status = table.courier(courier).tracking_codes.get(event.raw_code)
    if status is None:
        raise PermanentError(
            f"courier {courier} sent unknown tracking code {event.raw_code!r}; "
            "map it in deploy/partners.yaml, then replay"
        )
    updated = TrackingUpdatedV1(
        case_id=shipment.case_id,
        order_id=event.order_id,
        courier=courier,
        leg=shipment.leg,
        waybill_no=event.waybill_no,
        status=status,
        raw_code=event.raw_code,
        description=event.description,
        location=event.location,
        courier_event_id=event.courier_event_id,
        occurred_at=event.occurred_at,
    )
    emits = [Emit(f"tracking-{event.courier_event_id}", updated)]
    if _proves_taken(shipment, event.order_id, status):
        taken, shipment = _take(shipment, event.order_id, event.waybill_no, event.occurred_at)
        emits = [*taken, *emits]
    seen = shipment.model_copy(
        update={"tracking": status, "seen_events": (*shipment.seen_events, event.courier_event_id)}
    )
    return Decision(emits=tuple(emits), state=seen)


PICKED_UP_OR_LATER = frozenset(TrackingStatus) - {TrackingStatus.CREATED, TrackingStatus.CANCELLED}


def _proves_taken(shipment: Shipment, order_id: str, status: TrackingStatus) -> bool:
    """Whether tracking of `order_id` shows its courier took the leg, which no one else has."""
    if shipment.status is OrderStatus.REQUESTED:
        # Tracking of an open order proves the courier took it, even when its acceptance is
        # late or lost: that acceptance, when it comes, then changes nothing.
        return order_id in shipment.open_orders
    # Waiting for a round, every order was withdrawn; a courier whose withdrawal came after
    # it had taken the order scans the pickup: the item is with it.
    return (
        shipment.status is OrderStatus.WAITING
        and status in PICKED_UP_OR_LATER
        and order_id in _orders_of_leg(shipment)
    )


def _orders_of_leg(shipment: Shipment) -> set[str]:
    return {
        pickup_order_id(shipment.case_id, shipment.leg, attempt)
        for attempt in range(1, shipment.attempt + 1)
    }


def on_case_cancelled(
    event: CaseCancelledV1, shipment: Dispatch | None, at: datetime
) -> Decision[Dispatch]:
    """A case cancelled before pickup withdraws its courier order."""
    if not isinstance(shipment, Shipment):
        return Decision()  # never dispatched (self-ship, onsite, or rejected)
    if shipment.status not in {
        OrderStatus.PLANNED,
        OrderStatus.REQUESTED,
        OrderStatus.ACCEPTED,
        OrderStatus.WAITING,
    } or (shipment.tracking in PICKED_UP_OR_LATER):
        return Decision()
    # Planned or waiting for a round, nothing is out with a courier; accepted, the order is.
    nothing_out = shipment.status in {OrderStatus.PLANNED, OrderStatus.WAITING}
    in_force = () if nothing_out else (shipment.order_id,)
    withdrawn = _withdraw(shipment, shipment.open_orders or in_force, event.reason)
    cancelled = PickupCancelledV1(
        case_id=shipment.case_id,
        order_id=shipment.order_id,
        courier=shipment.courier,
        reason=event.reason,
        cancelled_at=at,
    )
    done = shipment.model_copy(
        update={
            "status": OrderStatus.CANCELLED,
            "open_orders": (),
            "last_call": False,
            "retry_later": (),
        }
    )
    return Decision(emits=(*withdrawn, Emit("cancelled", cancelled)), state=done)


def on_visit_needs_workshop(
    event: VisitReportedV1,
    state: Dispatch | None,
    at: datetime,
    *,
    table: PartnerTable,
    scores: Scores = NO_SCORES,
) -> Decision[Dispatch]:
    """An onsite visit that ends in "needs workshop" becomes a pickup of the item."""
    if event.outcome is not VisitOutcome.NEEDS_WORKSHOP or not isinstance(state, DormantCase):
        return Decision()
    case = state.dormant_case.model_copy(update={"service_mode": ServiceMode.PICKUP})
    return _open_shipment(case, table, at, scores)


def on_return_requested(
    event: ReturnShipmentRequestedV1,
    state: Dispatch | None,
    at: datetime,
    *,
    table: PartnerTable,
    scores: Scores = NO_SCORES,
) -> Decision[Dispatch]:
    """The item goes back: an outbound order from the repair center to the customer."""
    inbound = _shipment(state, "a return")
    if inbound.leg is Leg.OUTBOUND:
        return Decision()  # already on its way back
    customer = inbound.order.sender
    choices = rank_couriers(
        table,
        province=customer.province,
        category=inbound.order.category,
        value=inbound.order.declared_value,
        scores=scores,
    )
    if not choices:
        exception = CaseExceptionRaisedV1(
            case_id=event.case_id,
            code="no_courier",
            reason=f"no courier delivers to {customer.province} for the return",
            raised_at=at,
        )
        return Decision(emits=(Emit("exception", exception),))
    outbound = inbound.model_copy(
        update={
            "leg": Leg.OUTBOUND,
            "attempt": 1,
            "waybill_no": None,
            "tracking": None,
            "open_orders": (),
            "last_call": False,
            "round": 1,
            "retry_later": (),
            "order": inbound.order.model_copy(
                update={
                    "leg": Leg.OUTBOUND,
                    "sender": table.center_for(inbound.order.category).contact,
                    "receiver": customer,
                    "pickup_window": None,
                }
            ),
        }
    )
    return _plan(outbound, choices, at)
