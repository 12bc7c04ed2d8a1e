"""The one place that knows every service: used by the CLI to run services and declare topics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatch.partners import load_partners
from dispatch.service import build_service as build_dispatch
from hub.core.topics import (
    NOTIFICATION_EVENTS,
    NOTIFICATION_REQUESTS,
    Subscription,
    center_events_topic,
    center_tickets_topic,
    courier_events_topic,
    courier_orders_topic,
    declare,
)
from intake.service import build_service as build_intake
from notify.service import build_service as build_notify
from repair.service import build_service as build_repair
from tracker.service import build_service as build_tracker

if TYPE_CHECKING:
    from collections.abc import Callable

    from dispatch.partners import PartnerTable
    from hub.core.handler import Service
    from hub.core.settings import HubSettings
    from hub.core.topics import TopicSpec
    from tracker.sla import SlaTable

SERVICES: dict[str, Callable[[HubSettings], Service]] = {
    "intake": build_intake,
    "dispatch": build_dispatch,
    "repair": build_repair,
    "notify": build_notify,
    "tracker": build_tracker,
}
EDGE_GROUPS = {"notify-sender": (NOTIFICATION_REQUESTS,)}
"""Groups whose handlers need I/O clients (built where those clients are): their topics."""


def all_topics(
    settings: HubSettings, table: PartnerTable | None = None, sla: SlaTable | None = None
) -> list[TopicSpec]:
    """Every topic of every service and gateway, and every courier's order and event topics."""
    table = table or load_partners()
    services = [
        build_intake(settings),
        build_dispatch(settings, table),
        build_repair(settings, table),
        build_notify(settings),
        build_tracker(settings, sla),
    ]
    subscriptions = [Subscription(s.group, s.all_inputs) for s in services]
    subscriptions += [Subscription(group, topics) for group, topics in EDGE_GROUPS.items()]
    subscriptions += [
        Subscription(f"gateway-center-{center.code}", (center_tickets_topic(center.code),))
        for center in table.repair_centers
        if center.integration == "http"
    ]
    subscriptions += [
        Subscription(f"gateway-{courier.code}", (courier_orders_topic(courier.code),))
        for courier in table.couriers
        if courier.integration == "http"
    ]
    partner_topics = [
        topic
        for courier in table.couriers
        for topic in (courier_orders_topic(courier.code), courier_events_topic(courier.code))
    ]
    partner_topics += [
        topic
        for center in table.repair_centers
        for topic in (center_tickets_topic(center.code), center_events_topic(center.code))
    ]
    partner_topics.append(NOTIFICATION_EVENTS)
    return declare(settings, subscriptions, partner_topics)
