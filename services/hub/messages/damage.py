"""Damage in transit (运输损坏): the claim the hub raises against the courier of a leg."""

from __future__ import annotations

from pydantic import AwareDatetime

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import Amount, NonEmpty
from hub.messages.courier import Leg


# --- case events (`aftersales.cases`) ----------------------------------------------------
@CATALOGUE.register
class DamageClaimedV1(Event):
    """The item arrived damaged: a claim against the courier that carried it, once per case.

    `claim_id` is our idempotency key at the courier's claims desk (case id + leg).
    """

    event_type = "aftersales.damage.claimed"
    version = 1

    claim_id: NonEmpty
    case_id: NonEmpty
    courier: NonEmpty
    leg: Leg
    waybill_no: NonEmpty
    declared_value: Amount
    """What the pickup order declared for the parcel (the item's price)."""
    description: str
    evidence_ref: str | None = None
    claimed_at: AwareDatetime


def damage_claim_id(case_id: str, leg: Leg) -> str:
    """Our claim's idempotency key: one claim per case and leg (`<case_id>-<leg>-damage`)."""
    return f"{case_id}-{leg.value}-damage"
