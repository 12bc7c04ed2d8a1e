"""What a case event tells about its courier, pure: the facts a courier's scorecard counts."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from hub.core.handler import Decision, Emit
from hub.messages.cases import (
    PickupAcceptedV1,
    PickupFailedV1,
    PickupRequestedV1,
    TrackingStatus,
    TrackingUpdatedV1,
)
from hub.messages.courier import Leg
from hub.messages.damage import DamageClaimedV1
from hub.messages.scores import CourierObservedV1, Observation
from hub.messages.tracker import SlaBreachedV1, SlaClock

if TYPE_CHECKING:
    from datetime import datetime

    from hub.core.registry import Event
    from hub.messages.tracker import ClockState
    from tracker.domain import CaseRecord

TROUBLE = frozenset({TrackingStatus.EXCEPTION, TrackingStatus.RETURNED})


def _pickup_clock(record: CaseRecord | None) -> ClockState | None:
    if record is None:
        return None
    return next((c for c in record.snapshot.clocks if c.clock is SlaClock.PICKUP), None)


def _facts(
    event: Event, before: CaseRecord | None, after: CaseRecord
) -> list[tuple[str, Observation, float | None, datetime]]:
    """(courier, observation, late_s, when) of each fact `event` establishes."""
    facts: list[tuple[str, Observation, float | None, datetime]] = []
    if isinstance(event, PickupRequestedV1):
        facts.append((event.courier, Observation.OFFERED, None, event.requested_at))
    elif isinstance(event, PickupAcceptedV1):
        facts.append((event.courier, Observation.ACCEPTED, None, event.accepted_at))
    elif isinstance(event, PickupFailedV1):
        facts.append((event.courier, Observation.FAILED, None, event.failed_at))
    elif isinstance(event, DamageClaimedV1):
        facts.append((event.courier, Observation.DAMAGE, None, event.claimed_at))
    elif isinstance(event, TrackingUpdatedV1):
        if event.status in TROUBLE:
            facts.append((event.courier, Observation.EXCEPTION, None, event.occurred_at))
        was, now = _pickup_clock(before), _pickup_clock(after)
        first_pickup = (was is None or was.stopped_at is None) and now is not None
        if event.leg is Leg.INBOUND and first_pickup and now and now.stopped_at and now.started_at:
            late = (now.stopped_at - now.started_at).total_seconds()
            facts.append((event.courier, Observation.PICKED_UP, late, now.stopped_at))
    return facts


def with_observations(
    event: Event, before: CaseRecord | None, decision: Decision[CaseRecord]
) -> Decision[CaseRecord]:
    """`decision` plus one observation per courier fact, keyed by the courier's code."""
    after = decision.state
    if after is None:
        return decision  # a duplicate, or a check that changed nothing
    facts = _facts(event, before, after)
    for emit in decision.emits:
        breach = emit.event
        if isinstance(breach, SlaBreachedV1) and breach.clock is SlaClock.PICKUP and breach.courier:
            facts.append((breach.courier, Observation.SLA_BREACH, None, breach.breached_at))
    if not facts:
        return decision
    observed = tuple(
        Emit(
            f"courier-{observation}-{index}",
            CourierObservedV1(
                courier=courier,
                case_id=after.snapshot.case_id,
                observation=observation,
                late_s=late,
                observed_at=when,
            ),
            key=courier,
        )
        for index, (courier, observation, late, when) in enumerate(facts)
    )
    return replace(decision, emits=(*decision.emits, *observed))
