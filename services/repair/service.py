"""Declaration of the repair service: case events and the center's reports in, case events out."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from dispatch.partners import PartnerTable, load_partners
from hub.core.handler import Handler, Route, Service, routes
from hub.core.topics import CASES, center_events_topic, center_tickets_topic
from hub.messages.cases import CaseExceptionRaisedV1, CaseOpenedV1, TrackingUpdatedV1
from hub.messages.damage import DamageClaimedV1
from hub.messages.repair import (
    CaseClosedV1,
    CenterDiagnosedV1,
    CenterItemReceivedV1,
    CenterVisitReportedV1,
    CenterWorkCompletedV1,
    DiagnosisCompletedV1,
    ItemReceivedV1,
    QuoteAnsweredV1,
    QuoteDecisionV1,
    QuoteIssuedV1,
    RefundRequestedV1,
    RepairTicketV1,
    ReplacementIssuedV1,
    ReturnShipmentRequestedV1,
    VisitReportedV1,
    VisitScheduledV1,
    WorkCompletedV1,
)
from repair import domain

if TYPE_CHECKING:
    from hub.core.settings import HubSettings

GROUP = "repair"
CASE_OUTPUTS = (
    ItemReceivedV1, DiagnosisCompletedV1, QuoteIssuedV1, WorkCompletedV1, RefundRequestedV1,
    ReplacementIssuedV1, ReturnShipmentRequestedV1, VisitScheduledV1, VisitReportedV1,
    CaseClosedV1, CaseExceptionRaisedV1, DamageClaimedV1,
)  # fmt: skip


def build_service(settings: HubSettings, table: PartnerTable | None = None) -> Service:
    """The repair consumer group, for the repair centers of `table` (deploy/partners.yaml)."""
    table = table or load_partners()

    handlers: dict[str, Handler] = {
        CaseOpenedV1.event_type: partial(domain.on_case_opened, table=table),
        TrackingUpdatedV1.event_type: domain.on_tracking,
        CenterItemReceivedV1.event_type: domain.on_item_received,
        CenterDiagnosedV1.event_type: domain.on_diagnosed,
        QuoteAnsweredV1.event_type: domain.on_quote_answered,
        CenterWorkCompletedV1.event_type: domain.on_work_completed,
        CenterVisitReportedV1.event_type: domain.on_visit_reported,
    }
    centers = tuple(center_events_topic(center.code) for center in table.repair_centers)
    return Service(
        group=GROUP,
        inputs=(CASES, *centers),
        handlers=handlers,
        source=f"{settings.source}/{GROUP}",
        state_model=domain.RepairCase,
        emits={
            **routes(Route.to(CASES), *CASE_OUTPUTS),
            **routes(
                Route.per_partner(center_tickets_topic, (c.code for c in table.repair_centers)),
                RepairTicketV1,
                QuoteDecisionV1,
            ),
        },
    )
