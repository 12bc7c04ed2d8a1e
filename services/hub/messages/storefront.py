"""What the storefront publishes: after-sales requests (v1, v2) with the v1 -> v2 upcaster."""

from __future__ import annotations

from pydantic import AwareDatetime

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import (
    Address,
    Customer,
    Fault,
    Item,
    NonEmpty,
    RequestType,
    ServiceMode,
    TimeWindow,
)


@CATALOGUE.register
class AfterSalesRequestedV1(Event):
    """A customer filed an after-sales request (first published shape: free-text fault only)."""

    event_type = "storefront.aftersales.requested"
    version = 1

    request_id: NonEmpty
    order_id: NonEmpty
    order_item_id: NonEmpty
    request_type: RequestType
    customer: Customer
    address: Address
    item: Item
    fault_description: str
    requested_at: AwareDatetime


@CATALOGUE.register
class AfterSalesRequestedV2(Event):
    """A customer filed an after-sales request, with a fault code and a preferred pickup window."""

    event_type = "storefront.aftersales.requested"
    version = 2

    request_id: NonEmpty
    order_id: NonEmpty
    order_item_id: NonEmpty
    request_type: RequestType
    customer: Customer
    address: Address
    item: Item
    fault: Fault
    requested_at: AwareDatetime
    pickup_window: TimeWindow | None = None
    preferred_mode: ServiceMode | None = None


UNSPECIFIED_FAULT_CODE = "unspecified"


@CATALOGUE.upcaster(AfterSalesRequestedV1, AfterSalesRequestedV2)
def upcast_requested_v1_v2(old: AfterSalesRequestedV1) -> AfterSalesRequestedV2:
    """v1 had only a free-text fault; v2 carries it with the code `unspecified`."""
    return AfterSalesRequestedV2(
        request_id=old.request_id,
        order_id=old.order_id,
        order_item_id=old.order_item_id,
        request_type=old.request_type,
        customer=old.customer,
        address=old.address,
        item=old.item,
        fault=Fault(code=UNSPECIFIED_FAULT_CODE, description=old.fault_description),
        requested_at=old.requested_at,
    )


@CATALOGUE.register
class AfterSalesCancelledV1(Event):
    """The customer withdrew an after-sales request."""

    event_type = "storefront.aftersales.cancelled"
    version = 1

    request_id: NonEmpty
    order_item_id: NonEmpty
    reason: str = ""
    cancelled_at: AwareDatetime


@CATALOGUE.register
class QuoteAnswerGivenV1(Event):
    """The customer approved or declined an out-of-warranty repair quote."""

    event_type = "storefront.aftersales.quote-answered"
    version = 1

    request_id: NonEmpty
    order_item_id: NonEmpty
    approved: bool
    answered_at: AwareDatetime
