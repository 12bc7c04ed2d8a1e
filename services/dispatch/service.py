"""Wiring of the dispatch service: case events and courier events in, decisions out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatch import domain
from dispatch.partners import PartnerTable, load_partners
from hub.core.handler import Decision, Incoming, Route, Service, routes
from hub.core.topics import CASES, courier_events_topic, courier_orders_topic
from hub.messages.cases import (
    CaseCancelledV1,
    CaseExceptionRaisedV1,
    CaseOpenedV1,
    PickupAcceptedV1,
    PickupCancelledV1,
    PickupFailedV1,
    PickupRequestedV1,
    TrackingUpdatedV1,
)
from hub.messages.courier import (
    CourierOrderAcceptedV1,
    CourierOrderRejectedV1,
    CourierTrackingV1,
    PickupCancelRequestedV1,
    PickupOrderV1,
)
from hub.messages.repair import ReturnShipmentRequestedV1, VisitReportedV1
from hub.messages.timers import PickupAcceptanceDueV1

if TYPE_CHECKING:
    from hub.core.handler import Handler
    from hub.core.settings import HubSettings

GROUP = "dispatch"
CASE_OUTPUTS = (
    PickupRequestedV1, PickupAcceptedV1, PickupFailedV1, PickupCancelledV1, TrackingUpdatedV1,
    CaseExceptionRaisedV1,
)  # fmt: skip


def handlers(table: PartnerTable) -> dict[str, Handler]:
    """One handler per event family, each a call into the pure domain."""

    def opened(incoming: Incoming[CaseOpenedV1]) -> Decision:
        if incoming.state is not None:
            return Decision()  # already dispatched (or kept for an onsite visit)
        return domain.open_shipment(incoming.event, table, incoming.envelope.time)

    def accepted(incoming: Incoming[CourierOrderAcceptedV1]) -> Decision:
        return domain.on_accepted(incoming.event, incoming.state, incoming.envelope.time)

    def rejected(incoming: Incoming[CourierOrderRejectedV1]) -> Decision:
        return domain.on_rejected(incoming.event, incoming.state, table, incoming.envelope.time)

    def due(incoming: Incoming[PickupAcceptanceDueV1]) -> Decision:
        return domain.on_acceptance_due(
            incoming.event, incoming.state, table, incoming.envelope.time
        )

    def tracking(incoming: Incoming[CourierTrackingV1]) -> Decision:
        return domain.on_tracking(incoming.event, incoming.state, table, incoming.envelope.time)

    def cancelled(incoming: Incoming[CaseCancelledV1]) -> Decision:
        return domain.on_case_cancelled(incoming.event, incoming.state, incoming.envelope.time)

    def visit(incoming: Incoming[VisitReportedV1]) -> Decision:
        return domain.on_visit_needs_workshop(
            incoming.event, incoming.state, table, incoming.envelope.time
        )

    def back(incoming: Incoming[ReturnShipmentRequestedV1]) -> Decision:
        return domain.on_return_requested(
            incoming.event, incoming.state, table, incoming.envelope.time
        )

    return {
        CaseOpenedV1.event_type: opened,
        CourierOrderAcceptedV1.event_type: accepted,
        CourierOrderRejectedV1.event_type: rejected,
        PickupAcceptanceDueV1.event_type: due,
        CourierTrackingV1.event_type: tracking,
        CaseCancelledV1.event_type: cancelled,
        VisitReportedV1.event_type: visit,
        ReturnShipmentRequestedV1.event_type: back,
    }


def build_service(settings: HubSettings, table: PartnerTable | None = None) -> Service:
    """The dispatch consumer group, for the couriers of `table` (deploy/partners.yaml)."""
    table = table or load_partners()
    return Service(
        group=GROUP,
        inputs=(CASES, *(courier_events_topic(courier.code) for courier in table.couriers)),
        handlers=handlers(table),
        source=f"{settings.source}/{GROUP}",
        timers=table.deadlines,
        emits={
            **routes(Route.to(CASES), *CASE_OUTPUTS),
            **routes(
                Route.per_partner(courier_orders_topic, (c.code for c in table.couriers)),
                PickupOrderV1,
                PickupCancelRequestedV1,
            ),
        },
    )
