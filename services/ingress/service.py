"""The ingress as a declared group: it consumes nothing and writes only the storefront topic."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.core.handler import Route, Service, routes
from hub.core.topics import STOREFRONT_REQUESTS
from hub.messages.storefront import (
    AfterSalesCancelledV1,
    AfterSalesRequestedV3,
    ComplaintFiledV1,
    QuoteAnswerGivenV1,
    RatingGivenV1,
)

if TYPE_CHECKING:
    from hub.core.settings import HubSettings

GROUP = "ingress"
ACCEPTED = (
    AfterSalesRequestedV3,
    AfterSalesCancelledV1,
    QuoteAnswerGivenV1,
    RatingGivenV1,
    ComplaintFiledV1,
)
"""The storefront's event families, every version of each: what `POST /events` takes."""


def declare_ingress(settings: HubSettings) -> Service:
    """Group `ingress`: no inputs; each storefront family it accepts goes to the requests topic."""
    return Service(
        group=GROUP,
        inputs=(),
        handlers={},
        source=f"{settings.source}/{GROUP}",
        state_model=None,
        emits=routes(Route.to(STOREFRONT_REQUESTS), *ACCEPTED),
    )
