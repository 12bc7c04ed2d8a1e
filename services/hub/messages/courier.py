"""The courier-facing contract: pickup orders out, acceptance and tracking back (per courier topic).

Kafka-native couriers read `courier.<code>.pickup-orders` and write `courier.<code>.events`
themselves; for HTTP couriers the hub's gateway does both on their behalf. Every message about a
case is keyed by its case id.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import Amount, NonEmpty, Phone, TimeWindow, Value


class Leg(StrEnum):
    """Which way the parcel travels."""

    INBOUND = "inbound"
    """Customer to repair center."""
    OUTBOUND = "outbound"
    """Repair center back to the customer."""


class PickupContact(Value):
    """Only what a courier needs to collect or deliver: no ids, no order data."""

    name: NonEmpty
    phone: Phone
    province: NonEmpty
    city: NonEmpty
    district: NonEmpty
    street: NonEmpty


@CATALOGUE.register
class PickupOrderV1(Event):
    """Collect a parcel: `order_id` is the idempotency key (case id + leg + attempt)."""

    event_type = "courier.pickup.ordered"
    version = 1

    order_id: NonEmpty
    case_id: NonEmpty
    leg: Leg
    sender: PickupContact
    receiver: PickupContact
    category: NonEmpty
    declared_value: Amount
    insured: bool
    pickup_window: TimeWindow | None
    ordered_at: AwareDatetime


@CATALOGUE.register
class PickupCancelRequestedV1(Event):
    """Cancel a pickup order that has not been collected yet."""

    event_type = "courier.pickup.cancel-requested"
    version = 1

    order_id: NonEmpty
    case_id: NonEmpty
    reason: str


@CATALOGUE.register
class CourierOrderAcceptedV1(Event):
    """The courier took the order and assigned a waybill number."""

    event_type = "courier.order.accepted"
    version = 1

    order_id: NonEmpty
    case_id: NonEmpty
    waybill_no: NonEmpty
    accepted_at: AwareDatetime


class CourierRejection(StrEnum):
    """Why a courier would not take an order; every one of them means "try another courier"."""

    CAPACITY = "capacity"
    OUT_OF_HOURS = "out_of_hours"
    NOT_COVERED = "not_covered"
    REFUSED = "refused"


@CATALOGUE.register
class CourierOrderRejectedV1(Event):
    """The courier will not take the order."""

    event_type = "courier.order.rejected"
    version = 1

    order_id: NonEmpty
    case_id: NonEmpty
    reason: CourierRejection
    raw_code: str
    detail: str = ""


@CATALOGUE.register
class CourierTrackingV1(Event):
    """One tracking event in the courier's own codes; `courier_event_id` is unique per courier."""

    event_type = "courier.tracking.reported"
    version = 1

    courier_event_id: NonEmpty
    order_id: NonEmpty
    case_id: NonEmpty
    waybill_no: NonEmpty
    raw_code: NonEmpty
    description: str = ""
    location: str = ""
    occurred_at: AwareDatetime


def pickup_order_id(case_id: str, leg: Leg, attempt: int) -> str:
    """Our idempotency key at the courier: case, leg and attempt (`<case_id>-<leg>-<attempt>`)."""
    return f"{case_id}-{leg.value}-{attempt}"


def case_id_of(order_id: str) -> str:
    """The case id inside a pickup order id; ValueError when it is not one of ours."""
    case_id, leg, attempt = [*order_id.rsplit("-", 2), "", ""][:3]
    if not case_id or leg not in set(Leg) or not attempt.isdigit():
        raise ValueError(f"not a hub pickup order id: {order_id!r}")
    return case_id
