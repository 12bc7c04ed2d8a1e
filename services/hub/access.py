"""Who may do what on the cluster: one SASL user per service, per partner, and for operations.

Declared from the same services and partner table as the topics, so a new service, courier or
retry tier gets its rights where it gets its topics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatch.partners import load_partners
from hub.bootstrap import EDGE_GROUPS, SERVICES
from hub.core.acls import AclBinding, Operation, ResourceType, joins, reads, service_bindings, user
from hub.core.acls import writes as writes_to
from hub.core.handler import Service
from hub.core.topics import (
    AUDIT,
    CASE_STATUS,
    CASES,
    NOTIFICATION_EVENTS,
    NOTIFICATION_REQUESTS,
    STOREFRONT_REQUESTS,
    center_events_topic,
    center_tickets_topic,
    courier_events_topic,
    courier_orders_topic,
    dead_letter_topic,
    parking_topic,
    replay_topic,
)

if TYPE_CHECKING:
    from dispatch.partners import PartnerTable
    from hub.core.settings import HubSettings

OPERATIONS_USER = "ops"
STOREFRONT_USER = "storefront"


def partner_user(code: str) -> str:
    """The SASL user of a Kafka-native partner (courier or repair center); also its group."""
    return f"partner-{code}"


def service_outputs(group: str, table: PartnerTable) -> tuple[str, ...]:
    """The topics a group publishes to (besides its own retry, timer and dead-letter topics)."""
    outputs: dict[str, tuple[str, ...]] = {
        "intake": (CASES,),
        "dispatch": (CASES, *(courier_orders_topic(c.code) for c in table.couriers)),
        "repair": (CASES, *(center_tickets_topic(c.code) for c in table.repair_centers)),
        "notify": (NOTIFICATION_REQUESTS,),
        "notify-sender": (NOTIFICATION_EVENTS,),
        "tracker": (CASE_STATUS, CASES, NOTIFICATION_REQUESTS),
    }
    return outputs.get(group, ())


def partner_bindings(table: PartnerTable) -> list[AclBinding]:
    """Kafka-native partners: each reads its own order topic in its own group, writes its events."""
    bindings: list[AclBinding] = []
    for code, orders, events, _ in _partners(table, "kafka"):
        principal = user(partner_user(code))
        bindings += [*reads(principal, [orders]), *writes_to(principal, [events])]
        bindings.append(joins(principal, partner_user(code)))
    return bindings


def _partners(table: PartnerTable, integration: str) -> list[tuple[str, str, str, str]]:
    """(code, order or ticket topic, events topic, gateway group) of each partner so integrated."""
    couriers = [
        (c.code, courier_orders_topic(c.code), courier_events_topic(c.code), f"gateway-{c.code}")
        for c in table.couriers
        if c.integration == integration
    ]
    centers = [
        (c.code, center_tickets_topic(c.code), center_events_topic(c.code),
         f"gateway-center-{c.code}")
        for c in table.repair_centers
        if c.integration == integration
    ]  # fmt: skip
    return couriers + centers


def _gateways(table: PartnerTable) -> list[tuple[Service, str]]:
    """The groups that call HTTP partners on the hub's side: each with the topic it writes."""
    return [
        (Service(group=group, inputs=(orders,), handlers={}, source=""), events)
        for _, orders, events, group in _partners(table, "http")
    ]


def storefront_bindings() -> list[AclBinding]:
    """The storefront publishes after-sales requests and reads the case status it shows."""
    principal = user(STOREFRONT_USER)
    return [
        *writes_to(principal, [STOREFRONT_REQUESTS]),
        *reads(principal, [CASE_STATUS]),
        joins(principal, STOREFRONT_USER),
    ]


def operations_bindings(services: list[Service]) -> list[AclBinding]:
    """Operations read dead letters, replay them to one group, purge them, and audit it all."""
    principal = user(OPERATIONS_USER)
    dead_letters = [dead_letter_topic(t, s.group) for s in services for t in s.all_inputs]
    return [
        *reads(principal, [*dead_letters, AUDIT, *(parking_topic(s.group) for s in services)]),
        *writes_to(principal, [AUDIT, *(replay_topic(s.group) for s in services)]),
        *writes_to(principal, [parking_topic(s.group) for s in services]),
        *(AclBinding(principal, ResourceType.TOPIC, t, Operation.DELETE) for t in dead_letters),
    ]


def all_bindings(settings: HubSettings, table: PartnerTable | None = None) -> list[AclBinding]:
    """Every ACL of the hub: services, edge groups, partners, operations."""
    table = table or load_partners()
    services = [build(settings) for build in SERVICES.values()]
    services += [
        Service(group=group, inputs=topics, handlers={}, source="")
        for group, topics in EDGE_GROUPS.items()
    ]
    bindings: list[AclBinding] = []
    for service in services:
        outputs = service_outputs(service.group, table)
        bindings += service_bindings(service, outputs, settings.retry_delays)
    for gateway, events in _gateways(table):
        bindings += service_bindings(gateway, (events,), settings.retry_delays)
    services += [gateway for gateway, _ in _gateways(table)]
    bindings += [*partner_bindings(table), *storefront_bindings(), *operations_bindings(services)]
    return sorted(set(bindings))
