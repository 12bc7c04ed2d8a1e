"""What the storefront publishes: after-sales requests (v1, v2, v3) with their upcasters."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, Field

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import (
    Address,
    Customer,
    Fault,
    FreightInsurance,
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
class AfterSalesRequestedV3(Event):
    """A request with what the order adds to it: the customer's trust and return-freight insurance.

    `trusted_customer` is the storefront's verdict (its credit score, order history); the hub's
    express-refund policy decides what that earns. `freight_insurance` is set when the order
    carries 退货运费险, so the return leg's freight is claimed from its insurer.
    """

    event_type = "storefront.aftersales.requested"
    version = 3

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
    trusted_customer: bool = False
    freight_insurance: FreightInsurance | None = None


@CATALOGUE.upcaster(AfterSalesRequestedV2, AfterSalesRequestedV3)
def upcast_requested_v2_v3(old: AfterSalesRequestedV2) -> AfterSalesRequestedV3:
    """v2 knew neither trust nor insurance: an untrusted customer, an uninsured order."""
    # Every v2 field is a v3 field and already validated: taken as is (validating the request
    # again doubled its cost at the front door; `dict(old)` alone cost more than the rest).
    return AfterSalesRequestedV3.model_construct(**old.__dict__)


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


@CATALOGUE.register
class RatingGivenV1(Event):
    """The customer rated the service of a request (1 to 5 stars, an optional comment)."""

    event_type = "storefront.aftersales.rated"
    version = 1

    request_id: NonEmpty
    order_item_id: NonEmpty
    score: Annotated[int, Field(ge=1, le=5)]
    comment: Annotated[str, Field(max_length=2000)] = ""
    rated_at: AwareDatetime


@CATALOGUE.register
class ComplaintFiledV1(Event):
    """The customer complained about the handling of a request."""

    event_type = "storefront.aftersales.complained"
    version = 1

    request_id: NonEmpty
    order_item_id: NonEmpty
    complaint: Annotated[str, Field(min_length=1, max_length=2000)]
    filed_at: AwareDatetime
