"""Intake decisions, pure: is a request eligible, how is it served, what is its case id."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from hub.messages.cases import CaseOpenedV1, CaseRejectedV1, RejectionReason
from hub.messages.common import RequestType, ServiceMode

if TYPE_CHECKING:
    from hub.messages.storefront import AfterSalesRequestedV2

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


def decide(request: AfterSalesRequestedV2, *, at: datetime) -> CaseOpenedV1 | CaseRejectedV1:
    """Open a case for an eligible request, or reject it with a reason code."""
    case_id = case_id_for(request.request_id)
    expires = warranty_expiry(request.item.category, request.item.purchase_date)
    in_warranty = at.date() <= expires
    rejection: tuple[RejectionReason, str] | None = None
    if request.request_type is RequestType.RETURN:
        if at.date() - request.item.purchase_date > RETURN_WINDOW:
            rejection = (
                RejectionReason.RETURN_WINDOW_CLOSED,
                f"no-reason returns close {RETURN_WINDOW.days} days after purchase",
            )
    elif not in_warranty:
        rejection = (RejectionReason.WARRANTY_EXPIRED, f"warranty ended on {expires.isoformat()}")
    if rejection is not None:
        code, reason = rejection
        return CaseRejectedV1(
            case_id=case_id,
            request_id=request.request_id,
            order_item_id=request.order_item_id,
            reason_code=code,
            reason=reason,
            rejected_at=at,
        )
    return CaseOpenedV1(
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
