from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tracker_cases import (
    accepted,
    closed,
    opened,
    rated,
    received,
    repair_life,
    requested,
    tracking,
)

from hub.core.settings import HubSettings
from hub.core.topics import CASES, NOTIFICATION_REQUESTS
from hub.messages.cases import CaseCancelledV1, TrackingStatus
from hub.messages.repair import NotificationRequestedV1
from hub.messages.tracker import (
    CaseStatusV1,
    ComplaintEscalatedV1,
    RatingRejectedV1,
    SlaBreachedV1,
    SlaCheckDueV1,
    SlaClock,
)
from tracker.domain import CaseRecord, Status, Tracked, business_time, fits, fold
from tracker.service import build_service
from tracker.sla import OpsRecipient, SlaTable, Thresholds, load_sla

if TYPE_CHECKING:
    from hub.core.handler import Emit
    from hub.core.registry import Event

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
SLA = SlaTable(
    ops=OpsRecipient(address="ops@example.com"),
    default=Thresholds(pickup=(1 * H, 3 * H), repair=(10 * H, 20 * H), turnaround=(48 * H, 96 * H)),
)
CASE = "AS-UNIT-1"


class Folded:
    def __init__(self) -> None:
        self.state: CaseRecord | None = None
        self.emits: list[Emit] = []
        self.results: list[Tracked] = []

    def feed(self, *events: Event, at: datetime | None = None) -> Folded:
        for event in events:
            result = fold(event, self.state, at or business_time(event, T0), SLA)
            self.results.append(result)
            self.emits += result.decision.emits
            if result.decision.state is not None:
                self.state = result.decision.state
        return self

    @property
    def snapshot(self) -> CaseStatusV1:
        assert self.state is not None
        return self.state.snapshot

    def of(self, kind: type[Any]) -> list[Any]:
        return [emit.event for emit in self.emits if isinstance(emit.event, kind)]


def test_a_repair_case_is_folded_from_opening_to_closing() -> None:
    life = repair_life(CASE, T0, courier="jd", fault_type="screen_defect", score=5)
    run = Folded().feed(*life)
    snapshot = run.snapshot
    assert snapshot.status == Status.CLOSED
    assert snapshot.seq == len(life)
    assert snapshot.fault_type == "screen_defect"
    assert snapshot.courier == "jd"
    assert snapshot.rating is not None
    assert snapshot.rating.score == 5
    assert [entry.status for entry in snapshot.timeline if entry.kind != "sla.breached"] == [
        "approved", "pickup_requested", "pickup_scheduled", "picked_up", "in_transit",
        "in_transit", "received", "repairing", "repairing", "return_shipping",
        "return_shipping", "return_shipping", "return_shipping", "delivered", "closed", "closed",
    ]  # fmt: skip
    assert all(entry.applied for entry in snapshot.timeline)
    assert snapshot.milestones["picked_up"] == T0 + 3 * H
    assert snapshot.milestones["closed"] == T0 + 80 * H
    assert [(o.leg, o.outcome) for o in snapshot.pickup_orders] == [
        ("inbound", "accepted"),
        ("outbound", "accepted"),
    ]
    statuses = [e for e in run.emits if isinstance(e.event, CaseStatusV1)]
    assert [s.event.seq for s in statuses] == list(range(1, len(life) + 1))  # type: ignore[attr-defined]


def test_a_repeated_tracking_push_changes_nothing() -> None:
    run = Folded().feed(opened(CASE, T0), requested(CASE, T0), accepted(CASE, T0))
    first = tracking(CASE, T0 + H, TrackingStatus.PICKED_UP, event_id="E1")
    again = first.model_copy(update={"occurred_at": T0 + 2 * H, "location": "elsewhere"})
    run.feed(first, again)
    assert run.results[-1].duplicate
    assert run.results[-1].decision.state is None
    assert run.results[-1].decision.emits == ()
    assert run.snapshot.seq == 4


