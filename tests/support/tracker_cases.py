"""Case events for tracker tests: a case's life written as a list of events with times."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from hub.messages.cases import (
    CaseOpenedV1,
    PickupAcceptedV1,
    PickupFailedV1,
    PickupRequestedV1,
    TrackingStatus,
    TrackingUpdatedV1,
)
from hub.messages.common import TimeWindow
from hub.messages.courier import Leg, pickup_order_id
from hub.messages.repair import (
    CaseClosedV1,
    DiagnosisCompletedV1,
    ItemReceivedV1,
    Resolution,
    ReturnShipmentRequestedV1,
    WorkCompletedV1,
)
from hub.messages.tracker import RatingSubmittedV1
from intake.domain import decide
from lab.samples import sample_request

if TYPE_CHECKING:
    from hub.core.registry import Event


def opened(
    case_id: str,
    at: datetime,
    *,
    category: str = "phone",
    fault: str = "screen_flicker",
    window_end: datetime | None = None,
) -> CaseOpenedV1:
    (emit,) = decide(sample_request(1, now=at), None, at).emits
    base = emit.event
    assert isinstance(base, CaseOpenedV1)
    window = (
        TimeWindow(start=window_end - timedelta(hours=3), end=window_end) if window_end else None
    )
    return base.model_copy(
        update={
            "case_id": case_id,
            "opened_at": at,
            "pickup_window": window,
            "item": base.item.model_copy(update={"category": category}),
            "fault": base.fault.model_copy(update={"code": fault}),
        }
    )


def requested(
    case_id: str, at: datetime, courier: str = "jd", leg: Leg = Leg.INBOUND, attempt: int = 1
) -> PickupRequestedV1:
    return PickupRequestedV1(
        case_id=case_id,
        order_id=pickup_order_id(case_id, leg, attempt),
        courier=courier,
        leg=leg,
        attempt=attempt,
        reason="test",
        requested_at=at,
    )


def accepted(
    case_id: str, at: datetime, courier: str = "jd", leg: Leg = Leg.INBOUND, attempt: int = 1
) -> PickupAcceptedV1:
    return PickupAcceptedV1(
        case_id=case_id,
        order_id=pickup_order_id(case_id, leg, attempt),
        courier=courier,
        leg=leg,
        waybill_no=f"WB{attempt}{case_id[-6:]}",
        accepted_at=at,
    )


def failed(
    case_id: str, at: datetime, courier: str = "jd", leg: Leg = Leg.INBOUND, attempt: int = 1
) -> PickupFailedV1:
    return PickupFailedV1(
        case_id=case_id,
        order_id=pickup_order_id(case_id, leg, attempt),
        courier=courier,
        leg=leg,
        code="capacity",
        reason="peak",
        failed_at=at,
    )


def tracking(
    case_id: str,
    at: datetime,
    status: TrackingStatus,
    *,
    courier: str = "jd",
    leg: Leg = Leg.INBOUND,
    event_id: str | None = None,
    attempt: int = 1,
) -> TrackingUpdatedV1:
    return TrackingUpdatedV1(
        case_id=case_id,
        order_id=pickup_order_id(case_id, leg, attempt),
        courier=courier,
        leg=leg,
        waybill_no=f"WB{attempt}{case_id[-6:]}",
        status=status,
        raw_code=status.value.upper(),
        description="",
        location="杭州",
        courier_event_id=event_id or f"{case_id}-{leg}-{status}",
        occurred_at=at,
    )


def received(case_id: str, at: datetime) -> ItemReceivedV1:
    return ItemReceivedV1(case_id=case_id, serial_number="SN1", serial_matches=True, received_at=at)


def diagnosed(
    case_id: str, at: datetime, fault_type: str, resolution: Resolution = Resolution.REPAIR
) -> DiagnosisCompletedV1:
    return DiagnosisCompletedV1(
        case_id=case_id,
        fault_type=fault_type,
        in_warranty=True,
        resolution=resolution,
        diagnosed_at=at,
    )


def completed(case_id: str, at: datetime) -> WorkCompletedV1:
    return WorkCompletedV1(
        case_id=case_id,
        resolution=Resolution.REPAIR,
        repaired=True,
        parts_used=("screen",),
        completed_at=at,
    )


def returned(case_id: str, at: datetime) -> ReturnShipmentRequestedV1:
    return ReturnShipmentRequestedV1(case_id=case_id, requested_at=at)


def closed(case_id: str, at: datetime, outcome: str = "repaired") -> CaseClosedV1:
    return CaseClosedV1(case_id=case_id, outcome=outcome, closed_at=at)


def rated(case_id: str, at: datetime, score: int, comment: str = "") -> RatingSubmittedV1:
    return RatingSubmittedV1(case_id=case_id, score=score, comment=comment, rated_at=at)


def repair_life(
    case_id: str,
    t0: datetime,
    *,
    courier: str = "jd",
    category: str = "phone",
    fault_type: str = "screen_defect",
    window_end_h: float = 2.0,
    picked_h: float = 3.0,
    received_h: float = 20.0,
    completed_h: float = 50.0,
    delivered_h: float = 80.0,
    rejected_by: str | None = None,
    score: int | None = None,
) -> list[Event]:
    """A repair case from opening to closing (and a rating), with stage times in hours."""

    def at(hours: float) -> datetime:
        return t0 + timedelta(hours=hours)

    life: list[Event] = [opened(case_id, t0, category=category, window_end=at(window_end_h))]
    attempt = 1
    if rejected_by is not None:
        life += [
            requested(case_id, at(0.01), rejected_by),
            failed(case_id, at(0.02), rejected_by),
        ]
        attempt = 2
    life += [
        requested(case_id, at(0.03), courier, attempt=attempt),
        accepted(case_id, at(0.05), courier, attempt=attempt),
        tracking(case_id, at(picked_h), TrackingStatus.PICKED_UP, courier=courier,
                 attempt=attempt),
        tracking(case_id, at(picked_h + 1), TrackingStatus.IN_TRANSIT, courier=courier,
                 attempt=attempt),
        tracking(case_id, at(received_h - 1), TrackingStatus.DELIVERED, courier=courier,
                 attempt=attempt),
        received(case_id, at(received_h)),
        diagnosed(case_id, at(received_h + 0.5), fault_type),
        completed(case_id, at(completed_h)),
        returned(case_id, at(completed_h)),
        requested(case_id, at(completed_h + 0.01), courier, Leg.OUTBOUND),
        accepted(case_id, at(completed_h + 0.02), courier, Leg.OUTBOUND),
        tracking(case_id, at(completed_h + 1), TrackingStatus.PICKED_UP, courier=courier,
                 leg=Leg.OUTBOUND),
        tracking(case_id, at(delivered_h), TrackingStatus.DELIVERED, courier=courier,
                 leg=Leg.OUTBOUND),
        closed(case_id, at(delivered_h)),
    ]  # fmt: skip
    if score is not None:
        life.append(rated(case_id, at(delivered_h + 1), score))
    return life
