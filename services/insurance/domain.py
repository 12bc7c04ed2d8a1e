"""Freight-claim decisions, pure: which cases are insured, when to claim, what the answer means."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict

from hub.core.handler import Decision, Emit
from hub.messages.cases import TrackingStatus
from hub.messages.common import FreightInsurance, RequestType
from hub.messages.courier import Leg
from hub.messages.insurance import (
    ClaimOutcome,
    FreightClaimFiledV1,
    FreightClaimSettledV1,
    freight_claim_id,
)

if TYPE_CHECKING:
    from datetime import datetime

    from dispatch.partners import PartnerTable
    from hub.messages.cases import CaseOpenedV1, TrackingUpdatedV1

INSURED_REQUESTS = frozenset({RequestType.RETURN, RequestType.EXCHANGE})
"""Return-freight insurance pays for the customer's parcel going back: returns and exchanges."""
PICKED_UP = frozenset(
    {
        TrackingStatus.PICKED_UP,
        TrackingStatus.IN_TRANSIT,
        TrackingStatus.OUT_FOR_DELIVERY,
        TrackingStatus.DELIVERED,
    }
)
"""Tracking that proves the courier has the parcel (a lost picked-up push is not waited for)."""


class FreightCover(BaseModel):
    """The insurance group's state of one insured case: the policy, the claim, its answer."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    request_type: RequestType
    insurance: FreightInsurance
    claim: FreightClaimFiledV1 | None = None
    settlement: FreightClaimSettledV1 | None = None


@dataclass(frozen=True, slots=True)
class InsurerAnswer:
    """What an insurer answered a claim (the same answer to every repeat of its claim id)."""

    outcome: ClaimOutcome
    paid: Decimal
    insurer_ref: str = ""
    reason_code: str = ""
    reason: str = ""


class ClaimPort(Protocol):
    """Files a claim at its insurer; the claim id is the idempotency key the insurer honours."""

    async def file(self, claim: FreightClaimFiledV1) -> InsurerAnswer:
        """The insurer's answer; raises a transient error when it may be worth asking again."""
        ...


def claim_amount(freight: Decimal, insurance: FreightInsurance) -> Decimal:
    """The courier's freight for the leg, at most what the policy pays."""
    return min(freight, insurance.max_claim)


def on_case_opened(
    event: CaseOpenedV1, known: FreightCover | None, _at: datetime
) -> Decision[FreightCover]:
    """Remember an insured return or exchange; every other case is none of this group's business."""
    if known is not None or event.freight_insurance is None:
        return Decision()
    if event.request_type not in INSURED_REQUESTS:
        return Decision()
    cover = FreightCover(
        case_id=event.case_id,
        request_type=event.request_type,
        insurance=event.freight_insurance,
    )
    return Decision(state=cover)


def on_tracking(
    event: TrackingUpdatedV1, cover: FreightCover | None, at: datetime, *, table: PartnerTable
) -> Decision[FreightCover]:
    """The courier has the customer's parcel: claim its freight, once per case."""
    if cover is None or cover.claim is not None:
        return Decision()
    if event.leg is not Leg.INBOUND or event.status not in PICKED_UP:
        return Decision()
    freight = table.courier(event.courier).price
    claim = FreightClaimFiledV1(
        case_id=cover.case_id,
        claim_id=freight_claim_id(cover.case_id),
        insurer=cover.insurance.insurer,
        policy_no=cover.insurance.policy_no,
        courier=event.courier,
        waybill_no=event.waybill_no,
        freight=freight,
        amount=claim_amount(freight, cover.insurance),
        filed_at=at,
    )
    filed = cover.model_copy(update={"claim": claim})
    return Decision(emits=(Emit("freight-claim", claim),), state=filed)


def needs_filing(cover: FreightCover | None) -> bool:
    """Whether the insurer must still be asked about the case's claim (not once it answered)."""
    if cover is None:
        # A claim read again on a fresh store: asking again is safe, the claim id is the key.
        return True
    return cover.settlement is None


def on_answer(
    claim: FreightClaimFiledV1, cover: FreightCover | None, answer: InsurerAnswer, at: datetime
) -> Decision[FreightCover]:
    """The insurer's answer as a case event; the case keeps it, so it is never asked again."""
    approved = answer.outcome is ClaimOutcome.APPROVED
    settled = FreightClaimSettledV1(
        case_id=claim.case_id,
        claim_id=claim.claim_id,
        insurer=claim.insurer,
        policy_no=claim.policy_no,
        waybill_no=claim.waybill_no,
        outcome=answer.outcome,
        claimed=claim.amount,
        # Never more than claimed, whatever the insurer says; nothing when it refuses.
        paid=min(answer.paid, claim.amount) if approved else Decimal("0.00"),
        insurer_ref=answer.insurer_ref,
        reason_code="" if approved else answer.reason_code,
        reason="" if approved else answer.reason,
        settled_at=at,
    )
    state = None if cover is None else cover.model_copy(update={"settlement": settled})
    return Decision(emits=(Emit("freight-claim-settled", settled),), state=state)
