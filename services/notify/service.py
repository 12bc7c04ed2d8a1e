"""Declarations of notify (plans messages from case events) and notify-sender (delivers them)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub.core.handler import Decision, Emit, Route, Service, routes
from hub.core.topics import CASES, NOTIFICATION_EVENTS, NOTIFICATION_REQUESTS
from hub.messages.cases import (
    CaseExceptionRaisedV1,
    CaseOpenedV1,
    PickupAcceptedV1,
    TrackingUpdatedV1,
)
from hub.messages.insurance import FreightClaimSettledV1
from hub.messages.parts import PartsReservedV1, PartsShortageV1
from hub.messages.repair import (
    CaseClosedV1,
    ItemReceivedV1,
    NotificationRequestedV1,
    NotificationSentV1,
    QuoteIssuedV1,
    RefundClawbackRequestedV1,
    RefundRequestedV1,
    ReplacementIssuedV1,
    WorkCompletedV1,
)
from notify.domain import Audience, plan

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from hub.core.settings import HubSettings
    from hub.messages.common import Channel
    from notify.providers import Provider

MILESTONE_EVENTS = (
    CaseOpenedV1, PickupAcceptedV1, TrackingUpdatedV1, ItemReceivedV1, QuoteIssuedV1,
    WorkCompletedV1, RefundRequestedV1, ReplacementIssuedV1, CaseClosedV1,
    RefundClawbackRequestedV1, PartsShortageV1, PartsReservedV1, CaseExceptionRaisedV1,
    FreightClaimSettledV1,
)  # fmt: skip


def build_service(settings: HubSettings) -> Service:
    """Group `notify`: case events in, one notification request per milestone and channel."""
    return Service(
        group="notify",
        inputs=(CASES,),
        handlers={model.event_type: plan for model in MILESTONE_EVENTS},
        source=f"{settings.source}/notify",
        emits=routes(Route.to(NOTIFICATION_REQUESTS), NotificationRequestedV1),
        state_model=Audience,
    )


def declare_sender(settings: HubSettings) -> Service:
    """Group `notify-sender`: notification requests in, one sent event each."""
    return Service(
        group="notify-sender",
        inputs=(NOTIFICATION_REQUESTS,),
        handlers={},
        source=f"{settings.source}/notify-sender",
        emits=routes(Route.to(NOTIFICATION_EVENTS), NotificationSentV1),
        state_model=None,
        ordered=False,
        concurrency=settings.partner_concurrency,
    )


def build_sender(settings: HubSettings, providers: Mapping[Channel, Provider]) -> Service:
    """notify-sender with its handler: each request delivered through its channel's provider."""

    async def deliver(
        request: NotificationRequestedV1, _state: None, at: datetime
    ) -> Decision[Any]:
        message_id = await providers[request.channel].send(request)
        sent = NotificationSentV1(
            dedupe_key=request.dedupe_key,
            case_id=request.case_id,
            channel=request.channel,
            provider_message_id=message_id,
            sent_at=at,
        )
        return Decision(emits=(Emit("sent", sent, key=request.case_id),))

    handlers = {NotificationRequestedV1.event_type: deliver}
    return replace(declare_sender(settings), handlers=handlers)
