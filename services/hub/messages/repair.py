"""The repair-center contract and the repair and notification events of a case."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import Amount, Channel, Fault, Item, NonEmpty
from hub.messages.parts import PartLine

Money = Amount


class Resolution(StrEnum):
    """What the repair center does about the fault."""

    REPAIR = "repair"
    REPLACE = "replace"
    REFUND = "refund"


class ClawbackReason(StrEnum):
    """Why an express refund is to be taken back: the parcel did not hold what was refunded."""

    SERIAL_MISMATCH = "serial_mismatch"
    CUSTOMER_DAMAGE = "customer_damage"


class VisitOutcome(StrEnum):
    """How an onsite technician visit ended."""

    FIXED = "fixed"
    NEEDS_WORKSHOP = "needs_workshop"


# --- hub -> repair center (`repair.<center>.tickets`) -----------------------------------
@CATALOGUE.register
class RepairTicketV1(Event):
    """Open a ticket for an item arriving (or a technician visit, when `onsite`)."""

    event_type = "repair.ticket.opened"
    version = 1

    case_id: NonEmpty
    item: Item
    fault: Fault
    in_warranty: bool
    onsite: bool = False
    waybill_no: str | None = None


@CATALOGUE.register
class QuoteDecisionV1(Event):
    """The customer's answer to an out-of-warranty quote, passed on to the center."""

    event_type = "repair.quote.decided"
    version = 1

    case_id: NonEmpty
    approved: bool


# --- repair center -> hub (`repair.<center>.events`) --------------------------------------
@CATALOGUE.register
class CenterItemReceivedV1(Event):
    """The center unpacked the parcel and read the serial number."""

    event_type = "repair.center.item-received"
    version = 1
    minor = 1
    """1.1: the parcel's condition on arrival (`damaged`, what and the evidence)."""

    case_id: NonEmpty
    serial_number: NonEmpty
    damaged: bool = False
    """The item arrived damaged in transit (运输损坏): the hub claims against the courier."""
    damage_description: str = ""
    evidence_ref: str | None = None
    """The center's reference to its evidence, e.g. the id of the unpacking photo."""


@CATALOGUE.register
class CenterDiagnosedV1(Event):
    """The center's diagnosis; a quote when the repair is not covered; the parts it needs."""

    event_type = "repair.center.diagnosed"
    version = 1
    minor = 1

    case_id: NonEmpty
    fault_type: NonEmpty
    in_warranty: bool
    resolution: Resolution
    quote: Money | None = None
    # Left out when false: a 1.1 report without damage is the 1.0 document byte for byte.
    customer_damage: bool = Field(default=False, exclude_if=lambda damaged: not damaged)
    """1.1: the item was damaged by the customer (人为损坏), not by a fault or in transit."""
    parts: tuple[PartLine, ...] = ()
    """Spare parts the repair needs beyond the center's own stock (1.1)."""


@CATALOGUE.register
class CenterWorkCompletedV1(Event):
    """The center finished (or, after a declined quote, gave up) and the item can go back."""

    event_type = "repair.center.work-completed"
    version = 1

    case_id: NonEmpty
    resolution: Resolution
    repaired: bool
    parts_used: tuple[str, ...] = ()


@CATALOGUE.register
class CenterVisitReportedV1(Event):
    """A technician visited the customer."""

    event_type = "repair.center.visit-reported"
    version = 1

    case_id: NonEmpty
    outcome: VisitOutcome
    notes: str = ""


# --- case events (`aftersales.cases`) ----------------------------------------------------
@CATALOGUE.register
class ItemReceivedV1(Event):
    """The item arrived at the repair center; `serial_matches` compares it with the order."""

    event_type = "aftersales.repair.item-received"
    version = 1

    case_id: NonEmpty
    serial_number: NonEmpty
    serial_matches: bool
    received_at: AwareDatetime


@CATALOGUE.register
class DiagnosisCompletedV1(Event):
    """The center diagnosed the item."""

    event_type = "aftersales.repair.diagnosed"
    version = 1
    minor = 1

    case_id: NonEmpty
    fault_type: NonEmpty
    in_warranty: bool
    resolution: Resolution
    diagnosed_at: AwareDatetime
    parts: tuple[PartLine, ...] = ()
    """Spare parts the repair needs (1.1)."""


