"""Intake decisions, pure: is a request eligible, how is it served, what is its case id.

Intake keeps its state per order item (one open case per item at a time); each output is
keyed by its case id.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from hub.core.envelope import uuid5_hex
from hub.core.handler import Decision, Emit
from hub.messages.cases import CaseCancelledV1, CaseOpenedV1, CaseRejectedV1, RejectionReason
from hub.messages.common import RequestType, ServiceMode
from hub.messages.repair import QuoteAnsweredV1
from hub.messages.tracker import ComplaintEscalatedV1, RatingSubmittedV1

if TYPE_CHECKING:
    from hub.messages.storefront import (
        AfterSalesCancelledV1,
        AfterSalesRequestedV3,
        ComplaintFiledV1,
        QuoteAnswerGivenV1,
        RatingGivenV1,
    )

CASE_NAMESPACE = uuid.UUID("3c8a2f4e-1d7b-5e90-8f16-b2a4c6d8e0f1")
RETURN_WINDOW = timedelta(days=7)
DEFAULT_WARRANTY_MONTHS = 12
WARRANTY_MONTHS = {"large_appliance": 36, "phone": 12, "laptop": 24, "small_appliance": 12}
ONSITE_CATEGORIES = frozenset({"large_appliance"})


class ItemStatus(StrEnum):
    """Whether the order item's latest case is still open."""

    OPEN = "open"
    CANCELLED = "cancelled"


class OrderItem(BaseModel):
    """Intake's state of one order item: its latest case and the request that opened it."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    request_id: str
    status: ItemStatus


def case_id_for(request_id: str) -> str:
    """The case id of a storefront request: the same however often the request arrives."""
    return "AS" + uuid5_hex(CASE_NAMESPACE, request_id)[:18].upper()


def warranty_expiry(category: str, purchased: date) -> date:
    """The last day of the manufacturer warranty for `category`."""
    months = WARRANTY_MONTHS.get(category, DEFAULT_WARRANTY_MONTHS)
    year, month = divmod(purchased.month - 1 + months, 12)
    day = min(purchased.day, 28)  # month ends vary; the 28th exists in every month
    return date(purchased.year + year, month + 1, day)


def service_mode(request: AfterSalesRequestedV3) -> ServiceMode:
    """Large appliances get a technician; small items may be self-shipped; others are picked up."""
    if request.item.category in ONSITE_CATEGORIES:
        return ServiceMode.ONSITE
    if request.preferred_mode is ServiceMode.SELF_SHIP:
        return ServiceMode.SELF_SHIP
    return ServiceMode.PICKUP


def decide(
    request: AfterSalesRequestedV3, item: OrderItem | None, at: datetime
) -> Decision[OrderItem]:
    """Open a case for an eligible request, or reject it (the order item's state unchanged)."""
    case_id = case_id_for(request.request_id)
    expires = warranty_expiry(request.item.category, request.item.purchase_date)
    in_warranty = at.date() <= expires
    rejection: tuple[RejectionReason, str] | None = None
    if item is not None and item.status is ItemStatus.OPEN and item.case_id != case_id:
        rejection = (
            RejectionReason.CASE_ALREADY_OPEN,
            f"order item {request.order_item_id} already has open case {item.case_id}",
        )
    elif request.request_type is RequestType.RETURN:
        if at.date() - request.item.purchase_date > RETURN_WINDOW:
            rejection = (
                RejectionReason.RETURN_WINDOW_CLOSED,
                f"no-reason returns close {RETURN_WINDOW.days} days after purchase",
            )
    elif not in_warranty:
        rejection = (RejectionReason.WARRANTY_EXPIRED, f"warranty ended on {expires.isoformat()}")
    if rejection is not None:
        code, reason = rejection
        rejected = CaseRejectedV1(
            case_id=case_id,
            request_id=request.request_id,
            order_item_id=request.order_item_id,
            reason_code=code,
            reason=reason,
            rejected_at=at,
        )
        return Decision(emits=(Emit("case", rejected, key=case_id),))
    opened = CaseOpenedV1(
        case_id=case_id,
        request_id=request.request_id,
        order_id=request.order_id,
        order_item_id=request.order_item_id,
        request_type=request.request_type,
        service_mode=service_mode(request),
        customer=request.customer,
        address=request.address,
        item=request.item,
        fault=request.fault,
        in_warranty=in_warranty,
        warranty_expires_on=expires,
        pickup_window=request.pickup_window,
        opened_at=at,
        trusted_customer=request.trusted_customer,
        freight_insurance=request.freight_insurance,
    )
    state = OrderItem(case_id=case_id, request_id=request.request_id, status=ItemStatus.OPEN)
    return Decision(emits=(Emit("case", opened, key=case_id),), state=state)


def answer_quote(
    answer: QuoteAnswerGivenV1, item: OrderItem | None, at: datetime
) -> Decision[OrderItem]:
    """The customer's answer to a quote, for the open case of that request."""
    if item is None or item.request_id != answer.request_id:
        return Decision()
    answered = QuoteAnsweredV1(case_id=item.case_id, approved=answer.approved, answered_at=at)
    return Decision(emits=(Emit("quote", answered, key=item.case_id),))


def cancel(
    cancellation: AfterSalesCancelledV1, item: OrderItem | None, at: datetime
) -> Decision[OrderItem]:
    """Cancel the open case of the withdrawn request; nothing when there is none to cancel."""
    if (
        item is None
        or item.status is not ItemStatus.OPEN
        or item.request_id != cancellation.request_id
    ):
        return Decision()
    cancelled = CaseCancelledV1(
        case_id=item.case_id,
        request_id=cancellation.request_id,
        reason=cancellation.reason or "withdrawn by the customer",
        cancelled_at=at,
    )
    state = item.model_copy(update={"status": ItemStatus.CANCELLED})
    return Decision(emits=(Emit("cancel", cancelled, key=item.case_id),), state=state)


def rate(rating: RatingGivenV1, item: OrderItem | None, _at: datetime) -> Decision[OrderItem]:
    """The customer's rating, for the tracker to record once the case is closed."""
    if item is None or item.request_id != rating.request_id:
        return Decision()
    submitted = RatingSubmittedV1(
        case_id=item.case_id,
        score=rating.score,
        comment=rating.comment,
        rated_at=rating.rated_at,
    )
    return Decision(emits=(Emit("rating", submitted, key=item.case_id),))


def escalate(
    complaint: ComplaintFiledV1, item: OrderItem | None, at: datetime
) -> Decision[OrderItem]:
    """A complaint about a case goes to the platform's arbitration."""
    if item is None or item.request_id != complaint.request_id:
        return Decision()
    escalated = ComplaintEscalatedV1(
        case_id=item.case_id, complaint=complaint.complaint, escalated_at=at
    )
    return Decision(emits=(Emit("complaint", escalated, key=item.case_id),))
