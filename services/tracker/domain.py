"""Case tracking, pure: fold case events into a status, a timeline and SLA clocks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog
from pydantic import BaseModel, ConfigDict

from hub.core.handler import Decision, Emit
from hub.messages.cases import (
    CaseCancelledV1,
    CaseExceptionRaisedV1,
    CaseOpenedV1,
    CaseRejectedV1,
    PickupAcceptedV1,
    PickupCancelledV1,
    PickupFailedV1,
    PickupRequestedV1,
    TrackingStatus,
    TrackingUpdatedV1,
)
from hub.messages.courier import Leg
from hub.messages.damage import DamageClaimedV1
from hub.messages.insurance import ClaimOutcome, FreightClaimFiledV1, FreightClaimSettledV1
from hub.messages.parts import PartsGivenUpV1, PartsRequestedV1, PartsReservedV1, PartsShortageV1
from hub.messages.repair import (
    CaseClosedV1,
    DiagnosisCompletedV1,
    ItemReceivedV1,
    NotificationRequestedV1,
    QuoteAnsweredV1,
    QuoteIssuedV1,
    RefundClawbackRequestedV1,
    RefundRequestedV1,
    ReplacementIssuedV1,
    Resolution,
    ReturnShipmentRequestedV1,
    VisitReportedV1,
    VisitScheduledV1,
    WorkCompletedV1,
)
from hub.messages.tracker import (
    CaseStatusV1,
    ClockState,
    ComplaintEscalatedV1,
    ExpressRefundState,
    FreightClaimState,
    PickupOrderState,
    RatingRejectedV1,
    RatingState,
    RatingSubmittedV1,
    SlaBreachedV1,
    SlaCheckDueV1,
    SlaClock,
    TimelineEntry,
)
from tracker.observations import with_observations

if TYPE_CHECKING:
    from hub.core.registry import Event
    from tracker.sla import SlaTable

log = structlog.get_logger(__name__)


class Status(StrEnum):
    """Case states; `RANK` orders the main path (docs/domain.md, "Case states")."""

    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    ONSITE = "onsite"
    PICKUP_REQUESTED = "pickup_requested"
    PICKUP_FAILED = "pickup_failed"
    PICKUP_SCHEDULED = "pickup_scheduled"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    RECEIVED = "received"
    DIAGNOSING = "diagnosing"
    AWAITING_CUSTOMER_APPROVAL = "awaiting_customer_approval"
    REPAIRING = "repairing"
    WAITING_FOR_PARTS = "waiting_for_parts"
    REPLACING = "replacing"
    REFUNDING = "refunding"
    RETURN_SHIPPING = "return_shipping"
    DELIVERED = "delivered"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    EXCEPTION = "exception"


# Position on the main path: a case never moves to a lower rank (a late event does not fit).
RANK = {
    Status.SUBMITTED: 0,
    Status.APPROVED: 1,
    Status.ONSITE: 2,
    Status.PICKUP_REQUESTED: 3,
    Status.PICKUP_FAILED: 3,
    Status.PICKUP_SCHEDULED: 4,
    Status.PICKED_UP: 5,
    Status.IN_TRANSIT: 6,
    Status.RECEIVED: 7,
    Status.DIAGNOSING: 8,
    Status.AWAITING_CUSTOMER_APPROVAL: 9,
    Status.REPAIRING: 10,
    Status.WAITING_FOR_PARTS: 10,  # back and forth with repairing while parts are short
    Status.REPLACING: 10,
    Status.REFUNDING: 10,
    Status.RETURN_SHIPPING: 11,
    Status.DELIVERED: 12,
    Status.CLOSED: 13,
}
FINAL = frozenset({Status.CLOSED, Status.REJECTED, Status.CANCELLED})

INBOUND_TRACKING = {
    TrackingStatus.PICKED_UP: Status.PICKED_UP,
    TrackingStatus.IN_TRANSIT: Status.IN_TRANSIT,
    TrackingStatus.OUT_FOR_DELIVERY: Status.IN_TRANSIT,
    TrackingStatus.DELIVERED: Status.IN_TRANSIT,  # at the center's door; `received` is the center's
    TrackingStatus.EXCEPTION: Status.EXCEPTION,
    TrackingStatus.RETURNED: Status.EXCEPTION,
}
OUTBOUND_TRACKING = {
    TrackingStatus.PICKED_UP: Status.RETURN_SHIPPING,
    TrackingStatus.IN_TRANSIT: Status.RETURN_SHIPPING,
    TrackingStatus.OUT_FOR_DELIVERY: Status.RETURN_SHIPPING,
    TrackingStatus.DELIVERED: Status.DELIVERED,
    TrackingStatus.EXCEPTION: Status.EXCEPTION,
    TrackingStatus.RETURNED: Status.EXCEPTION,
}
# Tracking that proves the parcel left the customer: the first one stops the pickup clock.
PICKED = frozenset(
    {
        TrackingStatus.PICKED_UP,
        TrackingStatus.IN_TRANSIT,
        TrackingStatus.OUT_FOR_DELIVERY,
        TrackingStatus.DELIVERED,
    }
)

TRACKED: tuple[type[Event], ...] = (
    CaseOpenedV1, CaseRejectedV1, CaseCancelledV1, CaseExceptionRaisedV1, PickupRequestedV1,
    PickupAcceptedV1, PickupFailedV1, PickupCancelledV1, TrackingUpdatedV1, ItemReceivedV1,
    DiagnosisCompletedV1, QuoteIssuedV1, QuoteAnsweredV1, WorkCompletedV1, RefundRequestedV1,
    ReplacementIssuedV1, ReturnShipmentRequestedV1, VisitScheduledV1, VisitReportedV1,
    CaseClosedV1, RatingSubmittedV1, ComplaintEscalatedV1, RefundClawbackRequestedV1,
    PartsRequestedV1, PartsShortageV1, PartsReservedV1, PartsGivenUpV1, DamageClaimedV1,
    FreightClaimFiledV1, FreightClaimSettledV1,
)  # fmt: skip
"""The case events the tracker folds (its SLA timers come on top)."""


def fits(current: Status, target: Status) -> bool:
    """Whether a case in `current` may move to `target`."""
    if current in FINAL:
        return False
    if current is Status.EXCEPTION:
        return target in {Status.EXCEPTION, Status.CLOSED}
    if target is Status.REJECTED:
        return current is Status.SUBMITTED
    if target is Status.CANCELLED:
        return RANK[current] < RANK[Status.PICKED_UP]
    if target in {Status.EXCEPTION, Status.CLOSED}:
        return True
    return RANK[target] >= RANK[current]


@dataclass(frozen=True, slots=True)
class Change:
    """What one event means for the case: the status it leads to (None: no move) and a detail."""

    target: Status | None
    detail: str


class CaseRecord(BaseModel):
    """The tracker's state of one case: its latest snapshot, and the facts already folded in."""

    model_config = ConfigDict(frozen=True)

    snapshot: CaseStatusV1
    seen: tuple[str, ...]
    """Fingerprints of the events folded in: a fact delivered twice counts once."""


