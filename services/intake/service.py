"""Wiring of the intake service: its group, inputs and handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.core.handler import Decision, Emit, Incoming, Route, Service, routes
from hub.core.topics import CASES, STOREFRONT_REQUESTS
from hub.messages.cases import CaseCancelledV1, CaseOpenedV1, CaseRejectedV1
from hub.messages.repair import QuoteAnsweredV1
from hub.messages.storefront import (
    AfterSalesCancelledV1,
    AfterSalesRequestedV2,
    ComplaintFiledV1,
    QuoteAnswerGivenV1,
    RatingGivenV1,
)
from hub.messages.tracker import ComplaintEscalatedV1, RatingSubmittedV1
from intake.domain import answer_quote, cancel, decide, escalate, rate

if TYPE_CHECKING:
    from hub.core.registry import Event
    from hub.core.settings import HubSettings

GROUP = "intake"
OUTPUTS = (
    CaseOpenedV1, CaseRejectedV1, CaseCancelledV1, QuoteAnsweredV1, RatingSubmittedV1,
    ComplaintEscalatedV1,
)  # fmt: skip


def handle_request(incoming: Incoming[AfterSalesRequestedV2]) -> Decision:
    """A request becomes a case opened or rejected, keyed by its case id."""
    outcome, state = decide(incoming.event, at=incoming.envelope.time, item_state=incoming.state)
    return Decision(emits=(Emit(role="case", event=outcome, key=outcome.case_id),), state=state)


def handle_cancellation(incoming: Incoming[AfterSalesCancelledV1]) -> Decision:
    """A withdrawn request cancels its open case; anything else has nothing to cancel."""
    result = cancel(incoming.event, at=incoming.envelope.time, item_state=incoming.state)
    if result is None:
        return Decision()
    cancelled, state = result
    return Decision(
        emits=(Emit(role="cancel", event=cancelled, key=cancelled.case_id),),
        state=state,
    )


def handle_quote_answer(incoming: Incoming[QuoteAnswerGivenV1]) -> Decision:
    """The storefront's quote answer becomes a case event for the repair service."""
    answered = answer_quote(incoming.event, at=incoming.envelope.time, item_state=incoming.state)
    if answered is None:
        return Decision()
    return Decision(emits=(Emit(role="quote", event=answered, key=answered.case_id),))


def handle_rating(incoming: Incoming[RatingGivenV1]) -> Decision:
    """A rating goes to the tracker, which knows whether the case is closed."""
    submitted = rate(incoming.event, item_state=incoming.state)
    if submitted is None:
        return Decision()
    return Decision(emits=(Emit(role="rating", event=submitted, key=submitted.case_id),))


def handle_complaint(incoming: Incoming[ComplaintFiledV1]) -> Decision:
    """A complaint escalates its case to the platform's arbitration."""
    escalated = escalate(incoming.event, at=incoming.envelope.time, item_state=incoming.state)
    if escalated is None:
        return Decision()
    return Decision(emits=(Emit(role="complaint", event=escalated, key=escalated.case_id),))


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
        emits=routes(Route.to(CASES), *OUTPUTS),
    )
