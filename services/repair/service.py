"""Wiring of the repair service: case events and the center's reports in, case events out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.core.handler import Decision, Handler, Incoming, Service
from hub.core.topics import CASES
from hub.messages.cases import CaseOpenedV1, TrackingUpdatedV1
from hub.messages.repair import (
    CenterDiagnosedV1,
    CenterItemReceivedV1,
    CenterVisitReportedV1,
    CenterWorkCompletedV1,
    QuoteAnsweredV1,
)
from repair import domain

if TYPE_CHECKING:
    from hub.core.settings import HubSettings

GROUP = "repair"
CENTER = "hz"
"""The one repair center this deployment serves (华东 center, Hangzhou)."""


def center_tickets_topic(center: str = CENTER) -> str:
    """Tickets and quote decisions for one center."""
    return f"repair.{center}.tickets"


def center_events_topic(center: str = CENTER) -> str:
    """Reports of one center."""
    return f"repair.{center}.events"


def build_service(settings: HubSettings) -> Service:
    """The repair consumer group."""
    tickets = center_tickets_topic()

    def opened(incoming: Incoming[CaseOpenedV1]) -> Decision:
        if incoming.state is not None:
            return Decision()
        return domain.on_case_opened(incoming.event, tickets, incoming.envelope.time)

    handlers: dict[str, Handler] = {
        CaseOpenedV1.event_type: opened,
        TrackingUpdatedV1.event_type: lambda i: domain.on_tracking(i.event, i.state, tickets),
        CenterItemReceivedV1.event_type: lambda i: domain.on_item_received(
            i.event, i.state, i.envelope.time
        ),
        CenterDiagnosedV1.event_type: lambda i: domain.on_diagnosed(
            i.event, i.state, i.envelope.time
        ),
        QuoteAnsweredV1.event_type: lambda i: domain.on_quote_answered(i.event, i.state, tickets),
        CenterWorkCompletedV1.event_type: lambda i: domain.on_work_completed(
            i.event, i.state, i.envelope.time
        ),
        CenterVisitReportedV1.event_type: lambda i: domain.on_visit_reported(
            i.event, i.state, i.envelope.time
        ),
    }

    return Service(
        group=GROUP,
        inputs=(CASES, center_events_topic()),
        handlers=handlers,
        source=f"{settings.source}/{GROUP}",
    )
