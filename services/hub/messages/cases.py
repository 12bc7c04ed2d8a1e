"""Case lifecycle events on `aftersales.cases`."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import AwareDatetime, Field

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import (
    Address,
    Customer,
    Fault,
    FreightInsurance,
    Item,
    NonEmpty,
    RequestType,
    ServiceMode,
    TimeWindow,
)
from hub.messages.courier import Leg


@CATALOGUE.register
class CaseOpenedV1(Event):
    """The platform accepted a request: a case exists and will be served in `service_mode`."""

    event_type = "aftersales.case.opened"
    version = 1
    minor = 1

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
    # Left out when unset, so a 1.1 case without them is the 1.0 document byte for byte (the
    # states dispatch stored before keep their bytes, and 1.0 readers see nothing new).
    trusted_customer: bool = Field(default=False, exclude_if=lambda trusted: not trusted)
    """1.1: the storefront trusts the customer (what the express-refund policy reads)."""
    freight_insurance: FreightInsurance | None = Field(
        default=None, exclude_if=lambda insurance: insurance is None
    )
    """1.1: the order's return-freight insurance, claimed after the pickup."""


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


@CATALOGUE.register
class CaseCancelledV1(Event):
    """The customer withdrew the request before pickup; any courier order is to be cancelled."""

    event_type = "aftersales.case.cancelled"
    version = 1

    case_id: NonEmpty
    request_id: NonEmpty
    reason: str
    cancelled_at: AwareDatetime


class TrackingStatus(StrEnum):
    """Courier tracking, normalised across couriers (each event keeps the courier's raw code)."""

    CREATED = "created"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    FAILED_ATTEMPT = "failed_attempt"
    EXCEPTION = "exception"
    RETURNED = "returned"
    CANCELLED = "cancelled"


@CATALOGUE.register
class PickupRequestedV1(Event):
    """Dispatch chose a courier for a pickup order; `reason` says why this courier.

    A leg's first order goes once dispatch has read this event back (its choice then holds,
    whatever a decision redone after a crash would choose); a fallback's goes with it.
    """

    event_type = "aftersales.pickup.requested"
    version = 1
    minor = 1

    case_id: NonEmpty
    order_id: NonEmpty
    courier: NonEmpty
    leg: Leg
    attempt: int
    reason: str
    requested_at: AwareDatetime
    fallback: tuple[str, ...] = ()
    """The couriers to ask next, in order, when this one refuses or does not answer in time."""


@CATALOGUE.register
class PickupAcceptedV1(Event):
    """The courier accepted the pickup order: the pickup is scheduled."""

    event_type = "aftersales.pickup.accepted"
    version = 1

    case_id: NonEmpty
    order_id: NonEmpty
    courier: NonEmpty
    leg: Leg
    waybill_no: NonEmpty
    accepted_at: AwareDatetime


@CATALOGUE.register
class PickupFailedV1(Event):
    """A courier rejected the order or did not accept it in time; dispatch tries the next one."""

    event_type = "aftersales.pickup.failed"
    version = 1

    case_id: NonEmpty
    order_id: NonEmpty
    courier: NonEmpty
    leg: Leg
    code: str
    reason: str
    failed_at: AwareDatetime


@CATALOGUE.register
class PickupCancelledV1(Event):
    """The courier order of a cancelled case was withdrawn."""

    event_type = "aftersales.pickup.cancelled"
    version = 1

    case_id: NonEmpty
    order_id: NonEmpty
    courier: NonEmpty
    reason: str
    cancelled_at: AwareDatetime


@CATALOGUE.register
class TrackingUpdatedV1(Event):
    """A normalised tracking event of a case's parcel, with the courier's raw code."""

    event_type = "aftersales.tracking.updated"
    version = 1

    case_id: NonEmpty
    order_id: NonEmpty
    courier: NonEmpty
    leg: Leg
    waybill_no: NonEmpty
    status: TrackingStatus
    raw_code: str
    description: str
    location: str
    courier_event_id: NonEmpty
    occurred_at: AwareDatetime


@CATALOGUE.register
class CaseExceptionRaisedV1(Event):
    """The case cannot go on by itself (no courier left, parcel lost...): people must look."""

    event_type = "aftersales.case.exception"
    version = 1

    case_id: NonEmpty
    code: str
    reason: str
    raised_at: AwareDatetime
