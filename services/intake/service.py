"""Declaration of the intake service: its group, inputs, outputs, state and handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.core.handler import Route, Service, routes
from hub.core.topics import CASES, STOREFRONT_REQUESTS
from hub.messages.cases import CaseCancelledV1, CaseOpenedV1, CaseRejectedV1
from hub.messages.repair import QuoteAnsweredV1
from hub.messages.storefront import (
    AfterSalesCancelledV1,
    AfterSalesRequestedV3,
    ComplaintFiledV1,
    QuoteAnswerGivenV1,
    RatingGivenV1,
)
from hub.messages.tracker import ComplaintEscalatedV1, RatingSubmittedV1
from intake.domain import OrderItem, answer_quote, cancel, decide, escalate, rate

if TYPE_CHECKING:
    from hub.core.registry import Event
    from hub.core.settings import HubSettings

GROUP = "intake"
OUTPUTS = (
    CaseOpenedV1, CaseRejectedV1, CaseCancelledV1, QuoteAnsweredV1, RatingSubmittedV1,
    ComplaintEscalatedV1,
)  # fmt: skip


def order_item_of(event: Event) -> str | None:
    """Intake keeps its state per order item: one open case per item at a time."""
    return getattr(event, "order_item_id", None)


def build_service(settings: HubSettings) -> Service:
    """The intake consumer group."""
    return Service(
        group=GROUP,
        inputs=(STOREFRONT_REQUESTS,),
        handlers={
            AfterSalesRequestedV3.event_type: decide,
            AfterSalesCancelledV1.event_type: cancel,
            QuoteAnswerGivenV1.event_type: answer_quote,
            RatingGivenV1.event_type: rate,
            ComplaintFiledV1.event_type: escalate,
        },
        source=f"{settings.source}/{GROUP}",
        state_key=order_item_of,
        state_model=OrderItem,
        emits=routes(Route.to(CASES), *OUTPUTS),
    )
