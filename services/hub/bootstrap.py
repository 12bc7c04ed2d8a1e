"""The one place that knows every service: used by the CLI to run services and declare topics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatch.partners import load_partners
from dispatch.service import build_service as build_dispatch
from hub.core.topics import Subscription, courier_events_topic, courier_orders_topic, declare
from intake.service import build_service as build_intake

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.handler import Service
    from hub.core.settings import HubSettings
    from hub.core.topics import TopicSpec

SERVICES: dict[str, Callable[[HubSettings], Service]] = {
    "intake": build_intake,
    "dispatch": build_dispatch,
}


def all_topics(settings: HubSettings) -> list[TopicSpec]:
    """Every topic of every service, and every courier's order and event topics."""
    services = [build(settings) for build in SERVICES.values()]
    couriers = [courier.code for courier in load_partners().couriers]
    partner_topics = [
        topic
        for code in couriers
        for topic in (courier_orders_topic(code), courier_events_topic(code))
    ]
    return declare(
        settings, [Subscription(s.group, s.all_inputs) for s in services], partner_topics
    )
