"""Notification planning, pure: the milestone an event marks, and who hears of it where."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.core.handler import Decision, Emit
from hub.messages.cases import CaseOpenedV1, PickupAcceptedV1, TrackingStatus, TrackingUpdatedV1
from hub.messages.common import Channel
from hub.messages.courier import Leg
from hub.messages.repair import (
    CaseClosedV1,
    ItemReceivedV1,
    NotificationRequestedV1,
    QuoteIssuedV1,
    RefundRequestedV1,
    ReplacementIssuedV1,
    WorkCompletedV1,
)
from notify.templates import render

if TYPE_CHECKING:
    from hub.core.registry import Event
    from hub.core.store.base import JsonObject


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
    }
    if type(event) in simple:
        return simple[type(event)]
    if isinstance(event, PickupAcceptedV1) and event.leg is Leg.INBOUND:
        return "pickup_scheduled"
    if isinstance(event, TrackingUpdatedV1):
        if event.leg is Leg.INBOUND and event.status is TrackingStatus.PICKED_UP:
            return "picked_up"
        if event.leg is Leg.OUTBOUND and event.status is TrackingStatus.DELIVERED:
            return "delivered_back"
    return None


def _address(channel: Channel, customer: dict[str, Any]) -> str | None:
    field = {Channel.SMS: "phone", Channel.APP_PUSH: "customer_id", Channel.EMAIL: "email"}
    address = customer.get(field[channel])
    return str(address) if address else None


def plan(event: Event, state: JsonObject | None) -> Decision:
    """One NotificationRequested per channel the customer chose, never twice for a milestone."""
    milestone = milestone_of(event)
    if milestone is None:
        return Decision()
    if isinstance(event, CaseOpenedV1):
        state = {"customer": event.customer.model_dump(mode="json"), "notified": []}
    if state is None:
        return Decision()  # a case opened before notify existed: nobody to address
    customer = state["customer"]
    notified: list[str] = list(state["notified"])
    fields = {"name": customer["name"], **event.model_dump(mode="json")}
    case_id = str(fields["case_id"])
    emits = []
    for channel in (Channel(value) for value in customer["channels"]):
        key = f"{case_id}:{milestone}:{channel.value}"
        address = _address(channel, customer)
        if key in notified or address is None:
            continue
        message = render(milestone, customer["locale"], fields)
        request = NotificationRequestedV1(
            dedupe_key=key,
            case_id=case_id,
            milestone=milestone,
            channel=channel,
            address=address,
            locale=customer["locale"],
            subject=message.subject,
            body=message.body,
        )
        emits.append(Emit(f"notify-{milestone}-{channel.value}", request))
        notified.append(key)
    return Decision(emits=tuple(emits), state={"customer": customer, "notified": notified})
