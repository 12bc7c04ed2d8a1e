"""Wiring of the intake service: its group, inputs and handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.core.handler import Decision, Emit, Incoming, Service
from hub.core.topics import CASES, STOREFRONT_REQUESTS
from hub.messages.storefront import AfterSalesRequestedV2
from intake.domain import decide

if TYPE_CHECKING:
    from hub.core.settings import HubSettings

GROUP = "intake"


def handle_request(incoming: Incoming[AfterSalesRequestedV2]) -> Decision:
    """A request becomes a case opened or rejected, keyed by its case id."""
    outcome = decide(incoming.event, at=incoming.envelope.time)
    return Decision(emits=(Emit(topic=CASES, role="case", event=outcome, key=outcome.case_id),))


def build_service(settings: HubSettings) -> Service:
    """The intake consumer group."""
    return Service(
        group=GROUP,
        inputs=(STOREFRONT_REQUESTS,),
        handlers={AfterSalesRequestedV2.event_type: handle_request},
        source=f"{settings.source}/{GROUP}",
    )
