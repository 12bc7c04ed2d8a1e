from datetime import UTC, date, datetime, timedelta

from hub.messages.cases import CaseOpenedV1, CaseRejectedV1, RejectionReason
from hub.messages.common import RequestType, ServiceMode
from hub.samples import sample_request_v2
from intake.domain import case_id_for, decide, warranty_expiry

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_case_id_is_deterministic_per_request() -> None:
    assert case_id_for("RQ-1") == case_id_for("RQ-1")
    assert case_id_for("RQ-1") != case_id_for("RQ-2")
    assert case_id_for("RQ-1").startswith("AS")


def test_in_warranty_repair_opens_a_pickup_case() -> None:
    result = decide(sample_request_v2(0, now=NOW), at=NOW)
    assert isinstance(result, CaseOpenedV1)
    assert result.service_mode is ServiceMode.PICKUP
    assert result.in_warranty


def test_expired_warranty_is_rejected_with_its_end_date() -> None:
    request = sample_request_v2(0, now=NOW)
    old = request.model_copy(
        update={"item": request.item.model_copy(update={"purchase_date": date(2020, 1, 10)})}
    )
    result = decide(old, at=NOW)
    assert isinstance(result, CaseRejectedV1)
    assert result.reason_code is RejectionReason.WARRANTY_EXPIRED
    assert result.reason == "warranty ended on 2021-01-10"


def test_no_reason_return_closes_after_seven_days() -> None:
    request = sample_request_v2(0, now=NOW, request_type=RequestType.RETURN)
    recent = request.model_copy(
        update={
            "item": request.item.model_copy(
                update={"purchase_date": (NOW - timedelta(days=7)).date()}
            )
        }
    )
    late = request.model_copy(
        update={
            "item": request.item.model_copy(
                update={"purchase_date": (NOW - timedelta(days=8)).date()}
            )
        }
    )
    assert isinstance(decide(recent, at=NOW), CaseOpenedV1)
    rejected = decide(late, at=NOW)
    assert isinstance(rejected, CaseRejectedV1)
    assert rejected.reason_code is RejectionReason.RETURN_WINDOW_CLOSED


def test_large_appliances_get_an_onsite_technician() -> None:
    request = sample_request_v2(0, now=NOW)
    fridge = request.model_copy(
        update={"item": request.item.model_copy(update={"category": "large_appliance"})}
    )
    result = decide(fridge, at=NOW)
    assert isinstance(result, CaseOpenedV1)
    assert result.service_mode is ServiceMode.ONSITE


def test_warranty_months_depend_on_category() -> None:
    assert warranty_expiry("large_appliance", date(2024, 3, 31)) == date(2027, 3, 28)
    assert warranty_expiry("phone", date(2025, 12, 5)) == date(2026, 12, 5)
