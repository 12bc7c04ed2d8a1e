from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from lab.harness import bootstrap, container, kafka
from lab.harness.certs import BrokerKeystore
from lab.harness.kafka import (
    HarnessError,
    LocalKafka,
    NodeSpec,
    free_ports,
    new_cluster_id,
    render_properties,
)
from lab.kafka_cli import kafka_app

if TYPE_CHECKING:
    from collections.abc import Iterator

CORE_JARS = [f"kafka_2.13-{kafka.KAFKA_VERSION}.jar", f"kafka-tools-{kafka.KAFKA_VERSION}.jar"]


def parse(properties: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in properties.splitlines())


def cluster(tmp_path: Path, nodes: int) -> list[NodeSpec]:
    return [
        NodeSpec(node_id=n, port=19091 + n, controller_port=19191 + n, directory=tmp_path / f"n{n}")
        for n in range(1, nodes + 1)
    ]


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("HUB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / f"kafka-{kafka.KAFKA_VERSION}"


@pytest.fixture
def fake_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: f"/usr/bin/{tool}")


def test_cluster_ids_are_kafka_shaped_and_never_look_like_an_option() -> None:
    ids = [new_cluster_id() for _ in range(2000)]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id) for cluster_id in ids)
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
    assert len(set(ids)) == len(ids)


