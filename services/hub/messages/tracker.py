"""The tracker's messages: case status snapshots, SLA clocks and breaches, ratings, complaints."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import Amount, NonEmpty, Value

Score = Annotated[int, Field(ge=1, le=5)]
Comment = Annotated[str, Field(max_length=2000)]


class SlaClock(StrEnum):
    """The service-level clocks of a case."""

    PICKUP = "pickup"
    """From the end of the pickup window to the first picked-up event."""
    REPAIR = "repair"
    """From the item's arrival at the center to the work completed."""
    TURNAROUND = "turnaround"
    """From the case's opening to its closing."""
    PARTS = "parts"
    """From the supplier's shortage to the parts reserved (or the hub giving up on them)."""


# --- case events (`aftersales.cases`) ----------------------------------------------------
@CATALOGUE.register
class RatingSubmittedV1(Event):
    """The customer rated the service of a case (from the storefront, via intake)."""

    event_type = "aftersales.rating.submitted"
    version = 1

    case_id: NonEmpty
    score: Score
    comment: Comment = ""
    rated_at: AwareDatetime


@CATALOGUE.register
class RatingRejectedV1(Event):
    """A rating was not recorded, e.g. because the case is not closed yet."""

    event_type = "aftersales.rating.rejected"
    version = 1

    case_id: NonEmpty
    status: NonEmpty
    reason: str
    rejected_at: AwareDatetime


@CATALOGUE.register
class ComplaintEscalatedV1(Event):
    """The customer complained: the case goes to the platform's arbitration."""

    event_type = "aftersales.complaint.escalated"
    version = 1

    case_id: NonEmpty
    complaint: Comment
    escalated_to: NonEmpty = "platform_arbitration"
    escalated_at: AwareDatetime


@CATALOGUE.register
class SlaBreachedV1(Event):
    """A case's SLA clock ran past the threshold of `level` (1 is the first, mildest)."""

    event_type = "aftersales.sla.breached"
    version = 1
    minor = 1
    """1.1: the `parts` clock."""

    case_id: NonEmpty
    clock: SlaClock
    level: Annotated[int, Field(ge=1)]
    threshold_s: float
    elapsed_s: float
    category: NonEmpty
    courier: str | None = None
    started_at: AwareDatetime
    breached_at: AwareDatetime


# --- the tracker's own timers ------------------------------------------------------------
@CATALOGUE.register
class SlaCheckDueV1(Event):
    """A timer: look at `clock` of the case again at `due_at`."""

    event_type = "tracker.sla.check-due"
    version = 1
    minor = 1
    """1.1: the `parts` clock."""

    case_id: NonEmpty
    clock: SlaClock
    level: Annotated[int, Field(ge=1)]
    due_at: AwareDatetime


# --- the snapshot (`aftersales.case-status`, compacted, key case id) ----------------------
class TimelineEntry(Value):
    """One line of a case's history; `applied` is false for an event that did not fit."""

    at: AwareDatetime
    kind: NonEmpty
    status: NonEmpty
    """The case status after this entry."""
    detail: str = ""
    applied: bool = True


class ClockState(Value):
    """One SLA clock: when it started and stopped, and the breach levels reached."""

    clock: SlaClock
    started_at: AwareDatetime | None = None
    stopped_at: AwareDatetime | None = None
    breached_levels: tuple[int, ...] = ()


class PickupOrderState(Value):
    """One pickup order of a case and what its courier made of it."""

    order_id: NonEmpty
    courier: NonEmpty
    leg: NonEmpty
    outcome: NonEmpty
    """`requested`, `accepted` or `failed`."""


class RatingState(Value):
    """The customer's rating of a closed case."""

    score: Score
    comment: Comment = ""
    rated_at: AwareDatetime


class ExpressRefundState(Value):
    """An express refund (极速退款) of a case, and its claw-back if the center found a mismatch."""

    amount: Amount
    requested_at: AwareDatetime
    clawback_reason: str | None = None
    """Set once a claw-back was requested: `serial_mismatch` or `customer_damage`."""
    clawback_at: AwareDatetime | None = None


class FreightClaimState(Value):
    """The case's return-freight insurance claim: what was claimed, and the insurer's answer."""

    claim_id: NonEmpty
    insurer: NonEmpty
    claimed: Amount
    outcome: str = "pending"
    """`pending` until the insurer answers, then `approved` or `rejected`."""
    paid: Amount = Decimal("0.00")


@CATALOGUE.register
class CaseStatusV1(Event):
    """The latest status of a case, its milestones, clocks and timeline: what the customer sees."""

    event_type = "aftersales.case.status"
    version = 1
    minor = 1
    """1.1: the `parts` clock, the express refund and the freight claim."""

    case_id: NonEmpty
    status: NonEmpty
    seq: int
    """Grows by one with every change of the case. Only the latest snapshot of a case in a batch
    is produced (the topic is compacted), so a reader may see gaps."""
    updated_at: AwareDatetime
    request_type: str = ""
    service_mode: str = ""
    category: str = ""
    fault_code: str = ""
    fault_type: str | None = None
    courier: str | None = None
    pickup_window_end: AwareDatetime | None = None
    milestones: dict[str, AwareDatetime] = Field(default_factory=dict)
    pickup_orders: tuple[PickupOrderState, ...] = ()
    clocks: tuple[ClockState, ...] = ()
    rating: RatingState | None = None
    in_arbitration: bool = False
    timeline: tuple[TimelineEntry, ...] = ()
    # Left out when unset, so a case without one is the 1.0 snapshot byte for byte.
    express_refund: ExpressRefundState | None = Field(
        default=None, exclude_if=lambda refund: refund is None
    )
    """1.1: the express refund paid at pickup, and its claw-back, if any."""
    # Left out when unset, so a snapshot without a claim keeps the 1.0 bytes.
    freight_claim: FreightClaimState | None = Field(
        default=None, exclude_if=lambda claim: claim is None
    )
    """1.1: the return-freight insurance claim, for an insured return or exchange."""
