"""Kafka ACLs as code: bindings declared next to the topics, applied idempotently."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest

from hub.core.topics import dead_letter_topic, parking_topic, replay_topic, retry_topic

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import timedelta

    from hub.core.handler import Service

log = structlog.get_logger(__name__)


class ResourceType(enum.IntEnum):
    """Kafka's resource type codes (org.apache.kafka.common.resource.ResourceType)."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class PatternType(enum.IntEnum):
    """Kafka's pattern type codes: a name taken as it is, or as a prefix."""

    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):
    """Kafka's ACL operation codes (org.apache.kafka.common.acl.AclOperation)."""

    READ = 3
    WRITE = 4
    DELETE = 6
    DESCRIBE = 8


ALLOW = 3
ANY_HOST = "*"


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    """One allow rule: `principal` may do `operation` on a resource."""

    principal: str
    resource_type: ResourceType
    resource_name: str
    operation: Operation
    pattern: PatternType = PatternType.LITERAL


def user(name: str) -> str:
    """The principal of a SASL user."""
    return f"User:{name}"


def reads(principal: str, topics: Iterable[str]) -> list[AclBinding]:
    """READ on each topic."""
    return [AclBinding(principal, ResourceType.TOPIC, t, Operation.READ) for t in topics]


def writes(principal: str, topics: Iterable[str]) -> list[AclBinding]:
    """WRITE on each topic."""
    return [AclBinding(principal, ResourceType.TOPIC, t, Operation.WRITE) for t in topics]


def joins(principal: str, group: str) -> AclBinding:
    """READ on the consumer group `group` (join it and commit its offsets)."""
    return AclBinding(principal, ResourceType.GROUP, group, Operation.READ)


def service_bindings(
    service: Service, outputs: Iterable[str], retry_delays: Iterable[timedelta]
) -> list[AclBinding]:
    """Exactly what one service's subscriber and publishers need, as the user named its group."""
    principal = user(service.group)
    delays = tuple(retry_delays)
    retries = [retry_topic(t, service.group, d) for t in service.all_inputs for d in delays]
    dead_letters = [dead_letter_topic(t, service.group) for t in service.all_inputs]
    return [
        *reads(principal, [*service.all_inputs, *retries, replay_topic(service.group)]),
        # Tables are read without a group, every partition: READ on the topic is all it takes.
        *reads(principal, [table.topic for table in service.tables]),
        # Its own retry and timer topics, its dead letters; replays exhausted go to parking.
        *writes(principal, [*retries, *service.timer_topics, *dead_letters]),
        *writes(principal, [parking_topic(service.group), *outputs]),
        joins(principal, service.group),
    ]


async def apply_acls(admin_config: Mapping[str, Any], bindings: Iterable[AclBinding]) -> int:
    """Create every binding (an existing one is left as it is); returns how many were sent."""
    unique = sorted(set(bindings))
    admin = AIOKafkaAdminClient(**admin_config)
    try:
        await admin.start()
        for binding in unique:
            request = CreateAclsRequest(
                binding.resource_type,
                binding.resource_name,
                binding.pattern,
                binding.principal,
                ANY_HOST,
                binding.operation,
                ALLOW,
            )
            # aiokafka has no public ACL call; its protocol class and request path are stable.
            response = await admin._send_request(request)  # noqa: SLF001
            for answer in response.to_object()["creation_responses"]:
                if answer["error_code"]:
                    raise RuntimeError(
                        f"the broker refused {binding}: error {answer['error_code']} "
                        f"{answer['error_message']}"
                    )
    finally:
        await admin.close()
    log.info("acls_applied", bindings=len(unique))
    return len(unique)
