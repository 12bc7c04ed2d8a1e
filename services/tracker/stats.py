"""Statistics over the tracker's records, pure: faults, stage times, couriers, ratings, parts."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from hub.messages.tracker import SlaClock

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from hub.messages.tracker import CaseStatusV1

STAGES: dict[str, tuple[str, str]] = {
    "pickup": ("opened", "picked_up"),
    "inbound_transit": ("picked_up", "received"),
    "repair": ("received", "work_completed"),
    "return": ("return_requested", "delivered"),
    "total": ("opened", "closed"),
}
"""Each stage runs from one milestone to another; a case counts once it reached both."""


def percentile(values: Iterable[float], p: float) -> float | None:
    """The nearest-rank percentile `p` (0-100) of `values`; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Handling time of one stage, in seconds."""

    cases: int
    p50_s: float | None
    p90_s: float | None


@dataclass(frozen=True, slots=True)
class CourierFigures:
    """How one courier did: orders, acceptance, pickup delay past the window, SLA breaches."""

    orders: int
    accepted: int
    acceptance_rate: float | None
    pickups: int
    pickup_delay_p50_s: float | None
    pickup_delay_p90_s: float | None
    sla_breaches: int
    """Cases this courier picked up whose pickup clock passed at least one level."""


@dataclass(frozen=True, slots=True)
class RatingFigures:
    """Customer ratings of closed cases."""

    count: int
    mean: float | None
    by_score: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExpressRefundFigures:
    """Express refunds (极速退款) paid at pickup, and those clawed back after inspection."""

    count: int = 0
    amount: Decimal = Decimal("0.00")
    clawbacks: int = 0
    clawback_amount: Decimal = Decimal("0.00")
    clawback_rate: float | None = None
    """Claw-backs per express refund: the share of trusted customers the trust was wrong about."""
    clawback_reasons: dict[str, int] = field(default_factory=dict)


def express_refund_figures(cases: Iterable[CaseStatusV1]) -> ExpressRefundFigures:
    """Count and sum the express refunds of `cases`, and their claw-backs by reason."""
    refunds = [case.express_refund for case in cases if case.express_refund is not None]
    clawed = [refund for refund in refunds if refund.clawback_reason is not None]
    return ExpressRefundFigures(
        count=len(refunds),
        amount=sum((refund.amount for refund in refunds), Decimal("0.00")),
        clawbacks=len(clawed),
        clawback_amount=sum((refund.amount for refund in clawed), Decimal("0.00")),
        clawback_rate=round(len(clawed) / len(refunds), 4) if refunds else None,
        clawback_reasons=dict(Counter(str(refund.clawback_reason) for refund in clawed)),
    )


@dataclass(frozen=True, slots=True)
class PartsFigures:
    """Spare parts: reservations, shortages, cases waiting now, and how long they waited."""

    reservations: int
    """Cases whose repair reserved parts at a supplier."""
    shortages: int
    """Of those, cases the supplier was short for."""
    waiting: int
    """Cases waiting for parts now."""
    replaced: int
    """Cases the hub stopped waiting for (too long, or refused) and resolved without the parts."""
    wait_p50_s: float | None
    """From the shortage to the parts (or giving up), over the cases whose wait ended."""
    wait_p90_s: float | None


def parts_figures(cases: list[CaseStatusV1]) -> PartsFigures:
    """The parts figures of `cases` (their milestones, status and parts clock)."""
    waits = [
        (clock.stopped_at - clock.started_at).total_seconds()
        for case in cases
        for clock in case.clocks
        if clock.clock is SlaClock.PARTS and clock.started_at and clock.stopped_at
    ]
    return PartsFigures(
        reservations=sum("parts_requested" in case.milestones for case in cases),
        shortages=sum("parts_short" in case.milestones for case in cases),
        waiting=sum(case.status == "waiting_for_parts" for case in cases),
        replaced=sum("parts_given_up" in case.milestones for case in cases),
        wait_p50_s=percentile(waits, 50),
        wait_p90_s=percentile(waits, 90),
    )


@dataclass(frozen=True, slots=True)
class FreightClaimFigures:
    """Return-freight insurance claims: how many, what the insurers made of them, what they paid."""

    claims: int = 0
    approved: int = 0
    rejected: int = 0
    pending: int = 0
    claimed: str = "0.00"
    """Yuan claimed, over every claim (text, so that JSON keeps the cents exact)."""
    paid: str = "0.00"
    """Yuan the insurers paid on approved claims."""


@dataclass(frozen=True, slots=True)
class Stats:
    """Figures over the cases opened in a time range."""

    cases: int
    by_status: dict[str, int]
    fault_types: dict[str, int]
    stages: dict[str, StageTimes]
    couriers: dict[str, CourierFigures]
    ratings: RatingFigures
    sla_breaches: dict[str, int]
    """Cases whose clock reached at least one level, per clock."""
    complaints: int
    """Cases escalated to the platform's arbitration."""
    parts: PartsFigures
    express_refunds: ExpressRefundFigures = field(default_factory=ExpressRefundFigures)
    freight_claims: FreightClaimFigures = field(default_factory=FreightClaimFigures)


