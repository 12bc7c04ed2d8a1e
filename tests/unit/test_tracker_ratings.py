from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from hub.messages.storefront import ComplaintFiledV1, RatingGivenV1
from intake.domain import case_id_for, decide, escalate, rate
from lab.samples import sample_request_v2

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
REQUEST = sample_request_v2(7, now=NOW)
_, ITEM_STATE = decide(REQUEST, at=NOW)


def rating(score: int, request_id: str = REQUEST.request_id) -> RatingGivenV1:
    return RatingGivenV1(
        request_id=request_id,
        order_item_id=REQUEST.order_item_id,
        score=score,
        comment="师傅很专业",
        rated_at=NOW,
    )


def test_intake_passes_a_rating_on_to_the_case() -> None:
    submitted = rate(rating(5), item_state=ITEM_STATE)
    assert submitted is not None
    assert (submitted.case_id, submitted.score) == (case_id_for(REQUEST.request_id), 5)


def test_a_rating_of_another_request_or_without_a_case_is_dropped() -> None:
    assert rate(rating(4, "RQ-OTHER"), item_state=ITEM_STATE) is None
    assert rate(rating(4), item_state=None) is None


def test_a_rating_is_one_to_five_stars() -> None:
    for score in (0, 6):
        with pytest.raises(ValidationError):
            rating(score)


def test_a_complaint_escalates_its_case_to_arbitration() -> None:
    complaint = ComplaintFiledV1(
        request_id=REQUEST.request_id,
        order_item_id=REQUEST.order_item_id,
        complaint="维修后仍然闪屏",
        filed_at=NOW,
    )
    escalated = escalate(complaint, at=NOW, item_state=ITEM_STATE)
    assert escalated is not None
    assert escalated.case_id == case_id_for(REQUEST.request_id)
    assert escalated.escalated_to == "platform_arbitration"
    assert escalate(complaint, at=NOW, item_state=None) is None