def test_tracking_out_of_order_keeps_the_status_and_the_earliest_pickup() -> None:
    run = Folded().feed(opened(CASE, T0), requested(CASE, T0), accepted(CASE, T0))
    run.feed(tracking(CASE, T0 + 0.9 * H, TrackingStatus.IN_TRANSIT, event_id="E2"))
    run.feed(tracking(CASE, T0 + H / 2, TrackingStatus.PICKED_UP, event_id="E1"))
    snapshot = run.snapshot
    assert snapshot.status == Status.IN_TRANSIT
    late = snapshot.timeline[-1]
    assert (late.kind, late.applied, late.status) == ("tracking.updated", False, "in_transit")
    assert run.results[-1].not_applied == "does not fit: in_transit -> picked_up"
    assert snapshot.milestones["picked_up"] == T0 + H / 2
    (pickup,) = [c for c in snapshot.clocks if c.clock is SlaClock.PICKUP]
    assert pickup.stopped_at == T0 + H / 2
    assert run.of(SlaBreachedV1) == []


def test_a_late_inbound_event_after_receipt_never_moves_the_case_back() -> None:
    run = Folded().feed(opened(CASE, T0), requested(CASE, T0), received(CASE, T0 + 5 * H))
    run.feed(tracking(CASE, T0 + 4 * H, TrackingStatus.OUT_FOR_DELIVERY, event_id="E9"))
    assert run.snapshot.status == Status.RECEIVED
    assert not run.snapshot.timeline[-1].applied


def test_a_cancellation_after_pickup_is_recorded_not_applied() -> None:
    run = Folded().feed(opened(CASE, T0), requested(CASE, T0))
    run.feed(tracking(CASE, T0 + H / 2, TrackingStatus.PICKED_UP))
    run.feed(CaseCancelledV1(case_id=CASE, request_id="RQ", reason="changed mind",
                             cancelled_at=T0 + H))  # fmt: skip
    assert run.snapshot.status == Status.PICKED_UP
    assert run.snapshot.timeline[-1].kind == "case.cancelled"
    assert not run.snapshot.timeline[-1].applied


def test_state_rules() -> None:
    assert fits(Status.APPROVED, Status.PICKUP_REQUESTED)
    assert fits(Status.PICKUP_FAILED, Status.PICKUP_REQUESTED)
    assert fits(Status.PICKUP_REQUESTED, Status.PICKUP_FAILED)
    assert not fits(Status.RECEIVED, Status.IN_TRANSIT)
    assert not fits(Status.CLOSED, Status.DELIVERED)
    assert not fits(Status.APPROVED, Status.REJECTED)
    assert fits(Status.PICKUP_SCHEDULED, Status.CANCELLED)
    assert not fits(Status.EXCEPTION, Status.RECEIVED)
    assert fits(Status.EXCEPTION, Status.CLOSED)


def test_a_late_pickup_escalates_each_passed_level_once_with_an_ops_notification() -> None:
    run = Folded().feed(opened(CASE, T0, window_end=T0 + 2 * H), requested(CASE, T0))
    # Picked up 2.5 h after the window's end: level 1 (1 h) is passed, level 2 (3 h) is not;
    # an earlier scan arriving later changes the stop time but escalates nothing again.
    run.feed(tracking(CASE, T0 + 4.5 * H, TrackingStatus.PICKED_UP, event_id="E1"))
    run.feed(tracking(CASE, T0 + 4 * H, TrackingStatus.IN_TRANSIT, event_id="E0"))
    (breach,) = run.of(SlaBreachedV1)
    assert (breach.clock, breach.level, breach.elapsed_s) == (SlaClock.PICKUP, 1, 2.5 * 3600)
    (note,) = run.of(NotificationRequestedV1)
    assert note.address == "ops@example.com"
    assert note.dedupe_key == f"{CASE}:sla_pickup_l1:email"
    tracker = build_service(HubSettings(), sla=SLA)
    topics = {type(e.event).__name__: tracker.topic_for(e) for e in run.emits}
    assert topics["SlaBreachedV1"] == CASES
    assert topics["NotificationRequestedV1"] == NOTIFICATION_REQUESTS
    assert [c.breached_levels for c in run.snapshot.clocks if c.clock is SlaClock.PICKUP] == [(1,)]