@dataclass(frozen=True, slots=True)
class Tracked:
    """The handler's decision, and why an event was not applied (for the log), if it was not."""

    decision: Decision[CaseRecord]
    not_applied: str | None = None
    duplicate: bool = False


class Case:
    """The tracker's working copy of one case while an event is folded in."""

    def __init__(self, snapshot: CaseStatusV1, seen: list[str]) -> None:
        self.snapshot = snapshot
        self.fields: dict[str, object] = {}
        self.milestones = dict(snapshot.milestones)
        self.orders = list(snapshot.pickup_orders)
        self.clocks = {c.clock: c for c in snapshot.clocks}
        self.timeline = list(snapshot.timeline)
        self.seen = seen
        self.emits: list[Emit] = []

    @property
    def status(self) -> Status:
        """The status as it stands now (after any change set on this copy)."""
        return Status(str(self.fields.get("status", self.snapshot.status)))

    @property
    def category(self) -> str:
        """The item category (decides the SLA thresholds)."""
        return str(self.fields.get("category", self.snapshot.category))

    def milestone(self, name: str, at: datetime, *, earliest: bool = False) -> None:
        """Record when the case first reached `name` (the earliest time, for tracking)."""
        known = self.milestones.get(name)
        if known is None or (earliest and at < known):
            self.milestones[name] = at

    def clock(self, clock: SlaClock) -> ClockState:
        """The state of one SLA clock."""
        return self.clocks.get(clock, ClockState(clock=clock))

    def note(self, at: datetime, kind: str, detail: str, *, applied: bool = True) -> None:
        """Append a timeline entry with the current status."""
        self.timeline.append(
            TimelineEntry(at=at, kind=kind, status=self.status, detail=detail, applied=applied)
        )

    def result(self, updated_at: datetime) -> Decision[CaseRecord]:
        """The new snapshot, published and kept, with the emits gathered on the way."""
        snapshot = self.snapshot.model_copy(
            update={
                **self.fields,
                "seq": self.snapshot.seq + 1,
                "updated_at": updated_at,
                "milestones": self.milestones,
                "pickup_orders": tuple(self.orders),
                "clocks": tuple(self.clocks[c] for c in SlaClock if c in self.clocks),
                "timeline": tuple(self.timeline),
            }
        )
        emits = (*self.emits, Emit("status", snapshot))
        return Decision(emits=emits, state=CaseRecord(snapshot=snapshot, seen=tuple(self.seen)))


