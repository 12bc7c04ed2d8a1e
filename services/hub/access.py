"""Who may do what on the cluster: one SASL user per service, per partner, and for operations.

Derived from the same declarations as the topics, so a new service, output, courier or retry tier
gets its rights where it gets its topics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatch.partners import load_partners
from hub.bootstrap import declarations
from hub.core.acls import AclBinding, Operation, ResourceType, joins, reads, service_bindings, user
from hub.core.acls import writes as writes_to
from hub.core.topics import (
    AUDIT,
    CASE_STATUS,
    STOREFRONT_REQUESTS,
    center_events_topic,
    center_tickets_topic,
    courier_events_topic,
    courier_orders_topic,
    dead_letter_topic,
    parking_topic,
    parts_events_topic,
    parts_orders_topic,
    replay_topic,
)

if TYPE_CHECKING:
    from dispatch.partners import PartnerTable
    from hub.core.handler import Service
    from hub.core.settings import HubSettings

OPERATIONS_USER = "ops"
STOREFRONT_USER = "storefront"
LAG_READER_USER = "lag-reader"
"""The autoscaler's user (KEDA): it reads each group's lag on its declared inputs, nothing else."""


def partner_user(code: str) -> str:
    """The SASL user of a Kafka-native partner (courier, center, supplier); also its group."""
    return f"partner-{code}"


def partner_bindings(table: PartnerTable) -> list[AclBinding]:
    """Kafka-native partners: each reads its own order topic in its own group, writes its events.

    Couriers, repair centers and parts suppliers alike.
    """
    partners = [
        *((c.code, courier_orders_topic(c.code), courier_events_topic(c.code))
          for c in table.couriers if c.integration == "kafka"),
        *((c.code, center_tickets_topic(c.code), center_events_topic(c.code))
          for c in table.repair_centers if c.integration == "kafka"),
        *((s.code, parts_orders_topic(s.code), parts_events_topic(s.code))
          for s in table.parts_suppliers if s.integration == "kafka"),
    ]  # fmt: skip
    bindings: list[AclBinding] = []
    for code, orders, events in partners:
        principal = user(partner_user(code))
        bindings += [*reads(principal, [orders]), *writes_to(principal, [events])]
        bindings.append(joins(principal, partner_user(code)))
    return bindings


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


def lag_reader_bindings(services: list[Service]) -> list[AclBinding]:
    """DESCRIBE on each group and its declared inputs: committed and end offsets, no records."""
    principal = user(LAG_READER_USER)
    return [
        *(AclBinding(principal, ResourceType.GROUP, s.group, Operation.DESCRIBE) for s in services),
        *(
            AclBinding(principal, ResourceType.TOPIC, topic, Operation.DESCRIBE)
            for s in services
            for topic in s.inputs
        ),
    ]


def all_bindings(settings: HubSettings, table: PartnerTable | None = None) -> list[AclBinding]:
    """Every ACL: each group, the partners, the storefront, operations and the autoscaler."""
    table = table or load_partners()
    declared = declarations(settings, table)
    bindings: list[AclBinding] = []
    for declaration in declared:
        if declaration.consumes:
            bindings += service_bindings(
                declaration.service, declaration.outputs, settings.retry_delays
            )
        else:
            # Nothing to read, retry or replay: it may write what it produces and no more.
            bindings += writes_to(user(declaration.group), declaration.outputs)
    services = [declaration.service for declaration in declared if declaration.consumes]
    bindings += [*partner_bindings(table), *storefront_bindings(), *operations_bindings(services)]
    bindings += lag_reader_bindings(services)
    return sorted(set(bindings))
