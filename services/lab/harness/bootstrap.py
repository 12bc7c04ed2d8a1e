"""Which Kafka the tests use: HUB_TEST_BROKER picks the harness, a container or a running one."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal, Protocol

import structlog

from hub.core.settings import HarnessSettings
from lab.harness.kafka import KAFKA_VERSION, HarnessError, LocalKafka

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

log = structlog.get_logger(__name__)

BrokerChoice = Literal["harness", "container", "external"]

BROKER_IN_USE: list[str] = []
"""What `kafka_for_tests` used, for the test summary (a session has at most one)."""
ENGINE_RUNS_CHECKED: list[str] = []
"""Engine contexts closed with none of their containers left behind (label aftersales-hub.run)."""


def session_notes() -> list[str]:
    """Lines for the test summary beyond the broker: what was checked about containers."""
    if not ENGINE_RUNS_CHECKED:
        return []
    count = len(ENGINE_RUNS_CHECKED)
    return [f"no container left behind: {count} engine context(s) checked by label on closing"]


class Broker(Protocol):
    """A running broker the tests reach at `bootstrap_servers`."""

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` list for clients."""
        ...


def broker_choice(settings: HarnessSettings | None = None) -> BrokerChoice:
    """HUB_TEST_BROKER; unset: `external` when KAFKA_BOOTSTRAP_SERVERS is set, else `harness`."""
    settings = settings or HarnessSettings()
    if settings.test_broker is not None:
        return settings.test_broker
    return "external" if settings.kafka_bootstrap_servers else "harness"


@contextmanager
def kafka_for_tests(base_dir: Path) -> Iterator[str]:
    """Yield the bootstrap servers of a real broker for a whole test session.

    `external`: KAFKA_BOOTSTRAP_SERVERS. `container`: one node in a container of the image
    `make kafka-image` builds. `harness`: one local node (java and Maven jars) under `base_dir`.
    """
    settings = HarnessSettings()
    choice = broker_choice(settings)
    if choice == "external":
        configured = settings.kafka_bootstrap_servers
        if not configured:
            raise HarnessError("HUB_TEST_BROKER=external needs KAFKA_BOOTSTRAP_SERVERS=host:port")
        log.info("kafka_for_tests", source="KAFKA_BOOTSTRAP_SERVERS", bootstrap=configured)
        BROKER_IN_USE.append(f"the cluster at KAFKA_BOOTSTRAP_SERVERS={configured}")
        yield configured
        return
    if choice == "container":
        # Imported here: only the container path needs testcontainers and the Docker SDK.
        from lab.harness.container import ContainerKafka, container_engine  # noqa: PLC0415

        with container_engine(base_dir / "engine") as engine, ContainerKafka(engine) as kafka:
            log.info("kafka_for_tests", source="container", bootstrap=kafka.bootstrap_servers)
            BROKER_IN_USE.append(kafka.describe())
            yield kafka.bootstrap_servers
        return
    with LocalKafka(nodes=1, base_dir=base_dir) as local:
        log.info("kafka_for_tests", source="local harness", bootstrap=local.bootstrap_servers)
        BROKER_IN_USE.append(
            f"a real Apache Kafka {KAFKA_VERSION} broker (KRaft, local harness) at "
            f"{local.bootstrap_servers}, started in {local.start_seconds}s"
        )
        yield local.bootstrap_servers


@contextmanager
def secured_kafka_for_tests(base_dir: Path, scram_users: Mapping[str, str]) -> Iterator[Broker]:
    """A broker of its own with SASL/SCRAM users and ACLs: in a container on that path, else local.

    A running cluster (`external`) cannot be given users of our choosing: the harness starts one.
    """
    if broker_choice() == "container":
        from lab.harness.container import ContainerKafka, container_engine  # noqa: PLC0415

        with (
            container_engine(base_dir / "engine") as engine,
            ContainerKafka(engine, scram_users=scram_users) as kafka,
        ):
            yield kafka
        return
    with LocalKafka(base_dir=base_dir, scram_users=scram_users) as local:
        yield local
