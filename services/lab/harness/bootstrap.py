"""Which Kafka the tests use: KAFKA_BOOTSTRAP_SERVERS, else testcontainers, else the harness."""

from __future__ import annotations

import shutil
import subprocess
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog

from hub.core.settings import HarnessSettings
from lab.harness.kafka import KAFKA_VERSION, LocalKafka

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

log = structlog.get_logger(__name__)

DOCKER_PROBE_TIMEOUT_S = 5.0
# Close to the harness's broker: no auto-created topics, no rebalance delay, 3 partitions.
CONTAINER_SETTINGS = {
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_NUM_PARTITIONS": "3",
    "KAFKA_MESSAGE_MAX_BYTES": str(4 * 1024 * 1024 + 128 * 1024),
}

BROKER_IN_USE: list[str] = []
"""What `kafka_for_tests` used, for the test summary (a session has at most one)."""


def docker_engine_available(timeout_s: float = DOCKER_PROBE_TIMEOUT_S) -> bool:
    """Whether a Docker engine answers `docker info` (a client without an engine is not enough)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(  # noqa: S603 - fixed command
            [docker, "info"], capture_output=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@contextmanager
def kafka_for_tests(base_dir: Path) -> Iterator[str]:
    """Yield the bootstrap servers of a real broker for a whole test session.

    KAFKA_BOOTSTRAP_SERVERS when set; else a testcontainers Kafka where a Docker engine
    answers; else a single local node of the harness (java and Maven jars) under `base_dir`.
    """
    configured = HarnessSettings().kafka_bootstrap_servers
    if configured:
        log.info("kafka_for_tests", source="KAFKA_BOOTSTRAP_SERVERS", bootstrap=configured)
        BROKER_IN_USE.append(f"the cluster at KAFKA_BOOTSTRAP_SERVERS={configured}")
        yield configured
        return
    if docker_engine_available():
        # Imported here: only a machine with Docker needs testcontainers to load.
        from testcontainers.community.kafka import KafkaContainer  # noqa: PLC0415

        container = KafkaContainer().with_kraft()
        for name, value in CONTAINER_SETTINGS.items():
            container.with_env(name, value)
        with container:
            bootstrap = str(container.get_bootstrap_server())
            log.info("kafka_for_tests", source="testcontainers", bootstrap=bootstrap)
            BROKER_IN_USE.append(f"a testcontainers Kafka ({container.image}) at {bootstrap}")
            yield bootstrap
        return
    with LocalKafka(nodes=1, base_dir=base_dir) as kafka:
        log.info("kafka_for_tests", source="local harness", bootstrap=kafka.bootstrap_servers)
        BROKER_IN_USE.append(
            f"a real Apache Kafka {KAFKA_VERSION} broker (KRaft, local harness) at "
            f"{kafka.bootstrap_servers}, started in {kafka.start_seconds}s"
        )
        yield kafka.bootstrap_servers