def load(record: CaseRecord | None, case_id: str, at: datetime) -> Case:
    """The case as the tracker last saw it, or a fresh one in `submitted`."""
    if record is None:
        snapshot = CaseStatusV1(case_id=case_id, status=Status.SUBMITTED, seq=0, updated_at=at)
        return Case(snapshot, [])
    return Case(record.snapshot, list(record.seen))


def fingerprint(event: Event) -> str:
    """What makes two deliveries the same fact: the courier's event id, else the whole body."""
    if isinstance(event, TrackingUpdatedV1):
        return f"tracking:{event.courier}:{event.courier_event_id}"
    digest = hashlib.sha256(event.to_bytes()).hexdigest()[:20]
    return f"{event.event_type}:{digest}"


def business_time(event: Event, default: datetime) -> datetime:
    """When the event happened by its own account (`*_at`), else when it was published."""
    for name in type(event).model_fields:
        value = getattr(event, name)
        if name.endswith("_at") and isinstance(value, datetime):
            return value
    return default


def track(
    event: Event, record: CaseRecord | None, at: datetime, *, sla: SlaTable
) -> Decision[CaseRecord]:
    """The handler: fold one case event (or SLA check) in, and log what was not applied."""
    tracked = fold(event, record, at, sla)
    decision = with_observations(event, record, tracked.decision)
    if tracked.duplicate:
        log.info("case_event_duplicate", event_type=event.event_type)
    elif tracked.not_applied is not None:
        # Kept in the timeline, marked not applied; said here so operators see it too.
        log.warning(
            "case_event_not_applied", event_type=event.event_type, reason=tracked.not_applied
        )
    return decision


def fold(event: Event, record: CaseRecord | None, at: datetime, sla: SlaTable) -> Tracked:
    """Fold one case event into the case; `at` is the event's publication time."""
    case_id = str(getattr(event, "case_id", ""))
    case = load(record, case_id, at)
    if isinstance(event, SlaCheckDueV1):
        return _sla_check(case, event, at, sla)
    mark = fingerprint(event)
    if mark in case.seen:
        return Tracked(Decision(), duplicate=True)
    case.seen.append(mark)
    when = business_time(event, at)
    kind = event.event_type.removeprefix("aftersales.")
    if isinstance(event, RatingSubmittedV1):
        return _rating(case, event, when, at)
    change = _change(event)
    if isinstance(event, DiagnosisCompletedV1) and case.snapshot.express_refund is not None:
        # Refunded at pickup: the item stays with the center, whatever it would have done.
        change = Change(Status.REFUNDING, f"{change.detail} (refunded at pickup)")
    # Tracking facts keep their time even when late: the first pickup stays the first.
    if isinstance(event, TrackingUpdatedV1):
        _tracking_facts(case, event, sla)
    if change.target is not None and not fits(case.status, change.target):
        reason = f"does not fit: {case.status} -> {change.target}"
        case.note(when, kind, f"{change.detail} ({reason})".strip(), applied=False)
        return Tracked(case.result(at), not_applied=reason)
    if change.target is not None:
        case.fields["status"] = change.target
    case.note(when, kind, change.detail)
    _apply(case, event, when, at, sla)
    return Tracked(case.result(at))


