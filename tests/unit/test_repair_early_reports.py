"""Reports read before the repair step that caused them: early, never dropped.

A crash between sending a ticket, a quote or a return and recording it makes repair read that
step again after the center or the courier answered it (another topic, another partition).
"""

from datetime import UTC, datetime

import pytest
from repair_cases import at_center

from hub.core.errors import EarlyEventError
from hub.messages.cases import TrackingStatus, TrackingUpdatedV1
from hub.messages.courier import Leg
from hub.messages.repair import (
    CaseClosedV1,
    CenterDiagnosedV1,
    CenterWorkCompletedV1,
    QuoteAnsweredV1,
    Resolution,
)
from repair import domain
from repair.domain import RepairCase, Stage
from repair.refund_policy import load_refund_policy

NOW = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
POLICY = load_refund_policy()


def returned(case: RepairCase) -> TrackingUpdatedV1:
    return TrackingUpdatedV1(
        case_id=case.case_id, order_id="o-back", courier="jd", leg=Leg.OUTBOUND,
        status=TrackingStatus.DELIVERED, raw_code="SIGNED", courier_event_id="back",
        waybill_no="JD2", description="已签收", location="杭州市", occurred_at=NOW,
    )  # fmt: skip


def test_the_return_delivered_before_the_work_it_followed_is_early_then_closes() -> None:
    working = at_center(30, NOW).moved(stage=Stage.WORKING)
    with pytest.raises(EarlyEventError, match=r"the return's delivery for case \S+, still working"):
        domain.on_tracking(returned(working), working, NOW, policy=POLICY)

    done = CenterWorkCompletedV1(
        case_id=working.case_id, resolution=Resolution.REPAIR, repaired=True
    )
    returning = domain.on_work_completed(done, working, NOW).state
    assert returning is not None
    closed = domain.on_tracking(returned(returning), returning, NOW, policy=POLICY)
    assert [type(emit.event) for emit in closed.emits] == [CaseClosedV1]
    # Read again once closed: nothing, and nothing early.
    assert closed.state is not None
    assert domain.on_tracking(returned(closed.state), closed.state, NOW, policy=POLICY).emits == ()


def test_center_reports_and_answers_before_their_step_are_early_and_after_it_ignored() -> None:
    case = at_center(31, NOW)
    done = CenterWorkCompletedV1(case_id=case.case_id, resolution=Resolution.REPAIR, repaired=True)
    answer = QuoteAnsweredV1(case_id=case.case_id, approved=True, answered_at=NOW)
    with pytest.raises(EarlyEventError, match="completed work"):
        domain.on_work_completed(done, case, NOW)
    with pytest.raises(EarlyEventError, match="a quote answer"):
        domain.on_quote_answered(answer, case, NOW)
    awaiting = case.moved(stage=Stage.AWAITING_ITEM)
    diagnosis = CenterDiagnosedV1(
        case_id=case.case_id, fault_type="screen_flicker", in_warranty=True,
        resolution=Resolution.REPAIR,
    )  # fmt: skip
    with pytest.raises(EarlyEventError, match="a diagnosis"):
        domain.on_diagnosed(diagnosis, awaiting, NOW)
    # Past their step (a repeat) or off the path (exception handling): ignored, as before.
    closed = case.moved(stage=Stage.CLOSED)
    assert domain.on_diagnosed(diagnosis, closed, NOW).emits == ()
    assert domain.on_work_completed(done, case.moved(stage=Stage.EXCEPTION), NOW).emits == ()
