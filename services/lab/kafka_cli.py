"""`python -m lab kafka up|down|status`: a local broker or cluster that outlives the command."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import structlog
import typer

from hub.core.logging import configure_logging
from lab.harness.kafka import HarnessError, LocalKafka, file_lock

STATE_DIR = Path(".hub") / "kafka"
DEFAULT_PORT = 19092

kafka_app = typer.Typer(
    help="A local Apache Kafka broker or 3-node cluster (KRaft) from Maven jars; "
    "its state lives in .hub/kafka/ under the current directory.",
    no_args_is_help=True,
)


@kafka_app.callback()
def _logging() -> None:
    # Logs go to stderr: stdout carries only the answer (`B=$(python -m lab kafka up)` works).
    if not structlog.is_configured():  # a test process has its own configuration
        configure_logging(os.environ.get("HUB_LOG_LEVEL", "INFO"), "console")


def _state_dir() -> Path:
    return STATE_DIR.resolve()


def _note(text: str) -> None:
    print(text, file=sys.stderr)


@kafka_app.command("up")
def up(
    nodes: Annotated[
        int | None,
        typer.Option(help="1, or 3 for replication 3 and min ISR 2 (default: as running, or 1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help=f"Client port of node 1 (default {DEFAULT_PORT}); node n: port+n-1."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the cluster.")] = 90.0,
    tls: Annotated[
        bool | None,
        typer.Option(
            "--tls/--no-tls",
            help="Also listen over TLS (SSL) on port+200+n-1, certificates made by keytool "
            "(default: as running, or not).",
        ),
    ] = None,
) -> None:
    """Start the local cluster, or reuse the one running; prints its bootstrap servers."""
    if nodes not in {None, 1, 3}:
        raise typer.BadParameter("nodes must be 1 or 3", param_hint="--nodes")
    state_dir = _state_dir()
    with file_lock(state_dir.parent / "kafka.lock"):
        kafka = LocalKafka.load(state_dir)
        if kafka is not None and (
            (nodes is not None and kafka.nodes != nodes)
            or (port is not None and kafka.specs[0].port != port)
            or (tls is not None and kafka.tls != tls)
        ):
            if any(kafka.alive().values()):
                _note(
                    f"a {kafka.nodes}-node cluster is running at {kafka.bootstrap_servers}; "
                    "stop it first with `python -m lab kafka down`"
                )
                raise typer.Exit(1)
            kafka = None  # a stopped cluster of another shape: replaced below
        if kafka is None:
            shutil.rmtree(state_dir, ignore_errors=True)
            kafka = LocalKafka(nodes=nodes or 1, base_dir=state_dir, port=port or DEFAULT_PORT,
                               tls=bool(tls), detached=True)  # fmt: skip
        elif all(kafka.alive().values()):
            _note(f"already running ({kafka.nodes} node(s), state in {state_dir})")
        try:
            # Starts only the nodes that are down (on their existing data) and waits for all.
            kafka.start(timeout)
        except HarnessError as error:
            _note(f"error: {error}")
            _note(
                f"node logs: {state_dir}/node-*/kafka.log; clean up with `python -m lab kafka down`"
            )
            raise typer.Exit(1) from error
    if kafka.ca is not None:
        _note(
            f"TLS listener: HUB_KAFKA_BOOTSTRAP_SERVERS={kafka.tls_bootstrap_servers} "
            f"HUB_KAFKA_SECURITY_PROTOCOL=SSL HUB_KAFKA_SSL_CA_FILE={kafka.ca.certificate}"
        )
    print(kafka.bootstrap_servers)


@kafka_app.command("down")
def down() -> None:
    """Stop the local cluster and delete its data."""
    state_dir = _state_dir()
    with file_lock(state_dir.parent / "kafka.lock"):
        kafka = LocalKafka.load(state_dir)
        if kafka is not None:
            kafka.stop()
        existed = state_dir.exists()
        shutil.rmtree(state_dir, ignore_errors=True)
    if kafka is None:
        _note("not running" + (" (removed leftover data)" if existed else ""))
        return
    _note(f"stopped; removed {state_dir}")


@kafka_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the nodes, their processes and the bootstrap servers."""
    kafka = LocalKafka.load(_state_dir())
    alive = kafka.alive() if kafka else {}
    nodes = [
        {
            "node_id": node.node_id,
            "port": node.port,
            "controller_port": node.controller_port,
            "tls_port": node.tls_port,
            "pid": node.pid,
            "alive": alive[node.node_id],
            "directory": str(node.directory),
            "log": str(node.log_file),
        }
        for node in (kafka.specs if kafka else [])
    ]
    report = {
        "running": any(alive.values()),
        "healthy": bool(alive) and all(alive.values()),
        "bootstrap_servers": kafka.bootstrap_servers if kafka else None,
        "tls_bootstrap_servers": kafka.tls_bootstrap_servers if kafka and kafka.tls else None,
        "ca_file": str(kafka.ca.certificate) if kafka and kafka.ca else None,
        "cluster_id": kafka.cluster_id if kafka else None,
        "nodes": nodes,
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return
    if kafka is None:
        print("not running (start it with `python -m lab kafka up`)")
        return
    state = "running" if report["healthy"] else "DEGRADED" if report["running"] else "stopped"
    print(f"{state}: {kafka.nodes} node(s), bootstrap servers {kafka.bootstrap_servers}")
    for node in nodes:
        up_or_down = "up" if node["alive"] else "DOWN"
        print(f"  node {node['node_id']}  port {node['port']}  pid {node['pid']}  {up_or_down}")
