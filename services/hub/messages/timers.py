"""Events a service schedules for itself through the kernel's timers."""

from __future__ import annotations

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import NonEmpty


@CATALOGUE.register
class PickupAcceptanceDueV1(Event):
    """The courier of `order_id` had until now to accept the pickup order."""

    event_type = "dispatch.pickup.acceptance-due"
    version = 1
    minor = 1

    case_id: NonEmpty
    order_id: NonEmpty
    courier: NonEmpty
    last_call: bool = False
    """The leg's last wait: every courier was tried and some orders are still open."""


@CATALOGUE.register
class PickupRoundDueV1(Event):
    """Every courier of the case's leg refused for now (capacity, hours): time to ask again."""

    event_type = "dispatch.pickup.round-due"
    version = 1

    case_id: NonEmpty
    round: int
    """The round that ended; the timer starts the next one unless the leg moved on."""