def _change(event: Event) -> Change:  # noqa: C901, PLR0911, PLR0912 - one case per event family
    """The status an event leads to, and how the timeline describes it."""
    if isinstance(event, CaseOpenedV1):
        return Change(Status.APPROVED, f"{event.request_type} by {event.service_mode}")
    if isinstance(event, CaseRejectedV1):
        return Change(Status.REJECTED, f"{event.reason_code}: {event.reason}")
    if isinstance(event, CaseCancelledV1):
        return Change(Status.CANCELLED, event.reason)
    if isinstance(event, CaseExceptionRaisedV1):
        return Change(Status.EXCEPTION, f"{event.code}: {event.reason}")
    if isinstance(event, PickupRequestedV1):
        return Change(
            Status.PICKUP_REQUESTED if event.leg is Leg.INBOUND else Status.RETURN_SHIPPING,
            f"{event.leg} {event.courier} attempt {event.attempt}",
        )
    if isinstance(event, PickupAcceptedV1):
        return Change(
            Status.PICKUP_SCHEDULED if event.leg is Leg.INBOUND else None,
            f"{event.leg} {event.courier} waybill {event.waybill_no}",
        )
    if isinstance(event, PickupFailedV1):
        return Change(
            Status.PICKUP_FAILED if event.leg is Leg.INBOUND else None,
            f"{event.leg} {event.courier} {event.code}: {event.reason}",
        )
    if isinstance(event, PickupCancelledV1):
        return Change(None, f"{event.courier}: {event.reason}")
    if isinstance(event, TrackingUpdatedV1):
        table = INBOUND_TRACKING if event.leg is Leg.INBOUND else OUTBOUND_TRACKING
        detail = f"{event.leg} {event.status} {event.courier} {event.raw_code} @{event.location}"
        return Change(table.get(event.status), detail.strip())
    if isinstance(event, ItemReceivedV1):
        return Change(Status.RECEIVED, f"serial matches: {event.serial_matches}")
    if isinstance(event, DiagnosisCompletedV1):
        return Change(_after_diagnosis(event), f"{event.fault_type}: {event.resolution}")
    if isinstance(event, QuoteIssuedV1):
        return Change(Status.AWAITING_CUSTOMER_APPROVAL, f"quote {event.amount}")
    if isinstance(event, QuoteAnsweredV1):
        return Change(Status.REPAIRING, "approved" if event.approved else "declined")
    if isinstance(event, WorkCompletedV1):
        return Change(None, f"repaired: {event.repaired}")
    if isinstance(event, RefundRequestedV1 | RefundClawbackRequestedV1):
        return _refund_change(event)
    if isinstance(event, ReplacementIssuedV1):
        return Change(Status.REPLACING, f"new {event.sku}")
    if isinstance(event, ReturnShipmentRequestedV1):
        return Change(Status.RETURN_SHIPPING, "back to the customer")
    if isinstance(event, VisitScheduledV1):
        return Change(Status.ONSITE, "technician booked")
    if isinstance(event, VisitReportedV1):
        return Change(None, f"{event.outcome} {event.notes}".strip())
    if isinstance(event, CaseClosedV1):
        return Change(Status.CLOSED, event.outcome)
    if isinstance(event, ComplaintEscalatedV1):
        return Change(None, f"to {event.escalated_to}: {event.complaint}")
    if isinstance(event, PARTS_EVENTS):
        return _parts_change(event)
    if isinstance(event, DamageClaimedV1):
        return Change(None, _damage_detail(event))
    if isinstance(event, FreightClaimFiledV1 | FreightClaimSettledV1):
        return Change(None, _claim_detail(event))
    return Change(None, "")


def _refund_change(event: RefundRequestedV1 | RefundClawbackRequestedV1) -> Change:
    """An express refund leaves the case where the parcel is; a claw-back follows an exception."""
    if isinstance(event, RefundClawbackRequestedV1):
        return Change(None, f"claw back express refund {event.amount}: {event.reason_code}")
    if event.express:
        return Change(None, f"express refund {event.amount} at pickup")
    return Change(Status.REFUNDING, f"refund {event.amount}")


def _damage_detail(claim: DamageClaimedV1) -> str:
    evidence = f" evidence {claim.evidence_ref}" if claim.evidence_ref else ""
    return (
        f"{claim.leg} {claim.courier} waybill {claim.waybill_no} value {claim.declared_value}: "
        f"{claim.description}{evidence}"
    )


def _claim_detail(event: FreightClaimFiledV1 | FreightClaimSettledV1) -> str:
    """A freight claim's timeline line: what was claimed, or what the insurer answered."""
    if isinstance(event, FreightClaimFiledV1):
        return (
            f"{event.claim_id} ¥{event.amount} from {event.insurer} (policy {event.policy_no}, "
            f"{event.courier} waybill {event.waybill_no})"
        )
    if event.outcome is ClaimOutcome.APPROVED:
        return f"{event.claim_id} approved: ¥{event.paid} paid ({event.insurer_ref})"
    return f"{event.claim_id} rejected: {event.reason_code} {event.reason}".strip()


