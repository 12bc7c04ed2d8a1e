"""Declaration of the repair service: case events and the center's reports in, case events out."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from dispatch.partners import PartnerTable, load_partners
from hub.core.handler import Handler, Route, Service, routes
from hub.core.topics import (
    CASES,
    center_events_topic,
    center_tickets_topic,
    parts_events_topic,
    parts_orders_topic,
)
from hub.messages.cases import CaseExceptionRaisedV1, CaseOpenedV1, TrackingUpdatedV1
from hub.messages.damage import DamageClaimedV1
from hub.messages.parts import (
    PartsGivenUpV1,
    PartsReadyV1,
    PartsRequestedV1,
    PartsReservationCancelledV1,
    PartsReservationRequestedV1,
    PartsReservedV1,
    PartsShortageV1,
    PartsWaitDueV1,
    RepairWithdrawnV1,
    SupplierPartsReservedV1,
    SupplierPartsShortV1,
    SupplierReservationRejectedV1,
)
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
    RefundClawbackRequestedV1,
    RefundRequestedV1,
    RepairTicketV1,
    ReplacementIssuedV1,
    ReturnShipmentRequestedV1,
    VisitReportedV1,
    VisitScheduledV1,
    WorkCompletedV1,
)
from repair import domain, parts
from repair.refund_policy import ExpressRefundPolicy, load_refund_policy

if TYPE_CHECKING:
    from hub.core.settings import HubSettings

GROUP = "repair"
CASE_OUTPUTS = (
    ItemReceivedV1, DiagnosisCompletedV1, QuoteIssuedV1, WorkCompletedV1, RefundRequestedV1,
    ReplacementIssuedV1, ReturnShipmentRequestedV1, VisitScheduledV1, VisitReportedV1,
    CaseClosedV1, CaseExceptionRaisedV1, RefundClawbackRequestedV1, PartsRequestedV1,
    PartsShortageV1, PartsReservedV1, PartsGivenUpV1, DamageClaimedV1,
)  # fmt: skip


def build_service(
    settings: HubSettings,
    table: PartnerTable | None = None,
    policy: ExpressRefundPolicy | None = None,
) -> Service:
    """The repair group, for the centers of `table` and the express refunds of `policy`."""
    table = table or load_partners()
    policy = policy or load_refund_policy(settings=settings)

    handlers: dict[str, Handler] = {
        CaseOpenedV1.event_type: partial(domain.on_case_opened, table=table),
        TrackingUpdatedV1.event_type: partial(domain.on_tracking, policy=policy),
        CenterItemReceivedV1.event_type: domain.on_item_received,
        CenterDiagnosedV1.event_type: partial(parts.on_diagnosed, table=table),
        QuoteAnsweredV1.event_type: partial(parts.on_quote_answered, table=table),
        CenterWorkCompletedV1.event_type: domain.on_work_completed,
        CenterVisitReportedV1.event_type: domain.on_visit_reported,
        SupplierPartsReservedV1.event_type: parts.on_reserved,
        SupplierPartsShortV1.event_type: parts.on_shortage,
        SupplierReservationRejectedV1.event_type: parts.on_rejected,
        PartsWaitDueV1.event_type: parts.on_wait_due,
    }
    centers = tuple(center_events_topic(center.code) for center in table.repair_centers)
    suppliers = tuple(supplier.code for supplier in table.parts_suppliers)
    return Service(
        group=GROUP,
        inputs=(CASES, *centers, *(parts_events_topic(code) for code in suppliers)),
        handlers=handlers,
        source=f"{settings.source}/{GROUP}",
        state_model=domain.RepairCase,
        timers=table.parts_waits,
        emits={
            **routes(Route.to(CASES), *CASE_OUTPUTS),
            **routes(
                Route.per_partner(center_tickets_topic, (c.code for c in table.repair_centers)),
                RepairTicketV1,
                QuoteDecisionV1,
                PartsReadyV1,
                RepairWithdrawnV1,
            ),
            **routes(
                Route.per_partner(parts_orders_topic, suppliers),
                PartsReservationRequestedV1,
                PartsReservationCancelledV1,
            ),
        },
    )
