"""Wiring of the intake service: its group, inputs and handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.core.handler import Decision, Emit, Incoming, Service
from hub.core.topics import CASES, STOREFRONT_REQUESTS
from hub.messages.storefront import (
    AfterSalesCancelledV1,
    AfterSalesRequestedV2,
    ComplaintFiledV1,
    QuoteAnswerGivenV1,
    RatingGivenV1,
)
from intake.domain import answer_quote, cancel, decide, escalate, rate

if TYPE_CHECKING:
    from hub.core.registry import Event
    from hub.core.settings import HubSettings

GROUP = "intake"


def handle_request(incoming: Incoming[AfterSalesRequestedV2]) -> Decision:
    """A request becomes a case opened or rejected, keyed by its case id."""
    outcome, state = decide(incoming.event, at=incoming.envelope.time, item_state=incoming.state)
    return Decision(
        emits=(Emit(topic=CASES, role="case", event=outcome, key=outcome.case_id),), state=state
    )


def handle_cancellation(incoming: Incoming[AfterSalesCancelledV1]) -> Decision:
    """A withdrawn request cancels its open case; anything else has nothing to cancel."""
    result = cancel(incoming.event, at=incoming.envelope.time, item_state=incoming.state)
    if result is None:
        return Decision()
    cancelled, state = result
    return Decision(
        emits=(Emit(topic=CASES, role="cancel", event=cancelled, key=cancelled.case_id),),
        state=state,
    )


def handle_quote_answer(incoming: Incoming[QuoteAnswerGivenV1]) -> Decision:
    """The storefront's quote answer becomes a case event for the repair service."""
    answered = answer_quote(incoming.event, at=incoming.envelope.time, item_state=incoming.state)
    if answered is None:
        return Decision()
    return Decision(emits=(Emit(topic=CASES, role="quote", event=answered, key=answered.case_id),))


def handle_rating(incoming: Incoming[RatingGivenV1]) -> Decision:
    """A rating goes to the tracker, which knows whether the case is closed."""
    submitted = rate(incoming.event, item_state=incoming.state)
    if submitted is None:
        return Decision()
    return Decision(
        emits=(Emit(topic=CASES, role="rating", event=submitted, key=submitted.case_id),)
    )


def handle_complaint(incoming: Incoming[ComplaintFiledV1]) -> Decision:
    """A complaint escalates its case to the platform's arbitration."""
    escalated = escalate(incoming.event, at=incoming.envelope.time, item_state=incoming.state)
    if escalated is None:
        return Decision()
    return Decision(
        emits=(Emit(topic=CASES, role="complaint", event=escalated, key=escalated.case_id),)
    )


def order_item_of(event: Event) -> str | None:
    """Intake keeps its state per order item: one open case per item at a time."""
    return getattr(event, "order_item_id", None)


def build_service(settings: HubSettings) -> Service:
    """The intake consumer group."""
    return Service(
        group=GROUP,
        inputs=(STOREFRONT_REQUESTS,),
        handlers={
            AfterSalesRequestedV2.event_type: handle_request,
            AfterSalesCancelledV1.event_type: handle_cancellation,
            QuoteAnswerGivenV1.event_type: handle_quote_answer,
            RatingGivenV1.event_type: handle_rating,
            ComplaintFiledV1.event_type: handle_complaint,
        },
        source=f"{settings.source}/{GROUP}",
        state_key=order_item_of,
    )
