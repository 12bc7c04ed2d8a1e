"""The broker fixture's container path: what it advertises; it leaves no container behind."""

from __future__ import annotations

import socket
import subprocess
from typing import TYPE_CHECKING

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from lab.harness.bootstrap import broker_choice
from lab.harness.kafka import KAFKA_VERSION, HarnessError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from lab.harness.container import Engine

pytestmark = pytest.mark.integration

if broker_choice() != "container":
    pytest.skip(
        "checks the container path: HUB_TEST_BROKER=container (make test-containers)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine of this module's own (the session broker's is not shared)."""
    from lab.harness.container import container_engine  # noqa: PLC0415 - container path only

    with container_engine(tmp_path_factory.mktemp("engine")) as started:
        yield started


async def test_the_broker_in_the_container_advertises_the_address_clients_used(
    kafka_bootstrap: str,
) -> None:
    # Were the container's own port advertised, every client would be sent to 9092 and fail.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    brokers = [f"{broker['host']}:{broker['port']}" for broker in cluster["brokers"]]
    assert brokers == [kafka_bootstrap]
    assert not kafka_bootstrap.endswith(":9092")


def test_the_image_runs_the_harness_kafka_version(engine: Engine) -> None:
    from lab.harness.container import KAFKA_IMAGE, docker_client  # noqa: PLC0415

    client = docker_client(engine.docker_host)
    try:
        image = client.client.images.get(KAFKA_IMAGE)
    finally:
        client.client.close()
    assert image.labels["org.opencontainers.image.version"] == KAFKA_VERSION


def test_a_missing_image_says_how_to_build_it_and_starts_nothing(engine: Engine) -> None:
    from lab.harness.container import ContainerKafka, containers_of  # noqa: PLC0415

    with (
        pytest.raises(HarnessError, match="build it with `make kafka-image`"),
        ContainerKafka(engine, image="localhost/aftersales-hub-kafka:no-such-tag"),
    ):
        pass
    assert containers_of(engine) == []


def test_a_broker_that_cannot_start_is_removed_and_its_log_told(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.harness import container  # noqa: PLC0415

    def broken(*_arguments: object) -> dict[str, object]:
        return {"process.roles": "nonsense", "node.id": 1}

    monkeypatch.setattr(container, "container_properties", broken)
    kafka = container.ContainerKafka(engine)
    with pytest.raises(HarnessError, match="exited") as caught:
        kafka.start(timeout=60)
    assert "nonsense" in str(caught.value)  # Kafka's own complaint, from the container's log
    assert kafka.container_id is not None
    assert container.containers_of(engine) == []


def test_a_container_left_behind_fails_the_run_and_is_removed(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415

    from lab.harness import container  # noqa: PLC0415

    leaked_ids = []

    def leak() -> None:
        with container.container_engine(tmp_path_factory.mktemp("leaky")) as engine:
            # Started and forgotten, as a bug would: its entrypoint waits for a configuration.
            leaked = DockerContainer(
                container.KAFKA_IMAGE,
                docker_client_kw={"environment": {"DOCKER_HOST": engine.docker_host}},
            ).with_kwargs(labels=engine.labels)
            leaked.start()
            leaked_ids.append(leaked.get_wrapped_container().id)

    with pytest.raises(HarnessError, match="containers left behind") as caught:
        leak()
    assert leaked_ids
    assert leaked_ids[0] in str(caught.value)
    with container.container_engine(tmp_path_factory.mktemp("check")) as engine:
        client = container.docker_client(engine.docker_host)
        try:
            assert not client.client.containers.list(all=True, filters={"id": leaked_ids[0]})
        finally:
            client.client.close()


def test_a_container_whose_owner_was_killed_is_removed_by_the_next_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415

    from lab.harness import container  # noqa: PLC0415

    gone = subprocess.Popen(["true"])  # noqa: S607 - its pid names a process that is gone
    gone.wait()
    labels = {
        container.LABEL: "kafka",
        container.RUN_LABEL: "killed-run",
        container.OWNER_LABEL: f"{socket.gethostname()}:{gone.pid}",
    }
    with container.container_engine(tmp_path_factory.mktemp("killed")) as engine:
        orphan = DockerContainer(
            container.KAFKA_IMAGE,
            docker_client_kw={"environment": {"DOCKER_HOST": engine.docker_host}},
        ).with_kwargs(labels=labels)
        orphan.start()
        orphan_id = orphan.get_wrapped_container().id
    with container.container_engine(tmp_path_factory.mktemp("next")) as engine:
        client = container.docker_client(engine.docker_host)
        try:
            left = client.client.containers.list(all=True, filters={"id": orphan_id})
            for found in left:
                found.remove(force=True)  # only if the engine did not: no test leaves one
        finally:
            client.client.close()
    assert not left
