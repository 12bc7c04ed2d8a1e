"""The SF gateway as a hub service: pickup orders from Kafka become SF API calls, and back."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub.core.handler import Decision, Emit, Handler, Route, Service, routes
from hub.core.topics import courier_events_topic, courier_orders_topic
from hub.messages.courier import (
    CourierOrderAcceptedV1,
    CourierOrderRejectedV1,
    CourierTrackingV1,
    PickupCancelRequestedV1,
    PickupOrderV1,
)

if TYPE_CHECKING:
    from datetime import datetime

    from gateway.sf_client import SfClient
    from hub.core.settings import HubSettings


def declare_gateway(settings: HubSettings, courier: str) -> Service:
    """Group `gateway-<courier>`: reads the courier's order topic, reports on its events topic.

    Its outputs are the API's answers and the tracking its route-push webhook takes.
    """
    return Service(
        group=f"gateway-{courier}",
        inputs=(courier_orders_topic(courier),),
        handlers={},
        source=f"{settings.source}/gateway-{courier}",
        state_model=None,
        concurrency=settings.partner_concurrency,
        emits=routes(
            Route.to(courier_events_topic(courier)),
            CourierOrderAcceptedV1,
            CourierOrderRejectedV1,
            CourierTrackingV1,
        ),
    )


def build_gateway_service(settings: HubSettings, client: SfClient, courier: str = "sf") -> Service:
    """The gateway of `courier` with its handlers: each order an API call through `client`."""

    async def ordered(order: PickupOrderV1, _state: None, at: datetime) -> Decision[Any]:
        result = await client.create_order(order)
        if result.waybill_no is not None:
            accepted = CourierOrderAcceptedV1(
                order_id=order.order_id,
                case_id=order.case_id,
                waybill_no=result.waybill_no,
                accepted_at=at,
            )
            return Decision(emits=(Emit("accepted", accepted, key=order.case_id),))
        assert result.rejection is not None  # noqa: S101 - the client returns one or the other
        rejected = CourierOrderRejectedV1(
            order_id=order.order_id,
            case_id=order.case_id,
            reason=result.rejection,
            raw_code=result.raw_code,
            detail=result.detail,
        )
        return Decision(emits=(Emit("rejected", rejected, key=order.case_id),))

    async def cancel(
        request: PickupCancelRequestedV1, _state: None, _at: datetime
    ) -> Decision[Any]:
        await client.cancel_order(request.order_id)
        return Decision()

    handlers: dict[str, Handler] = {
        PickupOrderV1.event_type: ordered,
        PickupCancelRequestedV1.event_type: cancel,
    }
    return replace(declare_gateway(settings, courier), handlers=handlers)