def test_a_three_node_cluster_replicates_three_ways_with_min_isr_two(tmp_path: Path) -> None:
    nodes = cluster(tmp_path, 3)
    properties = parse(render_properties(nodes[1], nodes))
    assert properties["process.roles"] == "broker,controller"
    assert properties["node.id"] == "2"
    assert properties["controller.quorum.voters"] == (
        "1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194"
    )
    assert "controller.quorum.bootstrap.servers" not in properties
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:19193"
    assert properties["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19093"
    assert properties["default.replication.factor"] == "3"
    assert properties["min.insync.replicas"] == "2"
    assert properties["offsets.topic.replication.factor"] == "3"
    assert properties["transaction.state.log.replication.factor"] == "3"
    assert properties["transaction.state.log.min.isr"] == "2"
    assert properties["log.dirs"] == str(tmp_path / "n2" / "data")


def test_a_single_node_is_a_standalone_dynamic_quorum_replicating_once(tmp_path: Path) -> None:
    (node,) = cluster(tmp_path, 1)
    properties = parse(render_properties(node, [node]))
    assert properties["controller.quorum.bootstrap.servers"] == "127.0.0.1:19192"
    assert "controller.quorum.voters" not in properties
    assert properties["default.replication.factor"] == "1"
    assert properties["min.insync.replicas"] == "1"
    assert properties["offsets.topic.replication.factor"] == "1"
    assert properties["auto.create.topics.enable"] == "false"
    assert properties["group.initial.rebalance.delay.ms"] == "0"
    assert properties["num.partitions"] == "3"
    assert int(properties["offsets.topic.num.partitions"]) <= 10


def test_a_fixed_port_numbers_the_nodes_from_it(tmp_path: Path) -> None:
    local = LocalKafka(nodes=3, base_dir=tmp_path, port=19092)
    assert local.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    assert [node.controller_port for node in local.specs] == [19192, 19193, 19194]
    assert [node.directory for node in local.specs] == [tmp_path / f"node-{n}" for n in (1, 2, 3)]


def test_without_a_port_every_listener_gets_its_own_free_port(tmp_path: Path) -> None:
    local = LocalKafka(nodes=3, base_dir=tmp_path)
    ports = [port for node in local.specs for port in (node.port, node.controller_port)]
    assert len(set(ports)) == 6
    assert len(set(free_ports(20))) == 20


def test_a_tls_listener_is_ssl_or_sasl_ssl_beside_the_plain_one(tmp_path: Path) -> None:
    local = LocalKafka(nodes=2, base_dir=tmp_path, port=19092, tls=True)
    assert local.tls_bootstrap_servers == "127.0.0.1:19292,127.0.0.1:19293"
    assert LocalKafka.load(tmp_path) is None  # nothing saved yet
    local.save_state()
    loaded = LocalKafka.load(tmp_path)
    assert loaded is not None
    assert loaded.tls
    assert loaded.tls_bootstrap_servers == local.tls_bootstrap_servers
    keystore = BrokerKeystore(tmp_path / "broker.p12", tmp_path / "trust.p12", "pw")
    node = local.specs[0]
    plain = parse(render_properties(node, local.specs, keystore=keystore))
    assert plain["listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,SSL://127.0.0.1:19292,CONTROLLER://127.0.0.1:19192"
    )
    assert plain["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092,SSL://127.0.0.1:19292"
    assert plain["ssl.keystore.location"] == str(tmp_path / "broker.p12")
    assert plain["ssl.keystore.type"] == "PKCS12"
    assert plain["inter.broker.listener.name"] == "PLAINTEXT"  # nodes talk without TLS
    assert plain["ssl.client.auth"] == "none"
    mutual = parse(render_properties(node, local.specs, keystore=keystore, tls_client_auth=True))
    assert mutual["ssl.client.auth"] == "required"
    password = "x" * 8
    secured = parse(
        render_properties(node, local.specs, admin_password=password, keystore=keystore)
    )
    assert secured["advertised.listeners"] == (
        "SASL_PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19292"
    )
    assert "SASL_SSL:SASL_SSL" in secured["listener.security.protocol.map"]
    assert "ScramLoginModule" in secured["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    with pytest.raises(ValueError, match="no keystore"):
        render_properties(node, local.specs)
    with pytest.raises(HarnessError, match="no TLS listener"):
        _ = LocalKafka(nodes=1, base_dir=tmp_path / "plain").tls_bootstrap_servers


def test_a_cluster_needs_a_node(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one node"):
        LocalKafka(nodes=0, base_dir=tmp_path)


def test_state_survives_a_round_trip_and_a_broken_file_reads_as_none(tmp_path: Path) -> None:
    local = LocalKafka(nodes=3, base_dir=tmp_path, port=29092)
    local.specs[0].pid = 4242
    local.save_state()
    loaded = LocalKafka.load(tmp_path)
    assert loaded is not None
    assert loaded.cluster_id == local.cluster_id
    assert loaded.specs == local.specs
    assert loaded.bootstrap_servers == local.bootstrap_servers
    (tmp_path / "cluster.json").write_text("{not json")
    assert LocalKafka.load(tmp_path) is None
    assert LocalKafka.load(tmp_path / "nowhere") is None


def test_a_state_file_without_a_cluster_id_takes_it_from_the_formatted_data(
    tmp_path: Path,
) -> None:
    node = {"node_id": 1, "port": 19092, "controller_port": 19192, "pid": None}
    data = tmp_path / "node-1" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text(
        "version=1\ncluster.id=AbCdEfGhIjKlMnOpQrStUv\nnode.id=1\n"
    )
    state = {"nodes": [{**node, "directory": str(tmp_path / "node-1")}]}
    (tmp_path / "cluster.json").write_text(json.dumps(state))
    loaded = LocalKafka.load(tmp_path)
    assert loaded is not None
    assert loaded.cluster_id == "AbCdEfGhIjKlMnOpQrStUv"


def test_a_pid_that_is_not_the_nodes_jvm_does_not_count_as_alive(tmp_path: Path) -> None:
    local = LocalKafka(nodes=1, base_dir=tmp_path)
    local.specs[0].pid = os.getpid()  # alive, but pytest, not this node's broker
    assert local.alive() == {1: False}
    local.stop()  # and it is never signalled
    assert local.specs[0].pid is None


def test_missing_maven_says_what_to_install_and_the_alternatives(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "mvn" else "/usr/bin/java")
    with pytest.raises(HarnessError) as caught:
        kafka.ensure_kafka_jars()
    message = str(caught.value)
    assert "`mvn` is not installed" in message
    assert "apt-get install maven`" in message
    assert "KAFKA_BOOTSTRAP_SERVERS" in message
    assert "HUB_TEST_BROKER=container" in message
    assert not cache.joinpath("libs").exists()


def test_missing_java_and_maven_are_both_named(
    monkeypatch: pytest.MonkeyPatch,
    cache: Path,  # noqa: ARG001 - no jars in the cache
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _tool: None)
    with pytest.raises(HarnessError) as caught:
        kafka.ensure_kafka_jars()
    message = str(caught.value)
    assert "`java` and `mvn` are not installed" in message
    assert "apt-get install openjdk-17-jre-headless maven" in message


class FakeMaven:
    """Stands in for `mvn dependency:copy-dependencies`: records calls, writes fake jars."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, command: list[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(command)
        if self.fail:
            return subprocess.CompletedProcess(command, 1, "[ERROR] Could not resolve", "")
        output = Path(next(a for a in command if a.startswith("-DoutputDirectory=")).split("=")[1])
        output.mkdir(parents=True)
        for jar in [*CORE_JARS, "log4j-core-2.24.3.jar"]:
            (output / jar).write_text("jar")
        return subprocess.CompletedProcess(command, 0, "", "")


def test_jars_are_fetched_once_and_a_half_finished_copy_is_redone(
    monkeypatch: pytest.MonkeyPatch,
    cache: Path,
    fake_tools: None,  # noqa: ARG001
) -> None:
    maven = FakeMaven()
    monkeypatch.setattr(subprocess, "run", maven)
    # A copy that died half-way: jars, but no marker.
    (cache / "libs").mkdir(parents=True)
    (cache / "libs" / CORE_JARS[0]).write_text("half")

    libs = kafka.ensure_kafka_jars()
    assert libs == cache / "libs"
    assert len(maven.calls) == 1
    assert "dependency:copy-dependencies" in maven.calls[0]
    assert "-DincludeScope=runtime" in maven.calls[0]
    assert sorted(p.name for p in libs.iterdir()) == sorted([*CORE_JARS, "log4j-core-2.24.3.jar"])

    assert kafka.ensure_kafka_jars() == libs
    assert len(maven.calls) == 1  # the marker says the copy is complete

    (libs / "log4j-core-2.24.3.jar").unlink()  # a pruned cache is fetched again
    kafka.ensure_kafka_jars()
    assert len(maven.calls) == 2


def test_a_failed_download_is_reported_and_leaves_no_marker(
    monkeypatch: pytest.MonkeyPatch,
    cache: Path,
    fake_tools: None,  # noqa: ARG001
) -> None:
    monkeypatch.setattr(subprocess, "run", FakeMaven(fail=True))
    with pytest.raises(HarnessError, match="Could not resolve"):
        kafka.ensure_kafka_jars()
    assert not (cache / "libs.complete").exists()


def test_the_class_archive_can_be_switched_off(
    monkeypatch: pytest.MonkeyPatch,
    cache: Path,  # noqa: ARG001
) -> None:
    monkeypatch.setenv("HUB_KAFKA_CDS", "0")
    assert kafka.class_archive(sys.executable) is None


@pytest.mark.skipif(shutil.which("java") is None, reason="needs java")
def test_a_broken_class_archive_is_never_kept(tmp_path: Path) -> None:
    # A JVM that maps a truncated archive crashes: the harness must try it before keeping it.
    partial = tmp_path / "classes-0123456789ab.jsa.cafe.partial"
    partial.write_bytes(b"\0" * 4096)
    java = shutil.which("java")
    assert java is not None
    kafka.adopt_class_archive(partial, java, tmp_path)
    assert not partial.exists()
    assert not (tmp_path / "classes-0123456789ab.jsa").exists()


def test_configured_bootstrap_servers_win_and_nothing_is_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HUB_TEST_BROKER", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setattr(bootstrap, "LocalKafka", pytest.fail)
    monkeypatch.setattr(bootstrap, "BROKER_IN_USE", [])
    with bootstrap.kafka_for_tests(tmp_path) as servers:
        assert servers == "kafka-1:9092,kafka-2:9092"
    assert not any(tmp_path.iterdir())
    assert bootstrap.BROKER_IN_USE == [
        "the cluster at KAFKA_BOOTSTRAP_SERVERS=kafka-1:9092,kafka-2:9092"
    ]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, "harness"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}, "external"),
        ({"HUB_TEST_BROKER": "container"}, "container"),
        ({"HUB_TEST_BROKER": "harness", "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}, "harness"),
    ],
)
def test_the_broker_is_chosen_by_setting_never_by_what_answers(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str
) -> None:
    for name in ("HUB_TEST_BROKER", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert bootstrap.broker_choice() == expected


def test_an_external_broker_needs_its_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HUB_TEST_BROKER", "external")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with (
        pytest.raises(HarnessError, match="needs KAFKA_BOOTSTRAP_SERVERS"),
        bootstrap.kafka_for_tests(tmp_path),
    ):
        pass


def test_an_unknown_broker_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TEST_BROKER", "docker")
    with pytest.raises(ValidationError, match="harness"):
        bootstrap.broker_choice()


class FakeContainerKafka:
    started: list[FakeContainerKafka] = []  # noqa: RUF012 - a record of the test run

    def __init__(self, engine: container.Engine) -> None:
        self.docker_host = engine.docker_host
        self.stopped = False

    @property
    def bootstrap_servers(self) -> str:
        return "127.0.0.1:32768"

    def describe(self) -> str:
        return f"a container on {self.docker_host}"

    def __enter__(self) -> Self:
        FakeContainerKafka.started.append(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stopped = True


def test_the_container_path_runs_the_container_on_the_sessions_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    engines: list[Path] = []

    @contextlib.contextmanager
    def engine(base_dir: Path) -> Iterator[container.Engine]:
        engines.append(base_dir)
        yield container.Engine("unix:///run/test.sock")

    monkeypatch.setenv("HUB_TEST_BROKER", "container")
    monkeypatch.setattr(container, "container_engine", engine)
    monkeypatch.setattr(container, "ContainerKafka", FakeContainerKafka)
    monkeypatch.setattr(bootstrap, "BROKER_IN_USE", [])
    FakeContainerKafka.started.clear()
    with bootstrap.kafka_for_tests(tmp_path) as servers:
        assert servers == "127.0.0.1:32768"
    (started,) = FakeContainerKafka.started
    assert started.stopped
    assert engines == [tmp_path / "engine"]
    assert bootstrap.BROKER_IN_USE == ["a container on unix:///run/test.sock"]


def test_a_container_advertises_the_port_the_host_mapped() -> None:
    properties = container.container_properties("127.0.0.1", 32768, None)
    assert properties["listeners"] == (
        "PLAINTEXT://0.0.0.0:9092,BROKER://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093"
    )
    assert properties["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:32768,BROKER://127.0.0.1:9094"
    )
    assert properties["inter.broker.listener.name"] == "BROKER"
    # What the harness's node has: the container's broker behaves as the local one does.
    assert properties["auto.create.topics.enable"] == "false"
    assert properties["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert properties["log.dirs"] == Path("/var/lib/kafka/data")


def test_a_secured_container_authenticates_its_own_broker_listener_with_scram() -> None:
    properties = container.container_properties("127.0.0.1", 32768, "secret")
    assert properties["advertised.listeners"] == (
        "SASL_PLAINTEXT://127.0.0.1:32768,BROKER://127.0.0.1:9094"
    )
    assert properties["listener.security.protocol.map"] == (
        "SASL_PLAINTEXT:SASL_PLAINTEXT,BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    )
    scram = "listener.name.{}.scram-sha-512.sasl.jaas.config"
    assert properties[scram.format("broker")] == properties[scram.format("sasl_plaintext")]
    assert 'password="secret"' in str(properties[scram.format("broker")])
    arguments = container.format_arguments("abc", {"admin": "secret", "intake": "pw"})
    assert arguments == [
        "--cluster-id", "abc", "--standalone",
        "--add-scram", "SCRAM-SHA-512=[name=admin,password=secret]",
        "--add-scram", "SCRAM-SHA-512=[name=intake,password=pw]",
    ]  # fmt: skip


def test_status_without_a_cluster_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(kafka_app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "running": False,
        "healthy": False,
        "bootstrap_servers": None,
        "tls_bootstrap_servers": None,
        "ca_file": None,
        "cluster_id": None,
        "nodes": [],
    }


def test_up_refuses_a_node_count_other_than_one_or_three(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(kafka_app, ["up", "--nodes", "2"])
    assert result.exit_code == 2
    assert not (tmp_path / ".hub" / "kafka").exists()


def test_the_makefile_builds_the_image_of_the_harness_kafka_version() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert f"KAFKA_VERSION := {kafka.KAFKA_VERSION}\n" in makefile
    assert "KAFKA_IMAGE := localhost/aftersales-hub-kafka:$(KAFKA_VERSION)" in makefile
    assert container.KAFKA_IMAGE.endswith(f"/aftersales-hub-kafka:{kafka.KAFKA_VERSION}")
