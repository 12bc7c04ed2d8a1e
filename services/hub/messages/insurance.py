"""Return-freight insurance claims (退货运费险) on `aftersales.cases`: filed, then settled."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import Amount, NonEmpty


class ClaimOutcome(StrEnum):
    """What the insurer made of a claim."""

    APPROVED = "approved"
    REJECTED = "rejected"


@CATALOGUE.register
class FreightClaimFiledV1(Event):
    """The hub claims the return leg's freight from the order's insurer, once per case.

    `claim_id` is the idempotency key the insurer honours (derived from the case id);
    `amount` is the courier's freight for the leg, capped by the policy's `max_claim`.
    """

    event_type = "aftersales.freight-claim.filed"
    version = 1

    case_id: NonEmpty
    claim_id: NonEmpty
    insurer: NonEmpty
    policy_no: NonEmpty
    courier: NonEmpty
    waybill_no: NonEmpty
    freight: Amount
    """The courier's price for the leg (deploy/partners.yaml)."""
    amount: Amount
    """What is claimed: the freight, at most the policy's cap."""
    filed_at: AwareDatetime


@CATALOGUE.register
class FreightClaimSettledV1(Event):
    """The insurer's answer to a freight claim: approved with what it pays, or rejected with why."""

    event_type = "aftersales.freight-claim.settled"
    version = 1

    case_id: NonEmpty
    claim_id: NonEmpty
    insurer: NonEmpty
    policy_no: NonEmpty
    waybill_no: NonEmpty
    outcome: ClaimOutcome
    claimed: Amount
    paid: Amount
    """What the insurer pays the customer; 0 when rejected."""
    insurer_ref: str = ""
    """The insurer's own number for the claim."""
    reason_code: str = ""
    reason: str = ""
    """Why it was rejected (empty when approved)."""
    settled_at: AwareDatetime


def freight_claim_id(case_id: str) -> str:
    """The claim's idempotency key at the insurer: one freight claim per case (`FC-<case_id>`)."""
    return f"FC-{case_id}"
