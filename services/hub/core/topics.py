"""Topic names and declarations as code, applied idempotently to a cluster."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from hub.core.settings import parse_duration

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import timedelta

    from hub.core.settings import HubSettings

log = structlog.get_logger(__name__)

STOREFRONT_REQUESTS = "storefront.aftersales.requests"
CASES = "aftersales.cases"
CASE_STATUS = "aftersales.case-status"
AUDIT = "hub.ops.audit"
NOTIFICATION_REQUESTS = "notifications.requests"
NOTIFICATION_EVENTS = "notifications.events"
COURIER_OBSERVATIONS = "aftersales.courier-observations"
"""The tracker's facts about each courier, keyed by courier code (where its window is kept)."""
COURIER_SCORES = "aftersales.courier-scores"
"""Each courier's latest scorecard (compacted, key courier code); dispatch reads it whole."""
COMPACTED = frozenset({CASE_STATUS, COURIER_SCORES})
"""Topics of which only the latest value per key matters."""

DAY_MS = 24 * 3600 * 1000
# A record as large as an input topic accepts (1 MiB) must still fit with the hub's headers added.
HUB_RECORD_MAX_BYTES = 4 * 1024 * 1024


def delay_label(delay: timedelta) -> str:
    """`10s`, `1m`, `2h`: the delay as it appears in a retry topic's name."""
    seconds = delay.total_seconds()
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms"


def courier_orders_topic(courier: str) -> str:
    """Pickup orders for one courier."""
    return f"courier.{courier}.pickup-orders"


def courier_events_topic(courier: str) -> str:
    """Acceptance and tracking from one courier."""
    return f"courier.{courier}.events"


def center_tickets_topic(center: str) -> str:
    """Tickets and quote decisions for one repair center."""
    return f"repair.{center}.tickets"


def center_events_topic(center: str) -> str:
    """Reports of one repair center."""
    return f"repair.{center}.events"


def parts_orders_topic(supplier: str) -> str:
    """Reservation requests and cancellations for one parts supplier."""
    return f"parts.{supplier}.orders"


def parts_events_topic(supplier: str) -> str:
    """Reservations, shortages and refusals from one parts supplier."""
    return f"parts.{supplier}.events"


def retry_topic(topic: str, group: str, delay: timedelta) -> str:
    """The retry tier of `topic` for `group`, e.g. `aftersales.cases.dispatch.retry.30s`."""
    return f"{topic}.{group}.retry.{delay_label(delay)}"


def dead_letter_topic(topic: str, group: str) -> str:
    """Where `group` dead-letters what it read from `topic`."""
    return f"{topic}.{group}.dlq"


def timer_topic(group: str, delay: timedelta) -> str:
    """Where `group` schedules its timers of one delay, e.g. `dispatch.timer.2m`."""
    return f"{group}.timer.{delay_label(delay)}"


def replay_topic(group: str) -> str:
    """Where operators replay dead letters for `group` only."""
    return f"{group}.replay"


def parking_topic(group: str) -> str:
    """Where a replay sets aside dead letters of `group` replayed too often, instead of looping."""
    return f"{group}.parked"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as the hub wants it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Subscription:
    """The input topics of one consumer group; its retry, dead-letter, replay topics follow."""

    group: str
    topics: tuple[str, ...]


