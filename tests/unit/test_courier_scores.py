"""Courier scores, pure: the window, the card, the floor with its hysteresis, and the ranking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from tracker_cases import accepted, failed, opened, requested, tracking

from dispatch import domain
from dispatch.partners import load_partners
from hub.core.settings import HubSettings
from hub.messages.cases import PickupRequestedV1, TrackingStatus
from hub.messages.courier import Leg
from hub.messages.damage import DamageClaimedV1
from hub.messages.scores import (
    CourierFigures,
    CourierObservedV1,
    CourierScoreDueV1,
    CourierScoredV1,
    Observation,
    Standing,
)
from tracker.domain import track
from tracker.scoring import CourierWindow, ScorePolicy, on_observed, on_score_due, standing
from tracker.sla import OpsRecipient, SlaTable, Thresholds

if TYPE_CHECKING:
    from hub.core.handler import Decision
    from hub.core.registry import Event
    from tracker.domain import CaseRecord

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = ScorePolicy(
    window=timedelta(hours=1),
    interval=timedelta(minutes=10),
    floor=0.6,
    recover=0.75,
    min_change=0.05,
    pickup_grace=timedelta(hours=2),
)
TABLE = load_partners()


def observed(kind: Observation, at: datetime, late_s: float | None = None) -> CourierObservedV1:
    return CourierObservedV1(
        courier="jd", case_id="AS-1", observation=kind, late_s=late_s, observed_at=at
    )


def feed(*events: CourierObservedV1) -> tuple[CourierWindow | None, list[CourierScoredV1]]:
    window: CourierWindow | None = None
    cards: list[CourierScoredV1] = []
    for event in events:
        decided = on_observed(event, window, event.observed_at, policy=POLICY)
        window = decided.state or window
        cards += [e.event for e in decided.emits if isinstance(e.event, CourierScoredV1)]
    return window, cards


def rejections(count: int, start: datetime = T0) -> list[CourierObservedV1]:
    return [
        observed(kind, start + timedelta(seconds=i))
        for i in range(count)
        for kind in (Observation.OFFERED, Observation.FAILED)
    ]


# --- the scorer -----------------------------------------------------------------------------
def test_a_new_courier_scores_one_and_each_rejection_costs() -> None:
    _, cards = feed(observed(Observation.OFFERED, T0), observed(Observation.ACCEPTED, T0))
    assert (cards[0].score, cards[0].standing) == (1.0, Standing.ACTIVE)
    _, cards = feed(*rejections(3))
    last = cards[-1]
    assert last.figures == CourierFigures(offered=3, failed=3)
    assert last.acceptance_rate == 0.5  # (0 + 3) / (3 + 3): the prior softens a short run
    assert last.score == 0.5
    assert last.standing is Standing.SUSPENDED


def test_damage_exceptions_late_pickups_and_breaches_count() -> None:
    events = [observed(Observation.ACCEPTED, T0 + timedelta(seconds=i)) for i in range(3)]
    events += [
        observed(Observation.PICKED_UP, T0, late_s=3 * 3600.0),  # past the 2h grace
        observed(Observation.PICKED_UP, T0, late_s=60.0),
        observed(Observation.DAMAGE, T0),
        observed(Observation.EXCEPTION, T0),
        observed(Observation.SLA_BREACH, T0),
    ]
    window, _ = feed(*events)
    assert window is not None
    last = window.published
    assert last is not None
    assert last.figures == CourierFigures(
        accepted=3, pickups=2, late_pickups=1, exceptions=1, damages=1, sla_breaches=1
    )
    assert (last.damage_rate, last.exception_rate, last.sla_breach_rate) == (
        0.1667,
        0.1667,
        0.1667,
    )
    assert last.on_time_rate == 0.8
    # 1 - (0.5 x 0.2 late + 0.5 x 1/6 exceptions + 1 x 1/6 damage + 0.5 x 1/6 breaches)
    assert last.score == 0.5667


def test_only_material_changes_are_published() -> None:
    events = [observed(Observation.ACCEPTED, T0 + timedelta(seconds=i)) for i in range(5)]
    _, cards = feed(*events)
    assert len(cards) == 1  # 1.0 each time: nothing worth telling dispatch after the first


def test_the_floor_has_hysteresis() -> None:
    assert standing(None, 0.59, POLICY) is Standing.SUSPENDED
    assert standing(Standing.ACTIVE, 0.61, POLICY) is Standing.ACTIVE
    assert standing(Standing.SUSPENDED, 0.61, POLICY) is Standing.SUSPENDED
    assert standing(Standing.SUSPENDED, 0.74, POLICY) is Standing.SUSPENDED
    assert standing(Standing.SUSPENDED, 0.75, POLICY) is Standing.ACTIVE


def test_a_suspended_courier_recovers_as_its_failures_leave_the_window() -> None:
    window, cards = feed(*rejections(3))
    assert cards[-1].standing is Standing.SUSPENDED
    assert window is not None
    assert window.timer_due == T0 + timedelta(minutes=10)  # one timer pending, not one each
    # Ten minutes on: nothing aged out, nothing published, the next timer is set.
    due = CourierScoreDueV1(courier="jd", due_at=T0 + timedelta(minutes=10))
    decided = on_score_due(due, window, due.due_at, policy=POLICY)
    assert [e.role for e in decided.emits] == ["rescore"]
    assert decided.state is not None
    window = decided.state
    # Past the window: the failures are forgotten, the courier is active again, no timer.
    late = CourierScoreDueV1(courier="jd", due_at=T0 + timedelta(hours=1, minutes=1))
    decided = on_score_due(late, window, late.due_at, policy=POLICY)
    (emit,) = decided.emits
    assert isinstance(emit.event, CourierScoredV1)
    assert (emit.event.score, emit.event.standing) == (1.0, Standing.ACTIVE)
    assert decided.state is not None
    assert (decided.state.seen, decided.state.timer_due) == ((), None)


def test_the_tracker_observes_courier_facts_keyed_by_courier() -> None:
    sla = SlaTable(
        ops=OpsRecipient(address="ops@example.com"),
        default=Thresholds(
            pickup=(timedelta(hours=1), timedelta(hours=3)),
            repair=(timedelta(hours=10), timedelta(hours=20)),
            turnaround=(timedelta(hours=48), timedelta(hours=96)),
        ),
    )
    case = "AS-OBSERVED1"
    claim = DamageClaimedV1(
        claim_id=f"{case}-inbound-damage", case_id=case, courier="sf", leg=Leg.INBOUND,
        waybill_no="WB2", declared_value=Decimal(100), description="cracked", claimed_at=T0,
    )  # fmt: skip
    life: list[Event] = [
        opened(case, T0),
        requested(case, T0, courier="jd"),
        failed(case, T0, courier="jd"),
        requested(case, T0, courier="sf", attempt=2),
        accepted(case, T0, courier="sf", attempt=2),
        tracking(case, T0 + timedelta(hours=2), TrackingStatus.PICKED_UP, courier="sf", attempt=2),
        tracking(case, T0 + timedelta(hours=2), TrackingStatus.PICKED_UP, courier="sf", attempt=2),
        tracking(case, T0 + timedelta(hours=3), TrackingStatus.IN_TRANSIT, courier="sf", attempt=2),
        claim,
    ]
    record: CaseRecord | None = None
    seen: list[tuple[str | None, str, str, float | None]] = []
    for event in life:
        decision: Decision[CaseRecord] = track(event, record, T0, sla=sla)
        record = decision.state or record
        for emit in decision.emits:
            if isinstance(emit.event, CourierObservedV1):
                fact = emit.event
                seen.append((emit.key, fact.courier, fact.observation, fact.late_s))
    assert seen == [
        ("jd", "jd", "offered", None),
        ("jd", "jd", "failed", None),
        ("sf", "sf", "offered", None),
        ("sf", "sf", "accepted", None),
        ("sf", "sf", "picked_up", 7200.0),  # once: the repeated scan is a duplicate
        ("sf", "sf", "sla_breach", None),  # picked up 2h after the request: level 1 is 1h
        ("sf", "sf", "damage", None),
    ]


# --- dispatch -------------------------------------------------------------------------------
def card(code: str, score: float, status: Standing = Standing.ACTIVE) -> CourierScoredV1:
    return CourierScoredV1(
        courier=code, score=score, standing=status, acceptance_rate=score, on_time_rate=1,
        exception_rate=0, damage_rate=0, sla_breach_rate=0, figures=CourierFigures(),
        window_s=3600, scored_at=T0,
    )  # fmt: skip


def ranked(cards: dict[str, CourierScoredV1], blend: domain.Blend | None = None) -> list[str]:
    scores = domain.Scores(cards, blend or domain.Blend())
    choices = domain.rank_couriers(
        TABLE, province="浙江省", category="phone", value=Decimal(500), scores=scores
    )
    return [choice.courier.code for choice in choices]


def test_without_scores_sla_then_price_decide_as_before() -> None:
    assert ranked({}) == ["jd", "sf", "yd"]


def test_a_lower_score_moves_a_courier_down_by_the_blend() -> None:
    assert ranked({"jd": card("jd", 0.9)}) == ["jd", "sf", "yd"]  # 0.1 less: still ahead
    assert ranked({"jd": card("jd", 0.62)}) == ["sf", "jd", "yd"]
    # Weigh the score alone: the best scored first, whatever it costs.
    only_score = domain.Blend(score=1.0, cost=0.0, sla=0.0)
    assert ranked({"jd": card("jd", 0.9), "sf": card("sf", 0.8)}, only_score) == ["yd", "jd", "sf"]


def test_a_suspended_courier_is_not_offered_new_orders() -> None:
    cards = {"jd": card("jd", 0.4, Standing.SUSPENDED)}
    assert ranked(cards) == ["sf", "yd"]
    (first, *_) = domain.rank_couriers(
        TABLE, province="浙江省", category="phone", value=Decimal(500),
        scores=domain.Scores(cards),
    )  # fmt: skip
    assert first.reason.endswith("rank 1 of 2; passed over jd (suspended, score 0.40)")


def test_a_suspended_courier_still_goes_when_no_other_is_eligible() -> None:
    cards = {"sf": card("sf", 0.3, Standing.SUSPENDED)}
    choices = domain.rank_couriers(
        TABLE, province="新疆维吾尔自治区", category="laptop", value=Decimal(40000),
        scores=domain.Scores(cards),
    )  # fmt: skip
    assert [(c.courier.code, c.reason.split("; ")[2]) for c in choices] == [
        ("sf", "score 0.30, suspended: no other courier is eligible")
    ]


def test_a_case_opened_goes_to_the_best_active_courier() -> None:
    opened_case = opened("AS-RANKED1", T0)
    scores = domain.Scores({"jd": card("jd", 0.3, Standing.SUSPENDED)})
    planned = domain.on_case_opened(opened_case, None, T0, table=TABLE, scores=scores)
    (request,) = (e.event for e in planned.emits)
    assert isinstance(request, PickupRequestedV1)
    decided = domain.on_pickup_requested(request, planned.state, T0, table=TABLE)
    order = next(e for e in decided.emits if e.role == "order-1")
    assert order.partner == "sf"
    assert isinstance(decided.state, domain.Shipment)
    assert decided.state.remaining == ()  # jd is not even a fallback (yd insures too little)
    unscored = domain.on_case_opened(opened_case, None, T0, table=TABLE)
    (unscored_request,) = (e.event for e in unscored.emits)
    assert isinstance(unscored_request, PickupRequestedV1)
    assert unscored_request.courier == "jd"


def test_the_timer_refreshes_a_card_whose_counts_moved_but_not_its_score() -> None:
    window, cards = feed(
        *[observed(Observation.ACCEPTED, T0 + timedelta(seconds=i)) for i in range(4)]
    )
    assert [card.figures.accepted for card in cards] == [1]
    assert window is not None
    due = CourierScoreDueV1(courier="jd", due_at=T0 + timedelta(minutes=10))
    refreshed = on_score_due(due, window, due.due_at, policy=POLICY)
    card = next(e.event for e in refreshed.emits if isinstance(e.event, CourierScoredV1))
    assert (card.score, card.figures.accepted) == (1.0, 4)
    assert refreshed.state is not None
    again = due.model_copy(update={"due_at": due.due_at + timedelta(minutes=10)})
    quiet = on_score_due(again, refreshed.state, again.due_at, policy=POLICY)
    assert [e.role for e in quiet.emits] == ["rescore"]  # nothing new: only the next timer


def test_the_recovery_mark_may_not_be_below_the_floor() -> None:
    with pytest.raises(ValueError, match="HUB_COURIER_SCORE_RECOVER must not be below"):
        HubSettings(courier_score_floor=0.8, courier_score_recover=0.7)
    policy = ScorePolicy.from_settings(HubSettings())
    assert (policy.floor, policy.recover, policy.window) == (0.6, 0.75, timedelta(days=7))
