"""`hub kafka up|down|status`: a local broker or 3-node cluster that outlives the command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer

from hub.harness.kafka import HarnessError, LocalKafka

STATE_DIR = Path(".hub") / "kafka"
DEFAULT_PORT = 19092

kafka_app = typer.Typer(help="A local Apache Kafka broker (KRaft) from Maven jars.")


def _running() -> LocalKafka | None:
    kafka = LocalKafka.load(STATE_DIR)
    if kafka is None or not any(kafka.alive().values()):
        return None
    return kafka


@kafka_app.command("up")
def up(
    nodes: Annotated[int, typer.Option(help="1, or 3 for replication 3 / min ISR 2.")] = 1,
    port: Annotated[int, typer.Option(help="First client port; node n listens on port+n-1.")] = (
        DEFAULT_PORT
    ),
) -> None:
    """Start the local cluster (or report the one already running)."""
    if nodes not in {1, 3}:
        raise typer.BadParameter("nodes must be 1 or 3")
    running = _running()
    if running is not None:
        print(f"already running: {running.bootstrap_servers}")
        return
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    kafka = LocalKafka(base_dir=STATE_DIR.resolve(), nodes=nodes, port=port)
    try:
        kafka.start()
    except HarnessError as error:
        kafka.stop()
        print(f"error: {error}")
        raise typer.Exit(1) from error
    print(kafka.bootstrap_servers)


@kafka_app.command("down")
def down() -> None:
    """Stop the local cluster and delete its data."""
    kafka = LocalKafka.load(STATE_DIR)
    if kafka is None:
        print("not running")
        return
    kafka.stop()
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    print("stopped")


@kafka_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Show nodes, their processes and the bootstrap servers."""
    kafka = LocalKafka.load(STATE_DIR)
    alive = kafka.alive() if kafka else {}
    nodes = [
        {"node_id": node.node_id, "port": node.port, "pid": node.pid,
         "alive": alive[node.node_id], "directory": str(node.directory)}
        for node in (kafka.specs if kafka else [])
    ]  # fmt: skip
    bootstrap = kafka.bootstrap_servers if kafka else None
    report = {"running": any(alive.values()), "bootstrap_servers": bootstrap, "nodes": nodes}
    if as_json:
        print(json.dumps(report, indent=2))
        return
    if kafka is None:
        print("not running (start it with `hub kafka up`)")
        return
    print(f"bootstrap servers: {bootstrap}")
    for node in nodes:
        state = "up" if node["alive"] else "DOWN"
        print(f"  node {node['node_id']}  port {node['port']}  pid {node['pid']}  {state}")
