"""Which Kafka the tests use: KAFKA_BOOTSTRAP_SERVERS, else testcontainers, else the harness."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog

from hub.harness.kafka import KAFKA_VERSION, LocalKafka

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

log = structlog.get_logger(__name__)


def docker_engine_available() -> bool:
    """Whether a Docker engine answers (the client alone is not enough)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(  # noqa: S603 - fixed command
            [docker, "info"], capture_output=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


BROKER_IN_USE: list[str] = []
"""What `kafka_for_tests` started, for the test summary (a session has at most one)."""


@contextmanager
def kafka_for_tests(base_dir: Path) -> Iterator[str]:
    """Yield bootstrap servers of a real broker for a whole test session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        log.info("kafka_for_tests", source="KAFKA_BOOTSTRAP_SERVERS", bootstrap=configured)
        BROKER_IN_USE.append(f"the cluster at KAFKA_BOOTSTRAP_SERVERS={configured}")
        yield configured
        return
    if docker_engine_available():
        from testcontainers.kafka import KafkaContainer  # noqa: PLC0415 - only where Docker runs

        with KafkaContainer().with_kraft() as container:
            bootstrap = container.get_bootstrap_server()
            log.info("kafka_for_tests", source="testcontainers", bootstrap=bootstrap)
            BROKER_IN_USE.append(f"a testcontainers Kafka at {bootstrap}")
            yield bootstrap
        return
    with LocalKafka(base_dir=base_dir, nodes=1) as kafka:
        log.info("kafka_for_tests", source="local harness", bootstrap=kafka.bootstrap_servers)
        BROKER_IN_USE.append(
            f"a real Apache Kafka {KAFKA_VERSION} broker (KRaft, local harness) at "
            f"{kafka.bootstrap_servers}"
        )
        yield kafka.bootstrap_servers