def _after_diagnosis(event: DiagnosisCompletedV1) -> Status:
    if not event.in_warranty:
        return Status.DIAGNOSING  # a quote follows; the customer decides
    return {
        Resolution.REPAIR: Status.REPAIRING,
        Resolution.REPLACE: Status.REPLACING,
        Resolution.REFUND: Status.REFUNDING,
    }[event.resolution]


def _tracking_facts(case: Case, event: TrackingUpdatedV1, sla: SlaTable) -> None:
    if event.leg is Leg.INBOUND and event.status in PICKED:
        case.milestone("picked_up", event.occurred_at, earliest=True)
        pickup = case.clock(SlaClock.PICKUP)
        if pickup.stopped_at is None or event.occurred_at < pickup.stopped_at:
            case.clocks[SlaClock.PICKUP] = pickup.model_copy(
                update={"stopped_at": event.occurred_at}
            )
            _check(case, SlaClock.PICKUP, event.occurred_at, sla)
    if event.leg is Leg.OUTBOUND and event.status is TrackingStatus.DELIVERED:
        case.milestone("delivered", event.occurred_at, earliest=True)


def _apply(case: Case, event: Event, when: datetime, at: datetime, sla: SlaTable) -> None:  # noqa: C901, PLR0912 - one case per event family
    """Facts, milestones and clocks of an event that fits."""
    if isinstance(event, CaseOpenedV1):
        case.fields.update(
            request_type=event.request_type.value,
            service_mode=event.service_mode.value,
            category=event.item.category,
            fault_code=event.fault.code,
            pickup_window_end=event.pickup_window.end if event.pickup_window else None,
        )
        case.milestone("opened", when)
        _start(case, SlaClock.TURNAROUND, when, now=when, at=at, sla=sla)
    elif isinstance(event, PickupRequestedV1):
        case.orders.append(
            PickupOrderState(
                order_id=event.order_id, courier=event.courier, leg=event.leg, outcome="requested"
            )
        )
        if event.leg is Leg.INBOUND:
            case.milestone("pickup_requested", when)
            window_end = case.fields.get("pickup_window_end", case.snapshot.pickup_window_end)
            start = window_end if isinstance(window_end, datetime) else when
            _start(case, SlaClock.PICKUP, start, now=when, at=at, sla=sla)
        else:
            case.milestone("return_requested", when)
    elif isinstance(event, PickupAcceptedV1 | PickupFailedV1):
        outcome = "accepted" if isinstance(event, PickupAcceptedV1) else "failed"
        case.orders = [
            order.model_copy(update={"outcome": outcome}) if order.order_id == event.order_id
            else order
            for order in case.orders
        ]  # fmt: skip
        if outcome == "accepted" and event.leg is Leg.INBOUND:
            case.fields["courier"] = event.courier
            case.milestone("pickup_accepted", when)
    elif isinstance(event, ItemReceivedV1):
        case.milestone("received", when)
        _start(case, SlaClock.REPAIR, when, now=when, at=at, sla=sla)
    elif isinstance(event, DiagnosisCompletedV1):
        case.fields["fault_type"] = event.fault_type
        case.milestone("diagnosed", when)
    elif isinstance(event, RefundClawbackRequestedV1) or (
        isinstance(event, RefundRequestedV1) and event.express
    ):
        _express(case, event)  # paid at pickup: the center's work is still to come
    elif isinstance(event, WorkCompletedV1 | RefundRequestedV1 | ReplacementIssuedV1):
        case.milestone("work_completed", when)
        _stop(case, SlaClock.REPAIR, when, sla)
    elif isinstance(event, ReturnShipmentRequestedV1):
        case.milestone("return_requested", when)
    elif isinstance(event, ComplaintEscalatedV1):
        case.fields["in_arbitration"] = True
    elif isinstance(event, PARTS_EVENTS):
        _parts_facts(case, event, when, at, sla)
    elif isinstance(event, FreightClaimFiledV1 | FreightClaimSettledV1):
        _claim_facts(case, event)
    elif isinstance(event, CaseClosedV1 | CaseCancelledV1 | CaseRejectedV1):
        case.milestone(case.status.value, when)
        # A withdrawn case breaches nothing: its clocks stop without a verdict.
        for clock in SlaClock:
            _stop(case, clock, when, sla, judge=isinstance(event, CaseClosedV1))


