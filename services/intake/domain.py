"""Intake decisions, pure: is a request eligible, how is it served, what is its case id."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from hub.messages.cases import CaseCancelledV1, CaseOpenedV1, CaseRejectedV1, RejectionReason
from hub.messages.common import RequestType, ServiceMode
from hub.messages.repair import QuoteAnsweredV1
from hub.messages.tracker import ComplaintEscalatedV1, RatingSubmittedV1

if TYPE_CHECKING:
    from hub.core.store.base import JsonObject
    from hub.messages.storefront import (
        AfterSalesCancelledV1,
        AfterSalesRequestedV2,
        ComplaintFiledV1,
        QuoteAnswerGivenV1,
        RatingGivenV1,
    )

CASE_NAMESPACE = uuid.UUID("3c8a2f4e-1d7b-5e90-8f16-b2a4c6d8e0f1")
RETURN_WINDOW = timedelta(days=7)
DEFAULT_WARRANTY_MONTHS = 12
WARRANTY_MONTHS = {"large_appliance": 36, "phone": 12, "laptop": 24, "small_appliance": 12}
ONSITE_CATEGORIES = frozenset({"large_appliance"})


def case_id_for(request_id: str) -> str:
    """The case id of a storefront request: the same however often the request arrives."""
    return "AS" + uuid.uuid5(CASE_NAMESPACE, request_id).hex[:18].upper()


def warranty_expiry(category: str, purchased: date) -> date:
    """The last day of the manufacturer warranty for `category`."""
    months = WARRANTY_MONTHS.get(category, DEFAULT_WARRANTY_MONTHS)
    year, month = divmod(purchased.month - 1 + months, 12)
    day = min(purchased.day, 28)  # month ends vary; the 28th exists in every month
    return date(purchased.year + year, month + 1, day)


def service_mode(request: AfterSalesRequestedV2) -> ServiceMode:
    """Large appliances get a technician; small items may be self-shipped; others are picked up."""
    if request.item.category in ONSITE_CATEGORIES:
        return ServiceMode.ONSITE
    if request.preferred_mode is ServiceMode.SELF_SHIP:
        return ServiceMode.SELF_SHIP
    return ServiceMode.PICKUP


def decide(
    request: AfterSalesRequestedV2, *, at: datetime, item_state: JsonObject | None = None
) -> tuple[CaseOpenedV1 | CaseRejectedV1, JsonObject | None]:
    """Open a case for an eligible request, or reject it; and the order item's new state."""
    case_id = case_id_for(request.request_id)
    expires = warranty_expiry(request.item.category, request.item.purchase_date)
    in_warranty = at.date() <= expires
    rejection: tuple[RejectionReason, str] | None = None
    open_case = item_state.get("case_id") if item_state and item_state["status"] == "open" else None
    if open_case is not None and open_case != case_id:
        rejection = (
            RejectionReason.CASE_ALREADY_OPEN,
            f"order item {request.order_item_id} already has open case {open_case}",
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
        return rejected, None
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
    )
    return opened, {"case_id": case_id, "request_id": request.request_id, "status": "open"}


def answer_quote(
    answer: QuoteAnswerGivenV1, *, at: datetime, item_state: JsonObject | None
) -> QuoteAnsweredV1 | None:
    """The customer's answer to a quote, for the open case of that request."""
    if item_state is None or item_state["request_id"] != answer.request_id:
        return None
    return QuoteAnsweredV1(case_id=item_state["case_id"], approved=answer.approved, answered_at=at)


def cancel(
    cancellation: AfterSalesCancelledV1, *, at: datetime, item_state: JsonObject | None
) -> tuple[CaseCancelledV1, JsonObject] | None:
    """Cancel the open case of the withdrawn request; None when there is nothing to cancel."""
    if (
        item_state is None
        or item_state["status"] != "open"
        or item_state["request_id"] != cancellation.request_id
    ):
        return None
    cancelled = CaseCancelledV1(
        case_id=item_state["case_id"],
        request_id=cancellation.request_id,
        reason=cancellation.reason or "withdrawn by the customer",
        cancelled_at=at,
    )
    return cancelled, {**item_state, "status": "cancelled"}


def rate(rating: RatingGivenV1, *, item_state: JsonObject | None) -> RatingSubmittedV1 | None:
    """The customer's rating, for the tracker to record once the case is closed."""
    if item_state is None or item_state["request_id"] != rating.request_id:
        return None
    return RatingSubmittedV1(
        case_id=item_state["case_id"],
        score=rating.score,
        comment=rating.comment,
        rated_at=rating.rated_at,
    )


def escalate(
    complaint: ComplaintFiledV1, *, at: datetime, item_state: JsonObject | None
) -> ComplaintEscalatedV1 | None:
    """A complaint about a case goes to the platform's arbitration."""
    if item_state is None or item_state["request_id"] != complaint.request_id:
        return None
    return ComplaintEscalatedV1(
        case_id=item_state["case_id"], complaint=complaint.complaint, escalated_at=at
    )
