"""Declaration of the dispatch service: case events and courier events in, decisions out."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from dispatch import domain
from dispatch.partners import PartnerTable, load_partners
from hub.core.handler import Route, Service, routes
from hub.core.table import LatestTable
from hub.core.topics import CASES, COURIER_SCORES, courier_events_topic, courier_orders_topic
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
from hub.messages.scores import CourierScoredV1
from hub.messages.timers import PickupAcceptanceDueV1, PickupRoundDueV1

if TYPE_CHECKING:
    from hub.core.handler import Handler
    from hub.core.settings import HubSettings

GROUP = "dispatch"
CASE_OUTPUTS = (
    PickupRequestedV1, PickupAcceptedV1, PickupFailedV1, PickupCancelledV1, TrackingUpdatedV1,
    CaseExceptionRaisedV1,
)  # fmt: skip


def handlers(table: PartnerTable, scores: domain.Scores = domain.NO_SCORES) -> dict[str, Handler]:
    """The domain's handler of each event family, those that choose couriers given `table`.

    New orders (a case opened, a visit that needs the workshop, a return) go by `scores`.
    """
    return {
        CaseOpenedV1.event_type: partial(domain.on_case_opened, table=table, scores=scores),
        PickupRequestedV1.event_type: partial(domain.on_pickup_requested, table=table),
        CourierOrderAcceptedV1.event_type: domain.on_accepted,
        CourierOrderRejectedV1.event_type: partial(domain.on_rejected, table=table),
        PickupAcceptanceDueV1.event_type: partial(domain.on_acceptance_due, table=table),
        PickupRoundDueV1.event_type: partial(domain.on_round_due, table=table),
        CourierTrackingV1.event_type: partial(domain.on_tracking, table=table),
        CaseCancelledV1.event_type: domain.on_case_cancelled,
        VisitReportedV1.event_type: partial(
            domain.on_visit_needs_workshop, table=table, scores=scores
        ),
        ReturnShipmentRequestedV1.event_type: partial(
            domain.on_return_requested, table=table, scores=scores
        ),
    }


def build_service(settings: HubSettings, table: PartnerTable | None = None) -> Service:
    """The dispatch consumer group, for the couriers of `table` (deploy/partners.yaml)."""
    table = table or load_partners()
    # Every instance reads every courier's latest scorecard: a case of any partition may
    # need any courier (hub.core.table says why a group's share would not do).
    cards = LatestTable(COURIER_SCORES, CourierScoredV1)
    blend = domain.Blend(
        score=settings.dispatch_weight_score,
        cost=settings.dispatch_weight_cost,
        sla=settings.dispatch_weight_sla,
    )
    return Service(
        group=GROUP,
        inputs=(CASES, *(courier_events_topic(courier.code) for courier in table.couriers)),
        handlers=handlers(table, domain.Scores(cards, blend)),
        tables=(cards,),
        source=f"{settings.source}/{GROUP}",
        state_model=domain.Dispatch,
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