def declare(
    settings: HubSettings,
    subscriptions: Iterable[Subscription],
    extra_topics: Iterable[str] = (),
) -> list[TopicSpec]:
    """Every topic these subscriptions need, with partitions, replication and configs."""
    base = {
        "min.insync.replicas": str(settings.min_insync_replicas),
        "retention.ms": str(7 * DAY_MS),
    }
    carrying = {**base, "max.message.bytes": str(HUB_RECORD_MAX_BYTES)}
    long_lived = {**carrying, "retention.ms": str(30 * DAY_MS)}
    compacted = {**base, "cleanup.policy": "compact", "retention.ms": "-1"}

    def spec(name: str, configs: Mapping[str, str]) -> TopicSpec:
        return TopicSpec(name, settings.partitions, settings.replication_factor, configs)

    def plain(name: str) -> TopicSpec:
        # A case's status and a courier's scorecard: only the latest value of a key matters.
        return spec(name, compacted if name in COMPACTED else base)

    wanted = {name: plain(name) for name in extra_topics}
    wanted[AUDIT] = spec(AUDIT, {**base, "retention.ms": str(30 * DAY_MS)})
    for subscription in subscriptions:
        wanted[replay_topic(subscription.group)] = spec(replay_topic(subscription.group), carrying)
        parked = parking_topic(subscription.group)
        wanted[parked] = spec(parked, long_lived)
        timers = f"{subscription.group}.timer."
        for topic in subscription.topics:
            wanted.setdefault(topic, plain(topic))
            if topic.startswith(timers):
                # A timer waits on its topic until due: the usual retention must count from
                # then, or a timer longer than it (a week's wait for parts) is deleted unread.
                delay_ms = int(parse_duration(topic.removeprefix(timers)).total_seconds() * 1000)
                wanted[topic] = spec(topic, {**base, "retention.ms": str(delay_ms + 7 * DAY_MS)})
            for delay in settings.retry_delays:
                name = retry_topic(topic, subscription.group, delay)
                wanted[name] = spec(name, carrying)
            dlq = dead_letter_topic(topic, subscription.group)
            wanted[dlq] = spec(dlq, long_lived)
    return [wanted[name] for name in sorted(wanted)]


@dataclass(slots=True)
class ApplyReport:
    """What `apply_topics` did."""

    created: list[str] = field(default_factory=list)
    reconfigured: list[str] = field(default_factory=list)
    repartitioned: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _check(response: object, what: str) -> None:
    for topic, code, *rest in getattr(response, "topic_errors", ()):
        # 36 TOPIC_ALREADY_EXISTS: another applier won the race; that is the state we want.
        if code not in {0, 36}:
            message = rest[-1] if rest else ""
            raise RuntimeError(f"{what} {topic} failed: error {code} {message}")


async def _current_configs(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    current: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        described: list[Any] = getattr(response, "resources", [])
        for _code, _message, _type, name, entries in described:
            current[name] = {entry[0]: entry[1] for entry in entries}
    return current


async def apply_topics(
    bootstrap_servers: str,
    specs: Iterable[TopicSpec],
    security: Mapping[str, Any] | None = None,
    *,
    dry_run: bool = False,
) -> ApplyReport:
    """Create missing topics, align configs, add partitions; running it twice changes nothing.

    `security`: aiokafka's connection options (`kafka_security`: TLS, login). `dry_run` reads
    the cluster and reports what would change, changing nothing.
    """
    report = ApplyReport()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="hub-topics", **(security or {})
    )
    try:
        await admin.start()
        existing = {topic["topic"]: topic for topic in await admin.describe_topics()}
        specs = list(specs)
        missing = [spec for spec in specs if spec.name not in existing]
        if missing and not dry_run:
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        spec.partitions,
                        spec.replication_factor,
                        topic_configs=dict(spec.configs),
                    )
                    for spec in missing
                ],
                timeout_ms=30_000,
            )
            _check(response, "create")
        report.created = [spec.name for spec in missing]
        present = [spec for spec in specs if spec.name in existing]
        current = await _current_configs(admin, [spec.name for spec in present])
        for spec in present:
            have = current.get(spec.name, {})
            if any(have.get(key) != value for key, value in spec.configs.items()):
                resource = ConfigResource(ConfigResourceType.TOPIC, spec.name, dict(spec.configs))
                if not dry_run:
                    await admin.alter_configs([resource])
                report.reconfigured.append(spec.name)
            partitions = len(existing[spec.name]["partitions"])
            if partitions < spec.partitions:
                if not dry_run:
                    response = await admin.create_partitions(
                        {spec.name: NewPartitions(spec.partitions)}, timeout_ms=30_000
                    )
                    _check(response, "add partitions to")
                report.repartitioned.append(spec.name)
            elif partitions > spec.partitions:
                report.warnings.append(
                    f"{spec.name} has {partitions} partitions, more than the {spec.partitions} "
                    "declared; Kafka cannot remove partitions, so it stays as it is"
                )
            if spec.name not in report.reconfigured + report.repartitioned:
                report.unchanged.append(spec.name)
    finally:
        await admin.close()
    log.info(
        "topics_applied",
        created=len(report.created),
        reconfigured=len(report.reconfigured),
        repartitioned=len(report.repartitioned),
        unchanged=len(report.unchanged),
        warnings=report.warnings,
        dry_run=dry_run,
    )
    return report
