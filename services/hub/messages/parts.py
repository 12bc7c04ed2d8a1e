"""Spare parts (备件): reservations at a parts supplier, and what they mean for a case.

Kafka-native suppliers read `parts.<code>.orders` and write `parts.<code>.events` themselves.
The reservation id is the case id with a `-P` suffix: one reservation per case, which the
supplier uses as its idempotency key (a repeated request changes nothing).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import NonEmpty, Value


class PartLine(Value):
    """One part number and how many of it the repair needs."""

    part_no: NonEmpty
    quantity: Annotated[int, Field(ge=1, le=100)] = 1


Parts = Annotated[tuple[PartLine, ...], Field(min_length=1)]


class PartsRejection(StrEnum):
    """Why a supplier refuses a reservation outright (no date would help)."""

    UNKNOWN_PART = "unknown_part"
    DISCONTINUED = "discontinued"


class GiveUpReason(StrEnum):
    """Why the hub stopped waiting for the parts of a case."""

    WAIT_EXCEEDED = "wait_exceeded"
    REJECTED = "rejected"


def reservation_id_for(case_id: str) -> str:
    """The reservation of a case's parts: one per case, the supplier's idempotency key."""
    return f"{case_id}-P"


# --- hub -> parts supplier (`parts.<code>.orders`) ---------------------------------------
@CATALOGUE.register
class PartsReservationRequestedV1(Event):
    """Reserve `parts` for the repair of a case and ship them to `center`."""

    event_type = "parts.reservation.requested"
    version = 1

    reservation_id: NonEmpty
    case_id: NonEmpty
    center: NonEmpty
    """The repair center the parts go to."""
    parts: Parts
    requested_at: AwareDatetime


@CATALOGUE.register
class PartsReservationCancelledV1(Event):
    """The hub no longer needs the reservation (it replaced the item instead)."""

    event_type = "parts.reservation.cancel-requested"
    version = 1

    reservation_id: NonEmpty
    case_id: NonEmpty
    reason: NonEmpty


# --- parts supplier -> hub (`parts.<code>.events`) ---------------------------------------
@CATALOGUE.register
class SupplierPartsReservedV1(Event):
    """Every part of the reservation is set aside for the center (also after a shortage)."""

    event_type = "parts.supplier.reserved"
    version = 1

    reservation_id: NonEmpty
    case_id: NonEmpty
    reserved_at: AwareDatetime


@CATALOGUE.register
class SupplierPartsShortV1(Event):
    """Some parts are out of stock; the supplier expects them on `expected_on`."""

    event_type = "parts.supplier.shortage"
    version = 1

    reservation_id: NonEmpty
    case_id: NonEmpty
    missing: Parts
    expected_on: date


@CATALOGUE.register
class SupplierReservationRejectedV1(Event):
    """The supplier cannot serve the reservation at all."""

    event_type = "parts.supplier.rejected"
    version = 1

    reservation_id: NonEmpty
    case_id: NonEmpty
    reason: PartsRejection
    detail: str = ""


# --- hub -> repair center (`repair.<center>.tickets`) ------------------------------------
@CATALOGUE.register
class PartsReadyV1(Event):
    """The parts of the ticket are reserved and on their way: the center may start the repair."""

    event_type = "repair.parts.ready"
    version = 1

    case_id: NonEmpty
    reservation_id: NonEmpty
    parts: Parts


@CATALOGUE.register
class RepairWithdrawnV1(Event):
    """The hub resolved the case otherwise (e.g. a replacement): do no work on the item."""

    event_type = "repair.ticket.withdrawn"
    version = 1

    case_id: NonEmpty
    reason: NonEmpty


# --- case events (`aftersales.cases`) ----------------------------------------------------
@CATALOGUE.register
class PartsRequestedV1(Event):
    """The repair needs parts: the hub asked `supplier` to reserve them."""

    event_type = "aftersales.parts.requested"
    version = 1

    case_id: NonEmpty
    reservation_id: NonEmpty
    supplier: NonEmpty
    parts: Parts
    requested_at: AwareDatetime


@CATALOGUE.register
class PartsShortageV1(Event):
    """The supplier is short of parts: the case waits for them (its own SLA clock runs)."""

    event_type = "aftersales.parts.shortage"
    version = 1

    case_id: NonEmpty
    reservation_id: NonEmpty
    missing: Parts
    expected_on: date
    reported_at: AwareDatetime


@CATALOGUE.register
class PartsReservedV1(Event):
    """The parts are reserved: the repair goes ahead (resumes, `after_shortage`)."""

    event_type = "aftersales.parts.reserved"
    version = 1

    case_id: NonEmpty
    reservation_id: NonEmpty
    after_shortage: bool
    reserved_at: AwareDatetime


@CATALOGUE.register
class PartsGivenUpV1(Event):
    """The hub stopped waiting for the parts and cancelled the reservation (see repair.domain)."""

    event_type = "aftersales.parts.given-up"
    version = 1

    case_id: NonEmpty
    reservation_id: NonEmpty
    reason: GiveUpReason
    detail: str = ""
    given_up_at: AwareDatetime


# --- the repair service's own timer ------------------------------------------------------
@CATALOGUE.register
class PartsWaitDueV1(Event):
    """A timer: the longest the case may wait for the parts of `reservation_id` ends now."""

    event_type = "repair.parts.wait-due"
    version = 1

    case_id: NonEmpty
    reservation_id: NonEmpty
