"""Repair cases at a given stage, built through the repair domain as the service would."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatch.partners import load_partners
from hub.messages.cases import CaseOpenedV1, TrackingStatus, TrackingUpdatedV1
from hub.messages.courier import Leg
from hub.messages.repair import CenterItemReceivedV1
from intake.domain import decide
from lab.samples import sample_request
from repair import domain
from repair.refund_policy import load_refund_policy

if TYPE_CHECKING:
    from datetime import datetime

    from repair.domain import RepairCase


def at_center(number: int, now: datetime) -> RepairCase:
    """A phone's repair case whose parcel the center received, serial matching."""
    request = sample_request(number, now=now)
    phone = request.item.model_copy(update={"category": "phone"})
    (emit,) = decide(request.model_copy(update={"item": phone}), None, now).emits
    opened = emit.event
    assert isinstance(opened, CaseOpenedV1)
    case = domain.on_case_opened(opened, None, now, table=load_partners()).state
    assert case is not None
    delivered = TrackingUpdatedV1(
        case_id=case.case_id, order_id="o", courier="jd", leg=Leg.INBOUND,
        status=TrackingStatus.DELIVERED, raw_code="SIGNED", courier_event_id="e",
        waybill_no="JD1", description="已签收", location="杭州市", occurred_at=now,
    )  # fmt: skip
    case = domain.on_tracking(delivered, case, now, policy=load_refund_policy()).state
    assert case is not None
    received = CenterItemReceivedV1(case_id=case.case_id, serial_number=case.item.serial_number)
    case = domain.on_item_received(received, case, now).state
    assert case is not None
    return case