def _express(case: Case, event: RefundRequestedV1 | RefundClawbackRequestedV1) -> None:
    """Record an express refund, or its claw-back, on the case."""
    known = case.fields.get("express_refund", case.snapshot.express_refund)
    paid = known if isinstance(known, ExpressRefundState) else None
    if isinstance(event, RefundRequestedV1):
        state = ExpressRefundState(amount=event.amount, requested_at=event.requested_at)
        case.milestone("express_refunded", event.requested_at)
    else:
        paid = paid or ExpressRefundState(amount=event.amount, requested_at=event.requested_at)
        state = paid.model_copy(
            update={"clawback_reason": event.reason_code.value, "clawback_at": event.requested_at}
        )
        case.milestone("clawback_requested", event.requested_at)
    case.fields["express_refund"] = state


# --- spare parts ------------------------------------------------------------------------
PartsEvent = PartsRequestedV1 | PartsShortageV1 | PartsReservedV1 | PartsGivenUpV1
PARTS_EVENTS = (PartsRequestedV1, PartsShortageV1, PartsReservedV1, PartsGivenUpV1)


def _parts_change(event: PartsEvent) -> Change:
    """A shortage moves the case to waiting for parts; the parts reserved move it back."""
    if isinstance(event, PartsRequestedV1):
        listed = ", ".join(f"{line.part_no} x{line.quantity}" for line in event.parts)
        return Change(None, f"{listed} from {event.supplier}")
    if isinstance(event, PartsShortageV1):
        missing = ", ".join(line.part_no for line in event.missing)
        return Change(Status.WAITING_FOR_PARTS, f"short of {missing}, expected {event.expected_on}")
    if isinstance(event, PartsReservedV1):
        return Change(Status.REPAIRING, "parts arrived" if event.after_shortage else "in stock")
    return Change(None, f"{event.reason}: {event.detail}".strip())


def _parts_facts(
    case: Case, event: PartsEvent, when: datetime, at: datetime, sla: SlaTable
) -> None:
    """Milestones of the reservation; the parts clock runs from the shortage to its end."""
    if isinstance(event, PartsRequestedV1):
        case.milestone("parts_requested", when)
    elif isinstance(event, PartsShortageV1):
        case.milestone("parts_short", when)
        _start(case, SlaClock.PARTS, when, now=when, at=at, sla=sla)
    else:
        milestone = "parts_reserved" if isinstance(event, PartsReservedV1) else "parts_given_up"
        case.milestone(milestone, when)
        _stop(case, SlaClock.PARTS, when, sla)


def _claim_facts(case: Case, event: FreightClaimFiledV1 | FreightClaimSettledV1) -> None:
    """The claim's figures on the snapshot (`hub stats` counts them); an answer may come first."""
    known = case.snapshot.freight_claim
    if isinstance(event, FreightClaimFiledV1):
        if known is None:
            case.fields["freight_claim"] = FreightClaimState(
                claim_id=event.claim_id, insurer=event.insurer, claimed=event.amount
            )
        return
    case.fields["freight_claim"] = FreightClaimState(
        claim_id=event.claim_id,
        insurer=event.insurer,
        claimed=event.claimed,
        outcome=event.outcome.value,
        paid=event.paid,
    )


# --- SLA clocks --------------------------------------------------------------------------
def _start(
    case: Case, clock: SlaClock, start: datetime, *, now: datetime, at: datetime, sla: SlaTable
) -> None:
    """Start `clock` once, escalate what is late already at `now`, schedule a check per level.

    `now` is when the starting event happened, `at` when it was published: checks are due at
    `at` plus a declared delay.
    """
    state = case.clock(clock)
    if state.started_at is not None:
        return
    case.clocks[clock] = state.model_copy(update={"started_at": start})
    _check(case, clock, now, sla)
    delays = sla.timer_delays
    for level, threshold in enumerate(sla.thresholds(case.category, clock), start=1):
        if level in case.clock(clock).breached_levels:
            continue
        wanted = start + threshold - at
        # Timers are due at this event's time plus a declared delay: the first one that
        # reaches the deadline, or the longest (the stopping event still measures exactly).
        delay = next((d for d in delays if d >= wanted), delays[-1])
        due = SlaCheckDueV1(
            case_id=case.snapshot.case_id, clock=clock, level=level, due_at=at + delay
        )
        case.emits.append(Emit.timer(f"sla-check-{clock}-{level}", due, delay))


