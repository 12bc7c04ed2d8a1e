from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from hub.core.handler import Decision
from hub.messages.storefront import ComplaintFiledV1, RatingGivenV1
from hub.messages.tracker import ComplaintEscalatedV1, RatingSubmittedV1
from intake.domain import case_id_for, decide, escalate, rate
from lab.samples import sample_request

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
REQUEST = sample_request(7, now=NOW)
ITEM_STATE = decide(REQUEST, None, NOW).state


def rating(score: int, request_id: str = REQUEST.request_id) -> RatingGivenV1:
    return RatingGivenV1(
        request_id=request_id,
        order_item_id=REQUEST.order_item_id,
        score=score,
        comment="师傅很专业",
        rated_at=NOW,
    )


def test_intake_passes_a_rating_on_to_the_case() -> None:
    passed = rate(rating(5), ITEM_STATE, NOW)
    assert passed.state is None  # the order item's state is unchanged
    (emit,) = passed.emits
    submitted = emit.event
    assert isinstance(submitted, RatingSubmittedV1)
    assert (submitted.case_id, submitted.score) == (case_id_for(REQUEST.request_id), 5)


def test_a_rating_of_another_request_or_without_a_case_is_dropped() -> None:
    assert rate(rating(4, "RQ-OTHER"), ITEM_STATE, NOW) == Decision()
    assert rate(rating(4), None, NOW) == Decision()


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
    (emit,) = escalate(complaint, ITEM_STATE, NOW).emits
    escalated = emit.event
    assert isinstance(escalated, ComplaintEscalatedV1)
    assert escalated.case_id == case_id_for(REQUEST.request_id)
    assert escalated.escalated_to == "platform_arbitration"
    assert escalate(complaint, None, NOW) == Decision()