def opened_at(snapshot: CaseStatusV1) -> datetime:
    """When the case opened (when it was first seen, for a case opened before the tracker)."""
    return snapshot.milestones.get("opened") or snapshot.updated_at


def in_range(snapshot: CaseStatusV1, since: datetime | None, until: datetime | None) -> bool:
    """Whether the case opened in [since, until)."""
    at = opened_at(snapshot)
    return (since is None or at >= since) and (until is None or at < until)


def compute_stats(
    snapshots: Iterable[CaseStatusV1],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Stats:
    """The statistics of the cases opened in [since, until), from their latest snapshots."""
    cases = [s for s in snapshots if in_range(s, since, until)]
    durations: dict[str, list[float]] = {stage: [] for stage in STAGES}
    orders: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    delays: dict[str, list[float]] = defaultdict(list)
    courier_breaches: Counter[str] = Counter()
    clock_breaches: Counter[str] = Counter()
    for case in cases:
        for stage, (start, end) in STAGES.items():
            if start in case.milestones and end in case.milestones:
                elapsed = case.milestones[end] - case.milestones[start]
                durations[stage].append(elapsed.total_seconds())
        for order in case.pickup_orders:
            orders[order.courier] += 1
            accepted[order.courier] += order.outcome == "accepted"
        clocks = {clock.clock: clock for clock in case.clocks}
        for clock in clocks.values():
            clock_breaches[clock.clock.value] += bool(clock.breached_levels)
        pickup = clocks.get(SlaClock.PICKUP)
        if case.courier and pickup and pickup.started_at and pickup.stopped_at:
            late = (pickup.stopped_at - pickup.started_at).total_seconds()
            delays[case.courier].append(max(0.0, late))
            courier_breaches[case.courier] += bool(pickup.breached_levels)
    scores = [case.rating.score for case in cases if case.rating is not None]
    return Stats(
        cases=len(cases),
        by_status=dict(sorted(Counter(case.status for case in cases).items())),
        # The center's diagnosis, else what the customer reported; rejected requests have neither.
        fault_types=dict(
            Counter(
                case.fault_type or case.fault_code
                for case in cases
                if case.fault_type or case.fault_code
            ).most_common()
        ),
        stages={
            stage: StageTimes(len(values), percentile(values, 50), percentile(values, 90))
            for stage, values in durations.items()
        },
        couriers={
            courier: CourierFigures(
                orders=orders[courier],
                accepted=accepted[courier],
                acceptance_rate=accepted[courier] / orders[courier] if orders[courier] else None,
                pickups=len(delays[courier]),
                pickup_delay_p50_s=percentile(delays[courier], 50),
                pickup_delay_p90_s=percentile(delays[courier], 90),
                sla_breaches=courier_breaches[courier],
            )
            for courier in sorted(orders)
        },
        ratings=RatingFigures(
            count=len(scores),
            mean=round(sum(scores) / len(scores), 2) if scores else None,
            by_score=dict(sorted(Counter(scores).items())),
        ),
        sla_breaches={clock.value: clock_breaches[clock.value] for clock in SlaClock},
        complaints=sum(case.in_arbitration for case in cases),
        express_refunds=express_refund_figures(cases),
        parts=parts_figures(cases),
        freight_claims=freight_claim_figures(cases),
    )


def freight_claim_figures(cases: Iterable[CaseStatusV1]) -> FreightClaimFigures:
    """The return-freight claims of `cases`, counted by the insurer's answer."""
    claims = [case.freight_claim for case in cases if case.freight_claim is not None]
    outcomes = Counter(claim.outcome for claim in claims)
    return FreightClaimFigures(
        claims=len(claims),
        approved=outcomes["approved"],
        rejected=outcomes["rejected"],
        pending=outcomes["pending"],
        claimed=str(sum((claim.claimed for claim in claims), Decimal("0.00"))),
        paid=str(sum((claim.paid for claim in claims), Decimal("0.00"))),
    )