def _stop(case: Case, clock: SlaClock, at: datetime, sla: SlaTable, *, judge: bool = True) -> None:
    state = case.clock(clock)
    if state.started_at is None or state.stopped_at is not None:
        return
    case.clocks[clock] = state.model_copy(update={"stopped_at": at})
    if judge:
        _check(case, clock, at, sla)


def _check(case: Case, clock: SlaClock, now: datetime, sla: SlaTable) -> None:
    """Escalate, once, each level of `clock` whose threshold the elapsed time (to `now`) reached."""
    state = case.clock(clock)
    if state.started_at is None:
        return
    end = state.stopped_at if state.stopped_at is not None and state.stopped_at < now else now
    elapsed = end - state.started_at
    breached = list(state.breached_levels)
    for level, threshold in enumerate(sla.thresholds(case.category, clock), start=1):
        if elapsed < threshold or level in breached:
            continue
        breached.append(level)
        _escalate(case, clock, level=level, threshold=threshold, elapsed=elapsed, at=end, sla=sla)
    case.clocks[clock] = state.model_copy(update={"breached_levels": tuple(breached)})


def _escalate(
    case: Case,
    clock: SlaClock,
    *,
    level: int,
    threshold: timedelta,
    elapsed: timedelta,
    at: datetime,
    sla: SlaTable,
) -> None:
    case_id = case.snapshot.case_id
    courier = case.fields.get("courier", case.snapshot.courier)
    started = case.clock(clock).started_at
    breach = SlaBreachedV1(
        case_id=case_id,
        clock=clock,
        level=level,
        threshold_s=threshold.total_seconds(),
        elapsed_s=elapsed.total_seconds(),
        category=case.category or "unknown",
        courier=str(courier) if courier else None,
        started_at=started or at,
        breached_at=at,
    )
    milestone = f"sla_{clock}_l{level}"
    ops = sla.ops
    text = (
        f"Case {case_id} ({breach.category}): the {clock} clock ran {elapsed} against "
        f"a level-{level} threshold of {threshold}."
    )
    request = NotificationRequestedV1(
        dedupe_key=f"{case_id}:{milestone}:{ops.channel.value}",
        case_id=case_id,
        milestone=milestone,
        channel=ops.channel,
        address=ops.address,
        locale=ops.locale,
        subject=f"SLA breached: {clock} level {level} on {case_id}",
        body=text,
    )
    case.emits += [
        Emit(f"sla-{clock}-{level}", breach),
        Emit(f"sla-ops-{clock}-{level}", request),
    ]
    case.note(at, "sla.breached", f"{clock} level {level}: ran {elapsed}, threshold {threshold}")


def _sla_check(case: Case, event: SlaCheckDueV1, at: datetime, sla: SlaTable) -> Tracked:
    """A scheduled check: escalate the levels the clock has passed by the check's due time."""
    before = len(case.emits)
    if event.clock in case.clocks and case.status not in {Status.CANCELLED, Status.REJECTED}:
        _check(case, event.clock, event.due_at, sla)
    if len(case.emits) == before:
        return Tracked(Decision())  # in time, or already escalated: nothing changes
    return Tracked(case.result(at))


# --- ratings -----------------------------------------------------------------------------
def _rating(case: Case, event: RatingSubmittedV1, when: datetime, at: datetime) -> Tracked:
    """A rating counts for a closed case, once; otherwise it is refused with a reason."""
    reason = None
    if case.status is not Status.CLOSED:
        reason = f"the case is {case.status}, not closed"
    elif case.snapshot.rating is not None:
        reason = "the case is already rated"
    if reason is None:
        case.fields["rating"] = RatingState(
            score=event.score, comment=event.comment, rated_at=event.rated_at
        )
        case.note(when, "rating.recorded", f"{event.score}/5 {event.comment}".strip())
        return Tracked(case.result(at))
    rejected = RatingRejectedV1(
        case_id=case.snapshot.case_id, status=case.status, reason=reason, rejected_at=when
    )
    case.emits.append(Emit("rating-rejected", rejected))
    case.note(when, "rating.rejected", f"{event.score}/5: {reason}", applied=False)
    return Tracked(case.result(at), not_applied=reason)
