"""A 3-node KRaft cluster: replication 3, min ISR 2, no acknowledged write lost with a node down."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kafka_io import settle_and_read
from typer.testing import CliRunner

from lab.harness.kafka import LocalKafka
from lab.kafka_cli import kafka_app

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

TOPIC = "cases.replicated"
KEYS = [f"case-{n}".encode() for n in range(6)]


async def describe(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The partitions of `topic`: leader, replicas and in-sync replicas of each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions: list[dict[str, Any]] = described["partitions"]
    return sorted(partitions, key=lambda partition: int(partition["partition"]))


async def wait_for_partitions(
    bootstrap: str,
    condition: Callable[[list[dict[str, Any]]], bool],
    what: str,
    timeout_s: float = 60.0,
) -> list[dict[str, Any]]:
    """Poll the topic's partitions until `condition` holds; fail with the last state if not."""
    partitions: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                partitions = await describe(bootstrap, TOPIC)
                if condition(partitions):
                    return partitions
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"not {what} within {timeout_s}s: {partitions}")


async def produce(producer: AIOKafkaProducer, values: list[bytes]) -> None:
    """Send every value (keys round-robin over KEYS) and wait until each is acknowledged."""
    async with asyncio.timeout(60):  # the producer retries on its own; this bounds it
        sent = [
            await producer.send(TOPIC, value, key=KEYS[n % len(KEYS)])
            for n, value in enumerate(values)
        ]
        await asyncio.gather(*sent)


async def test_a_replicated_topic_takes_acks_all_writes_with_one_node_down(
    tmp_path: Path,
) -> None:
    kafka = LocalKafka(nodes=3, base_dir=tmp_path / "cluster")
    await asyncio.to_thread(kafka.start)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(TOPIC, 3, 3, topic_configs={"min.insync.replicas": "2"})]
            )
        finally:
            await admin.close()
        partitions = await wait_for_partitions(
            kafka.bootstrap_servers,
            lambda parts: len(parts) == 3 and all(len(p["isr"]) == 3 for p in parts),
            "fully replicated",
        )
        assert all(sorted(p["replicas"]) == [1, 2, 3] for p in partitions)

        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=15000,
            retry_backoff_ms=200,
        )
        await producer.start()
        try:
            before = [f"before-{n}".encode() for n in range(30)]
            await produce(producer, before)

            # Stop the node that leads partition 0, so at least one leader has to move.
            victim = int(partitions[0]["leader"])
            await asyncio.to_thread(kafka.stop_node, victim)
            assert kafka.alive() == {n: n != victim for n in (1, 2, 3)}
            survivors = ",".join(
                f"127.0.0.1:{node.port}" for node in kafka.specs if node.node_id != victim
            )
            await wait_for_partitions(
                survivors,
                lambda parts: (
                    all(p["leader"] not in {victim, -1} for p in parts)
                    and all(victim not in p["isr"] and len(p["isr"]) == 2 for p in parts)
                ),
                f"led and in sync without node {victim}",
            )
            # The same producer carries on: it learns the new leaders from its own retries.
            after = [f"after-{n}".encode() for n in range(30)]
            await produce(producer, after)
        finally:
            await producer.stop()

        records = await settle_and_read(survivors, TOPIC, quiet_s=2.0)
        values = [record.value for record in records]
        assert len(values) == 60, values
        assert sorted(v for v in values if v is not None) == sorted(before + after)
        by_key: defaultdict[bytes | None, list[bytes | None]] = defaultdict(list)
        for record in sorted(records, key=lambda r: (r.partition, r.offset)):
            by_key[record.key].append(record.value)
        sent = before + after
        for index, key in enumerate(KEYS):
            assert by_key[key] == sent[index :: len(KEYS)], key  # per-key order kept

        # The node comes back on its old data and catches up to a full in-sync set.
        await asyncio.to_thread(kafka.start_node, victim)
        assert all(kafka.alive().values())
        await wait_for_partitions(
            kafka.bootstrap_servers,
            lambda parts: all(len(p["isr"]) == 3 for p in parts),
            f"back in sync with node {victim}",
        )
    finally:
        await asyncio.to_thread(kafka.stop)
    assert not any(kafka.alive().values())


def free_base_port() -> int:
    """A port p with p and p+100 free, for `lab kafka up --port p` (node 1 and its controller)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 100 < 65536:
            with socket.socket() as other:
                try:
                    other.bind(("127.0.0.1", port + 100))
                except OSError:
                    continue
            return port
    pytest.fail("no free pair of ports")


def test_the_cli_cluster_is_reused_and_removed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    port = free_base_port()
    try:
        first = runner.invoke(kafka_app, ["up", "--port", str(port)])
        assert first.exit_code == 0, first.output
        assert first.stdout.strip() == f"127.0.0.1:{port}"

        again = runner.invoke(kafka_app, ["up"])
        assert again.exit_code == 0, again.output
        assert again.stdout.strip() == f"127.0.0.1:{port}"
        assert "already running" in again.stderr

        status = json.loads(runner.invoke(kafka_app, ["status", "--json"]).stdout)
        assert status["running"]
        assert status["healthy"]
        assert status["bootstrap_servers"] == f"127.0.0.1:{port}"
        (node,) = status["nodes"]
        assert node["alive"]
        assert node["pid"] > 0

        other_shape = runner.invoke(kafka_app, ["up", "--nodes", "3"])
        assert other_shape.exit_code == 1
        assert "python -m lab kafka down" in other_shape.stderr
    finally:
        down = runner.invoke(kafka_app, ["down"])
    assert down.exit_code == 0, down.output
    assert not (tmp_path / ".hub" / "kafka").exists()
    status = json.loads(runner.invoke(kafka_app, ["status", "--json"]).stdout)
    assert not status["running"]
