"""Courier scores: what the tracker observes of each courier, and its scorecard over a window."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import NonEmpty, Value

Ratio = Annotated[float, Field(ge=0.0, le=1.0)]


class Observation(StrEnum):
    """One fact about a courier, as the tracker saw it in a case."""

    OFFERED = "offered"
    """A pickup order was sent to the courier."""
    ACCEPTED = "accepted"
    FAILED = "failed"
    """The courier rejected the order or let its acceptance deadline pass."""
    PICKED_UP = "picked_up"
    """The first pickup scan of the inbound leg; `late_s` past the window end (or the request)."""
    EXCEPTION = "exception"
    """A tracking exception or a returned parcel."""
    DAMAGE = "damage"
    """A claim for damage in transit."""
    SLA_BREACH = "sla_breach"
    """The case's pickup clock passed a level while the courier had it."""


class Standing(StrEnum):
    """Whether dispatch offers the courier new orders."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    """Below the floor: no new orders until the score is back above the recovery mark."""


# --- the tracker's observations (`aftersales.courier-observations`, key courier code) ------
@CATALOGUE.register
class CourierObservedV1(Event):
    """One fact about a courier in a case, keyed by the courier so its window is in one place."""

    event_type = "aftersales.courier.observed"
    version = 1

    courier: NonEmpty
    case_id: NonEmpty
    observation: Observation
    late_s: float | None = None
    observed_at: AwareDatetime


class CourierFigures(Value):
    """The counts of a scorecard's window."""

    offered: int = 0
    accepted: int = 0
    failed: int = 0
    pickups: int = 0
    late_pickups: int = 0
    exceptions: int = 0
    damages: int = 0
    sla_breaches: int = 0


# --- the scorecards (`aftersales.courier-scores`, compacted, key courier code) --------------
@CATALOGUE.register
class CourierScoredV1(Event):
    """A courier's scorecard over the window ending at `scored_at`; dispatch ranks by it."""

    event_type = "aftersales.courier.scored"
    version = 1

    courier: NonEmpty
    score: Ratio
    """1 is flawless; each shortfall (rejections, late pickups, exceptions, damage) costs."""
    standing: Standing
    acceptance_rate: Ratio
    on_time_rate: Ratio
    exception_rate: Ratio
    damage_rate: Ratio
    sla_breach_rate: Ratio
    figures: CourierFigures
    window_s: float
    scored_at: AwareDatetime


# --- the scorer's own timer -----------------------------------------------------------------
@CATALOGUE.register
class CourierScoreDueV1(Event):
    """A timer: score the courier again, its oldest observations having left the window."""

    event_type = "tracker.courier.score-due"
    version = 1

    courier: NonEmpty
    due_at: AwareDatetime
