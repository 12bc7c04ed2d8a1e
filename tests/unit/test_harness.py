import re
import shutil
from pathlib import Path

import pytest

from hub.harness import kafka
from hub.harness.kafka import HarnessError, NodeSpec, new_cluster_id, render_properties


def test_cluster_ids_are_kafka_shaped_and_never_look_like_an_option() -> None:
    ids = [new_cluster_id() for _ in range(2000)]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id) for cluster_id in ids)
    assert not any(cluster_id.startswith("-") for cluster_id in ids)


def test_a_three_node_cluster_replicates_three_ways_with_min_isr_two(tmp_path: Path) -> None:
    node = NodeSpec(node_id=2, port=19093, controller_port=19193, directory=tmp_path)
    properties = dict(
        line.split("=", 1)
        for line in render_properties(node, "1@a:1,2@b:2,3@c:3", nodes=3).splitlines()
    )
    assert properties["default.replication.factor"] == "3"
    assert properties["min.insync.replicas"] == "2"
    assert properties["offsets.topic.replication.factor"] == "3"
    assert properties["controller.quorum.voters"] == "1@a:1,2@b:2,3@c:3"
    assert properties["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19093"
    assert properties["auto.create.topics.enable"] == "false"


def test_missing_java_or_maven_says_what_to_install_and_the_alternatives(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HUB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda _tool: None)
    with pytest.raises(HarnessError) as caught:
        kafka.ensure_kafka_jars()
    message = str(caught.value)
    assert "`mvn` is not installed" in message
    assert "apt-get install maven" in message
    assert "KAFKA_BOOTSTRAP_SERVERS" in message
    assert "Docker" in message