def test_the_pickup_clock_schedules_one_check_per_level_at_the_deadline() -> None:
    run = Folded().feed(opened(CASE, T0))
    run.emits.clear()
    run.feed(requested(CASE, T0 + H))
    timers = [e for e in run.emits if e.delay is not None]
    assert [(e.event.level, e.delay) for e in timers] == [(1, H), (2, 3 * H)]  # type: ignore[attr-defined]
    assert [e.event.due_at for e in timers] == [T0 + 2 * H, T0 + 4 * H]  # type: ignore[attr-defined]


def test_a_check_escalates_a_silent_clock_once() -> None:
    run = Folded().feed(opened(CASE, T0), requested(CASE, T0))
    check = SlaCheckDueV1(case_id=CASE, clock=SlaClock.PICKUP, level=1, due_at=T0 + 1.5 * H)
    run.feed(check, check.model_copy(update={"due_at": T0 + 2 * H}))
    assert [(b.clock, b.level) for b in run.of(SlaBreachedV1)] == [(SlaClock.PICKUP, 1)]
    assert run.results[-1].decision == run.results[-1].decision.__class__()
    run.feed(check.model_copy(update={"level": 2, "due_at": T0 + 3.5 * H}))
    assert [b.level for b in run.of(SlaBreachedV1)] == [1, 2]
    assert len(run.of(NotificationRequestedV1)) == 2


def test_a_check_after_the_clock_stopped_in_time_does_nothing() -> None:
    run = Folded().feed(opened(CASE, T0), requested(CASE, T0))
    run.feed(tracking(CASE, T0 + H / 2, TrackingStatus.PICKED_UP))
    run.feed(SlaCheckDueV1(case_id=CASE, clock=SlaClock.PICKUP, level=1, due_at=T0 + H))
    assert run.of(SlaBreachedV1) == []
    assert run.results[-1].decision.emits == ()


def test_repair_and_turnaround_clocks_escalate_when_they_stop_late() -> None:
    life = repair_life(CASE, T0, window_end_h=2, picked_h=2.5, received_h=10, completed_h=25,
                       delivered_h=60)  # fmt: skip
    run = Folded().feed(*life)
    assert [(b.clock, b.level) for b in run.of(SlaBreachedV1)] == [
        (SlaClock.REPAIR, 1),
        (SlaClock.TURNAROUND, 1),
    ]


def test_a_rating_counts_only_for_a_closed_case_and_only_once() -> None:
    run = Folded().feed(opened(CASE, T0), rated(CASE, T0 + H, 2))
    (refused,) = run.of(RatingRejectedV1)
    assert refused.status == "approved"
    assert run.snapshot.rating is None
    run.feed(closed(CASE, T0 + 2 * H), rated(CASE, T0 + 3 * H, 4, "快"))
    run.feed(rated(CASE, T0 + 4 * H, 1))
    assert run.snapshot.rating is not None
    assert run.snapshot.rating.score == 4
    assert len(run.of(RatingRejectedV1)) == 2
    assert [e.kind for e in run.snapshot.timeline][-3:] == [
        "case.closed",
        "rating.recorded",
        "rating.rejected",
    ]


def test_a_complaint_puts_the_case_into_arbitration_and_the_timeline() -> None:
    complaint = ComplaintEscalatedV1(case_id=CASE, complaint="配送员态度差", escalated_at=T0 + H)
    run = Folded().feed(opened(CASE, T0), complaint)
    assert run.snapshot.in_arbitration
    assert run.snapshot.status == Status.APPROVED
    assert run.snapshot.timeline[-1].kind == "complaint.escalated"


def test_the_deployed_sla_table_loads() -> None:
    table = load_sla()
    assert table.thresholds("large_appliance", SlaClock.PICKUP) == (4 * H, 8 * H)
    assert table.thresholds("phone", SlaClock.REPAIR) == (72 * H, 120 * H)
    assert table.timer_delays == tuple(sorted(set(table.timer_delays)))
