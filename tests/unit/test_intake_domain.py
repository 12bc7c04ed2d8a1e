import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hub.core.handler import Decision
from hub.core.registry import Event
from hub.messages.cases import CaseCancelledV1, CaseOpenedV1, CaseRejectedV1, RejectionReason
from hub.messages.common import FreightInsurance, RequestType, ServiceMode
from hub.messages.storefront import AfterSalesCancelledV1
from intake.domain import ItemStatus, OrderItem, cancel, case_id_for, decide, warranty_expiry
from lab.samples import sample_request

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def emitted(decision: Decision[OrderItem]) -> Event:
    """The one event a decision emits."""
    (emit,) = decision.emits
    return emit.event


def test_case_id_is_deterministic_per_request() -> None:
    assert case_id_for("RQ-1") == case_id_for("RQ-1")
    assert case_id_for("RQ-1") != case_id_for("RQ-2")
    assert case_id_for("RQ-1").startswith("AS")


def test_in_warranty_repair_opens_a_pickup_case() -> None:
    result = emitted(decide(sample_request(0, now=NOW), None, NOW))
    assert isinstance(result, CaseOpenedV1)
    assert result.service_mode is ServiceMode.PICKUP
    assert result.in_warranty


def test_the_case_carries_the_customers_trust_and_the_freight_insurance() -> None:
    insurance = FreightInsurance(insurer="huatai", policy_no="YF-1", max_claim=Decimal("15.00"))
    request = sample_request(
        0,
        now=NOW,
        request_type=RequestType.EXCHANGE,
        trusted_customer=True,
        freight_insurance=insurance,
    )
    result = emitted(decide(request, None, NOW))
    assert isinstance(result, CaseOpenedV1)
    assert result.trusted_customer is True
    assert result.freight_insurance == insurance
    body = json.loads(result.to_bytes())
    assert body["trusted_customer"] is True
    assert body["freight_insurance"]["policy_no"] == "YF-1"


def test_a_case_without_trust_or_insurance_has_the_10_body() -> None:
    result = emitted(decide(sample_request(0, now=NOW), None, NOW))
    assert {"trusted_customer", "freight_insurance"}.isdisjoint(json.loads(result.to_bytes()))


def test_expired_warranty_is_rejected_with_its_end_date() -> None:
    request = sample_request(0, now=NOW)
    old = request.model_copy(
        update={"item": request.item.model_copy(update={"purchase_date": date(2020, 1, 10)})}
    )
    result = emitted(decide(old, None, NOW))
    assert isinstance(result, CaseRejectedV1)
    assert result.reason_code is RejectionReason.WARRANTY_EXPIRED
    assert result.reason == "warranty ended on 2021-01-10"


def test_no_reason_return_closes_after_seven_days() -> None:
    request = sample_request(0, now=NOW, request_type=RequestType.RETURN)
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
    assert isinstance(emitted(decide(recent, None, NOW)), CaseOpenedV1)
    rejected = emitted(decide(late, None, NOW))
    assert isinstance(rejected, CaseRejectedV1)
    assert rejected.reason_code is RejectionReason.RETURN_WINDOW_CLOSED


def test_large_appliances_get_an_onsite_technician() -> None:
    request = sample_request(0, now=NOW)
    fridge = request.model_copy(
        update={"item": request.item.model_copy(update={"category": "large_appliance"})}
    )
    result = emitted(decide(fridge, None, NOW))
    assert isinstance(result, CaseOpenedV1)
    assert result.service_mode is ServiceMode.ONSITE


def test_warranty_months_depend_on_category() -> None:
    assert warranty_expiry("large_appliance", date(2024, 3, 31)) == date(2027, 3, 28)
    assert warranty_expiry("phone", date(2025, 12, 5)) == date(2026, 12, 5)


def test_a_second_request_for_an_item_with_an_open_case_is_rejected() -> None:
    opening = decide(sample_request(1, now=NOW), None, NOW)
    first = emitted(opening)
    assert isinstance(first, CaseOpenedV1)
    assert opening.state == OrderItem(
        case_id=first.case_id, request_id=first.request_id, status=ItemStatus.OPEN
    )
    again = sample_request(1, now=NOW).model_copy(update={"request_id": "RQ-other"})
    rejecting = decide(again, opening.state, NOW)
    second = emitted(rejecting)
    assert isinstance(second, CaseRejectedV1)
    assert second.reason_code is RejectionReason.CASE_ALREADY_OPEN
    assert second.reason == f"order item OI-00000001-1 already has open case {first.case_id}"
    assert rejecting.state is None


def test_a_withdrawn_request_cancels_its_open_case_once() -> None:
    request = sample_request(3, now=NOW)
    opening = decide(request, None, NOW)
    opened = emitted(opening)
    assert isinstance(opened, CaseOpenedV1)
    withdrawal = AfterSalesCancelledV1(
        request_id=request.request_id, order_item_id=request.order_item_id, cancelled_at=NOW
    )
    result = cancel(withdrawal, opening.state, NOW)
    cancelled = emitted(result)
    assert isinstance(cancelled, CaseCancelledV1)
    assert cancelled.case_id == opened.case_id
    assert cancelled.reason == "withdrawn by the customer"
    assert result.state is not None
    assert result.state.status is ItemStatus.CANCELLED
    assert cancel(withdrawal, result.state, NOW) == Decision()
    assert cancel(withdrawal, None, NOW) == Decision()