@CATALOGUE.register
class QuoteIssuedV1(Event):
    """Out of warranty: the repair costs `amount`; the case waits for the customer."""

    event_type = "aftersales.repair.quote-issued"
    version = 1

    case_id: NonEmpty
    amount: Money
    issued_at: AwareDatetime


@CATALOGUE.register
class QuoteAnsweredV1(Event):
    """The customer approved or declined the quote (from the storefront, via intake)."""

    event_type = "aftersales.repair.quote-answered"
    version = 1

    case_id: NonEmpty
    approved: bool
    answered_at: AwareDatetime


@CATALOGUE.register
class WorkCompletedV1(Event):
    """The center's work is done; `repaired` is false after a declined quote."""

    event_type = "aftersales.repair.work-completed"
    version = 1

    case_id: NonEmpty
    resolution: Resolution
    repaired: bool
    parts_used: tuple[str, ...]
    completed_at: AwareDatetime


@CATALOGUE.register
class RefundRequestedV1(Event):
    """The storefront is to refund the customer: published once per case."""

    event_type = "aftersales.refund.requested"
    version = 1
    minor = 1

    case_id: NonEmpty
    order_id: NonEmpty
    order_item_id: NonEmpty
    amount: Money
    requested_at: AwareDatetime
    # Left out when false, so an ordinary refund stays the 1.0 document byte for byte.
    express: bool = Field(default=False, exclude_if=lambda express: not express)
    """1.1: an express refund (极速退款), requested at the courier's pickup, before inspection."""


@CATALOGUE.register
class RefundClawbackRequestedV1(Event):
    """The storefront is to take an express refund back: the center found the item not as sold."""

    event_type = "aftersales.refund.clawback-requested"
    version = 1

    case_id: NonEmpty
    order_id: NonEmpty
    order_item_id: NonEmpty
    amount: Money
    """What the express refund paid, to be recovered from the customer."""
    reason_code: ClawbackReason
    reason: str
    requested_at: AwareDatetime


@CATALOGUE.register
class ReplacementIssuedV1(Event):
    """A new unit goes to the customer instead of the repaired one: published once per case."""

    event_type = "aftersales.replacement.issued"
    version = 1

    case_id: NonEmpty
    sku: NonEmpty
    issued_at: AwareDatetime


@CATALOGUE.register
class ReturnShipmentRequestedV1(Event):
    """Send the item (repaired, replaced or unrepaired) back to the customer."""

    event_type = "aftersales.return.requested"
    version = 1

    case_id: NonEmpty
    requested_at: AwareDatetime


@CATALOGUE.register
class VisitScheduledV1(Event):
    """A technician visit was booked with the center."""

    event_type = "aftersales.onsite.visit-scheduled"
    version = 1

    case_id: NonEmpty
    scheduled_at: AwareDatetime


@CATALOGUE.register
class VisitReportedV1(Event):
    """A technician visit ended; `needs_workshop` turns the case into a pickup."""

    event_type = "aftersales.onsite.visit-reported"
    version = 1

    case_id: NonEmpty
    outcome: VisitOutcome
    notes: str
    reported_at: AwareDatetime


@CATALOGUE.register
class CaseClosedV1(Event):
    """Nothing left to do for the case."""

    event_type = "aftersales.case.closed"
    version = 1

    case_id: NonEmpty
    outcome: NonEmpty
    closed_at: AwareDatetime


# --- notifications (`notifications.requests`, `notifications.events`) --------------------
@CATALOGUE.register
class NotificationRequestedV1(Event):
    """One message to one customer on one channel; `dedupe_key` = case + milestone + channel."""

    event_type = "notifications.requested"
    version = 1

    dedupe_key: NonEmpty
    case_id: NonEmpty
    milestone: NonEmpty
    channel: Channel
    address: NonEmpty
    """Phone number, device id or e-mail address."""
    locale: NonEmpty
    subject: str
    body: str


@CATALOGUE.register
class NotificationSentV1(Event):
    """A provider accepted the message."""

    event_type = "notifications.sent"
    version = 1

    dedupe_key: NonEmpty
    case_id: NonEmpty
    channel: Channel
    provider_message_id: str
    sent_at: AwareDatetime
