"""Courier scores, pure: a sliding window of observations per courier, its card, its standing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from hub.core.handler import Decision, Emit
from hub.messages.scores import (
    CourierFigures,
    CourierObservedV1,
    CourierScoreDueV1,
    CourierScoredV1,
    Observation,
    Standing,
)

if TYPE_CHECKING:
    from hub.core.settings import HubSettings

PRIOR = 3
"""Each rate starts as if `PRIOR` orders had gone well: a new courier scores 1, one miss does
not suspend it, and a window emptied by time brings the score back to 1."""
WEIGHTS = {"acceptance": 1.0, "on_time": 0.5, "exception": 0.5, "damage": 1.0, "sla": 0.5}
"""What each shortfall costs: score = 1 - sum(weight x (1 - rate)), at least 0."""
MAX_OBSERVATIONS = 500
"""The newest observations a window keeps, however busy the courier (bounds the state)."""


@dataclass(frozen=True, slots=True)
class ScorePolicy:
    """The window, the floor with its recovery mark, and when a change is worth publishing."""

    window: timedelta
    interval: timedelta
    floor: float
    recover: float
    min_change: float
    pickup_grace: timedelta

    @classmethod
    def from_settings(cls, settings: HubSettings) -> ScorePolicy:
        """The policy the settings give (HUB_COURIER_SCORE_*, HUB_COURIER_PICKUP_GRACE)."""
        return cls(
            window=settings.courier_score_window,
            interval=settings.courier_score_interval,
            floor=settings.courier_score_floor,
            recover=settings.courier_score_recover,
            min_change=settings.courier_score_min_change,
            pickup_grace=settings.courier_pickup_grace,
        )


class Seen(BaseModel):
    """One observation kept in the window."""

    model_config = ConfigDict(frozen=True)

    observation: Observation
    at: datetime
    late_s: float | None = None


class CourierWindow(BaseModel):
    """The scorer's state of one courier: its window, its last card, its pending timer."""

    model_config = ConfigDict(frozen=True)

    courier: str
    seen: tuple[Seen, ...] = ()
    published: CourierScoredV1 | None = None
    timer_due: datetime | None = None


def figures(seen: tuple[Seen, ...], grace: timedelta) -> CourierFigures:
    """The counts of a window."""
    counts = dict.fromkeys(Observation, 0)
    late = 0
    for item in seen:
        counts[item.observation] += 1
        is_pickup = item.observation is Observation.PICKED_UP
        late += is_pickup and (item.late_s or 0.0) > grace.total_seconds()
    return CourierFigures(
        offered=counts[Observation.OFFERED],
        accepted=counts[Observation.ACCEPTED],
        failed=counts[Observation.FAILED],
        pickups=counts[Observation.PICKED_UP],
        late_pickups=late,
        exceptions=counts[Observation.EXCEPTION],
        damages=counts[Observation.DAMAGE],
        sla_breaches=counts[Observation.SLA_BREACH],
    )


def _good(good: int, total: int) -> float:
    return (good + PRIOR) / (total + PRIOR)


def _bad(bad: int, total: int) -> float:
    return max(0.0, 1.0 - bad / (total + PRIOR))


def standing(previous: Standing | None, score: float, policy: ScorePolicy) -> Standing:
    """Suspended below the floor; back to active only at the recovery mark (no flapping)."""
    if score < policy.floor:
        return Standing.SUSPENDED
    if previous is Standing.SUSPENDED and score < policy.recover:
        return Standing.SUSPENDED
    return Standing.ACTIVE


def scorecard(
    courier: str,
    seen: tuple[Seen, ...],
    previous: Standing | None,
    policy: ScorePolicy,
    at: datetime,
) -> CourierScoredV1:
    """The courier's scorecard over `seen` (the window ending at `at`)."""
    counts = figures(seen, policy.pickup_grace)
    shipped = counts.accepted
    rates = {
        "acceptance": _good(counts.accepted, counts.accepted + counts.failed),
        "on_time": _good(counts.pickups - counts.late_pickups, counts.pickups),
        "exception": _bad(counts.exceptions, shipped),
        "damage": _bad(counts.damages, shipped),
        "sla": _bad(counts.sla_breaches, shipped),
    }
    score = max(0.0, 1.0 - sum(WEIGHTS[name] * (1.0 - rate) for name, rate in rates.items()))
    score = round(score, 4)
    return CourierScoredV1(
        courier=courier,
        score=score,
        standing=standing(previous, score, policy),
        acceptance_rate=round(rates["acceptance"], 4),
        on_time_rate=round(rates["on_time"], 4),
        exception_rate=round(1.0 - rates["exception"], 4),
        damage_rate=round(1.0 - rates["damage"], 4),
        sla_breach_rate=round(1.0 - rates["sla"], 4),
        figures=counts,
        window_s=policy.window.total_seconds(),
        scored_at=at,
    )


def material(card: CourierScoredV1, last: CourierScoredV1 | None, policy: ScorePolicy) -> bool:
    """Whether `card` is worth publishing after `last`: the first, a new standing, or a move."""
    if last is None or card.standing is not last.standing:
        return True
    return abs(card.score - last.score) >= policy.min_change


def _rescore(
    window: CourierWindow, at: datetime, policy: ScorePolicy, *, refresh: bool = False
) -> Decision[CourierWindow]:
    """Drop what left the window, publish the card if it changed materially, keep a timer.

    On the timer (`refresh`), a card whose counts moved is published even when its score did
    not: at most once an interval, so that `hub stats` does not show stale counts for long.
    """
    kept = tuple(item for item in window.seen if item.at > at - policy.window)[-MAX_OBSERVATIONS:]
    last = window.published
    card = scorecard(window.courier, kept, last.standing if last else None, policy, at)
    emits: list[Emit] = []
    stale = refresh and last is not None and card.figures != last.figures
    if material(card, last, policy) or stale:
        emits.append(Emit("scored", card))
        last = card
    timer_due = window.timer_due
    if kept and (timer_due is None or timer_due <= at):
        # One timer at a time: it scores the courier again once old observations have aged.
        due = CourierScoreDueV1(courier=window.courier, due_at=at + policy.interval)
        emits.append(Emit.timer("rescore", due, policy.interval))
        timer_due = due.due_at
    elif not kept:
        timer_due = None
    state = window.model_copy(update={"seen": kept, "published": last, "timer_due": timer_due})
    return Decision(emits=tuple(emits), state=state)


def on_observed(
    event: CourierObservedV1, window: CourierWindow | None, at: datetime, *, policy: ScorePolicy
) -> Decision[CourierWindow]:
    """Add one observation to the courier's window and score it again."""
    window = window or CourierWindow(courier=event.courier)
    seen = Seen(observation=event.observation, at=event.observed_at, late_s=event.late_s)
    now = max(at, event.observed_at)
    return _rescore(window.model_copy(update={"seen": (*window.seen, seen)}), now, policy)


def on_score_due(
    event: CourierScoreDueV1, window: CourierWindow | None, _at: datetime, *, policy: ScorePolicy
) -> Decision[CourierWindow]:
    """The timer: score the courier again at the due time (observations may have aged out)."""
    if window is None:
        return Decision()
    pending = window.timer_due
    # This timer is the pending one (or later than it): another may be set from here on.
    cleared = window.model_copy(
        update={"timer_due": None if pending is None or pending <= event.due_at else pending}
    )
    return _rescore(cleared, event.due_at, policy, refresh=True)
