"""Notification planning, pure: the milestone an event marks, and who hears of it where."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from hub.core.handler import Decision, Emit
from hub.messages.cases import (
    CaseExceptionRaisedV1,
    CaseOpenedV1,
    PickupAcceptedV1,
    TrackingStatus,
    TrackingUpdatedV1,
)
from hub.messages.common import Channel, Customer
from hub.messages.courier import Leg
from hub.messages.insurance import FreightClaimSettledV1
from hub.messages.parts import PartsReservedV1, PartsShortageV1
from hub.messages.repair import (
    CaseClosedV1,
    ItemReceivedV1,
    NotificationRequestedV1,
    QuoteIssuedV1,
    RefundClawbackRequestedV1,
    RefundRequestedV1,
    ReplacementIssuedV1,
    WorkCompletedV1,
)
from notify.templates import render

if TYPE_CHECKING:
    from datetime import datetime

    from hub.core.registry import Event


CUSTOMER_EXCEPTIONS = {"transit_damage": "transit_damage"}
"""Exception codes the customer hears of, and the milestone each marks (others stay internal)."""


class Audience(BaseModel):
    """Notify's state of one case: whom to tell, and the notifications already requested."""

    model_config = ConfigDict(frozen=True)

    customer: Customer
    notified: tuple[str, ...] = ()


def milestone_of(event: Event) -> str | None:
    """The milestone a case event marks for the customer, or None."""
    simple = {
        CaseOpenedV1: "opened",
        ItemReceivedV1: "received",
        QuoteIssuedV1: "quote",
        WorkCompletedV1: "repaired",
        RefundRequestedV1: "refunded",
        ReplacementIssuedV1: "replaced",
        CaseClosedV1: "closed",
        RefundClawbackRequestedV1: "refund_clawback",
        PartsShortageV1: "parts_shortage",
    }
    return _money_milestone(event) or _milestone_by_content(event) or simple.get(type(event))


def _money_milestone(event: Event) -> str | None:
    """Money the customer gets: an express refund, the insurer's answer to a freight claim."""
    if isinstance(event, RefundRequestedV1) and event.express:
        return "express_refunded"
    if isinstance(event, FreightClaimSettledV1):
        return f"freight_claim_{event.outcome.value}"
    return None


def _milestone_by_content(event: Event) -> str | None:
    """The milestones an event marks only for some of its values."""
    if isinstance(event, CaseExceptionRaisedV1):
        return CUSTOMER_EXCEPTIONS.get(event.code)
    if isinstance(event, PickupAcceptedV1) and event.leg is Leg.INBOUND:
        return "pickup_scheduled"
    if isinstance(event, PartsReservedV1) and event.after_shortage:
        return "parts_arrived"  # parts in stock at once are no news to the customer
    if isinstance(event, TrackingUpdatedV1):
        return _TRACKING_MILESTONES.get((event.leg, event.status))
    return None


_TRACKING_MILESTONES = {
    (Leg.INBOUND, TrackingStatus.PICKED_UP): "picked_up",
    (Leg.OUTBOUND, TrackingStatus.DELIVERED): "delivered_back",
}


def _address(channel: Channel, customer: Customer) -> str | None:
    address = {
        Channel.SMS: customer.phone,
        Channel.APP_PUSH: customer.customer_id,
        Channel.EMAIL: customer.email,
    }[channel]
    return address or None


def plan(event: Event, audience: Audience | None, _at: datetime) -> Decision[Audience]:
    """One NotificationRequested per channel the customer chose, never twice for a milestone."""
    milestone = milestone_of(event)
    if milestone is None:
        return Decision()
    if isinstance(event, CaseOpenedV1):
        audience = Audience(customer=event.customer)
    if audience is None:
        return Decision()  # a case opened before notify existed: nobody to address
    customer = audience.customer
    notified = list(audience.notified)
    fields = {"name": customer.name, **event.model_dump(mode="json")}
    case_id = str(fields["case_id"])
    emits = []
    for channel in customer.channels:
        key = f"{case_id}:{milestone}:{channel.value}"
        address = _address(channel, customer)
        if key in notified or address is None:
            continue
        message = render(milestone, customer.locale, fields)
        request = NotificationRequestedV1(
            dedupe_key=key,
            case_id=case_id,
            milestone=milestone,
            channel=channel,
            address=address,
            locale=customer.locale,
            subject=message.subject,
            body=message.body,
        )
        emits.append(Emit(f"notify-{milestone}-{channel.value}", request))
        notified.append(key)
    return Decision(emits=tuple(emits), state=Audience(customer=customer, notified=tuple(notified)))
