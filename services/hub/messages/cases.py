"""Case lifecycle events on `aftersales.cases`."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import AwareDatetime

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import (
    Address,
    Customer,
    Fault,
    Item,
    NonEmpty,
    RequestType,
    ServiceMode,
    TimeWindow,
)


@CATALOGUE.register
class CaseOpenedV1(Event):
    """The platform accepted a request: a case exists and will be served in `service_mode`."""

    event_type = "aftersales.case.opened"
    version = 1

    case_id: NonEmpty
    request_id: NonEmpty
    order_id: NonEmpty
    order_item_id: NonEmpty
    request_type: RequestType
    service_mode: ServiceMode
    customer: Customer
    address: Address
    item: Item
    fault: Fault
    in_warranty: bool
    warranty_expires_on: date | None
    pickup_window: TimeWindow | None
    opened_at: AwareDatetime


class RejectionReason(StrEnum):
    """Why a request did not become an open case."""

    WARRANTY_EXPIRED = "warranty_expired"
    RETURN_WINDOW_CLOSED = "return_window_closed"
    CASE_ALREADY_OPEN = "case_already_open"
    CATEGORY_NOT_SERVICED = "category_not_serviced"
    INVALID_REQUEST = "invalid_request"


@CATALOGUE.register
class CaseRejectedV1(Event):
    """The platform turned a request down, with a machine-readable reason."""

    event_type = "aftersales.case.rejected"
    version = 1

    case_id: NonEmpty
    request_id: NonEmpty
    order_item_id: NonEmpty
    reason_code: RejectionReason
    reason: str
    rejected_at: AwareDatetime
