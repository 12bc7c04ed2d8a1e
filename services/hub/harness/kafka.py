"""A real Apache Kafka broker or 3-node cluster (KRaft), started with `java` from Maven jars."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self

import structlog
from aiokafka.admin import AIOKafkaAdminClient

if TYPE_CHECKING:
    from types import TracebackType

log = structlog.get_logger(__name__)

KAFKA_VERSION = "4.3.1"
DEPLOY_DIR = Path(__file__).resolve().parents[3] / "deploy" / "kafka"
HEAP = ("-Xms256m", "-Xmx768m")
JVM_FLAGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true")


class HarnessError(RuntimeError):
    """The local broker cannot be had; the message says what is missing and how to get it."""


def cache_root() -> Path:
    """Where jars live, outside the repository: `$HUB_CACHE_DIR` or `~/.cache/aftersales-hub`."""
    configured = os.environ.get("HUB_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "aftersales-hub"


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise HarnessError(
            f"`{tool}` is not installed, and the local Kafka broker needs it. Install it "
            f"(Debian: `apt-get install {package}`), or point the hub at a running cluster "
            "with KAFKA_BOOTSTRAP_SERVERS=host:port, or run where a Docker engine answers "
            "(the tests then start Kafka with testcontainers)."
        )
    return path


def ensure_kafka_jars() -> Path:
    """The directory of Kafka's jars, fetched from Maven Central on first use."""
    home = cache_root() / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    marker = home / ".complete"
    if marker.exists():
        return libs
    mvn = _require("mvn", "maven")
    _require("java", "openjdk-17-jre-headless")
    if libs.exists():
        shutil.rmtree(libs)  # a download that did not finish
    started = time.monotonic()
    command = [
        mvn, "-q", "-B", "-f", str(DEPLOY_DIR / "pom.xml"), "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise HarnessError(f"fetching Kafka jars with Maven failed:\n{result.stdout[-3000:]}")
    marker.write_text(KAFKA_VERSION)
    log.info("kafka_jars_fetched", libs=str(libs), seconds=round(time.monotonic() - started, 1))
    return libs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def new_cluster_id() -> str:
    """A Kafka cluster id: URL-safe base64 of 16 random bytes, unpadded (what StorageTool makes).

    As Kafka's own generator does, never one starting with `-`: that reads as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass
class NodeSpec:
    """One combined broker+controller node."""

    node_id: int
    port: int
    controller_port: int
    directory: Path
    pid: int | None = None


def render_properties(node: NodeSpec, voters: str, nodes: int) -> str:
    """server.properties of one node; a 3-node cluster replicates 3 ways with min ISR 2."""
    replication = min(nodes, 3)
    min_isr = 2 if nodes >= 3 else 1  # noqa: PLR2004 - a quorum of three tolerates one loss
    settings = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": node.directory / "data",
        "num.partitions": 3,
        "default.replication.factor": replication,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replication,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "false",
        "message.max.bytes": 4 * 1024 * 1024 + 128 * 1024,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


@dataclass
class LocalKafka:
    """A local KRaft cluster of `nodes` combined nodes; a context manager that stops it on exit."""

    base_dir: Path
    nodes: int = 1
    port: int | None = None
    specs: list[NodeSpec] = field(default_factory=list)
    _processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.specs:
            self.specs = [
                NodeSpec(
                    node_id=number,
                    port=self.port + number - 1 if self.port else free_port(),
                    controller_port=self.port + 100 + number - 1 if self.port else free_port(),
                    directory=self.base_dir / f"node-{number}",
                )
                for number in range(1, self.nodes + 1)
            ]

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` of every node, comma separated."""
        return ",".join(f"127.0.0.1:{node.port}" for node in self.specs)

    def _java(self, libs: Path, *arguments: str, heap: bool = True) -> list[str]:
        return [
            _require("java", "openjdk-17-jre-headless"),
            *(HEAP if heap else ("-Xmx256m",)),
            *JVM_FLAGS,
            f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
            "-cp", f"{libs}/*", *arguments,
        ]  # fmt: skip

    def start(self, timeout_s: float = 90.0) -> None:
        """Format (first time only) and start every node, then wait until all answer."""
        libs = ensure_kafka_jars()
        started = time.monotonic()
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.specs)
        cluster_id = new_cluster_id()
        formats = []
        for node in self.specs:
            node.directory.mkdir(parents=True, exist_ok=True)
            properties = node.directory / "server.properties"
            properties.write_text(render_properties(node, voters, len(self.specs)))
            if not (node.directory / "data" / "meta.properties").exists():
                command = self._java(libs, "kafka.tools.StorageTool", "format",
                                     f"--cluster-id={cluster_id}", "--config", str(properties),
                                     heap=False)  # fmt: skip
                formats.append(subprocess.Popen(command, stdout=subprocess.PIPE,  # noqa: S603
                                                stderr=subprocess.STDOUT))  # fmt: skip
        for process in formats:
            output, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                raise HarnessError(f"formatting Kafka storage failed:\n{output.decode()[-3000:]}")
        for node in self.specs:
            self.start_node(node.node_id, libs=libs)
        self.wait_ready(timeout_s)
        log.info(
            "kafka_started",
            nodes=len(self.specs),
            bootstrap=self.bootstrap_servers,
            seconds=round(time.monotonic() - started, 1),
        )
        self.save_state()

    def start_node(self, node_id: int, *, libs: Path | None = None) -> None:
        """Start one node's JVM (already formatted)."""
        node = self._node(node_id)
        libs = libs or ensure_kafka_jars()
        log_file = (node.directory / "kafka.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - our own java command line
            self._java(libs, "kafka.Kafka", str(node.directory / "server.properties")),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives `hub kafka up` and ignores the terminal's Ctrl-C
        )
        log_file.close()
        self._processes[node_id] = process
        node.pid = process.pid

    def stop_node(self, node_id: int, timeout_s: float = 30.0) -> None:
        """Stop one node: SIGTERM (controlled shutdown), SIGKILL after `timeout_s`."""
        node = self._node(node_id)
        if node.pid is not None:
            _terminate(node.pid, timeout_s)
        self._processes.pop(node_id, None)
        node.pid = None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every node at once (one by one, the last would wait for a quorum in vain)."""
        running = [(node, node.pid) for node in self.specs if node.pid is not None]
        for _, pid in running:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for node, pid in running:
            _terminate(pid, max(0.0, deadline - time.monotonic()))
            self._processes.pop(node.node_id, None)
            node.pid = None
        log.info("kafka_stopped", bootstrap=self.bootstrap_servers)

    def alive(self) -> dict[int, bool]:
        """Whether each node's process is running."""
        return {node.node_id: _running(node.pid) for node in self.specs}

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until every live node is registered and answers metadata requests."""
        deadline = time.monotonic() + timeout_s
        expected = sum(self.alive().values())
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            for node in self.specs:
                process = self._processes.get(node.node_id)
                if process is not None and process.poll() is not None:
                    tail = (node.directory / "kafka.log").read_text(errors="replace")[-3000:]
                    raise HarnessError(f"Kafka node {node.node_id} exited early:\n{tail}")
            if not all(_accepts(node.port) for node in self.specs if _running(node.pid)):
                time.sleep(0.2)  # no listener yet: asking for metadata would only log errors
                continue
            try:
                brokers = asyncio.run(_count_brokers(self.bootstrap_servers))
            except Exception as error:  # noqa: BLE001 - any failure here means "not yet"
                last_error = f"{type(error).__name__}: {error}"
            else:
                if brokers >= expected:
                    return
                last_error = f"{brokers} of {expected} brokers registered"
            time.sleep(0.3)
        raise HarnessError(f"Kafka did not become ready in {timeout_s:.0f}s ({last_error})")

    def _node(self, node_id: int) -> NodeSpec:
        return next(node for node in self.specs if node.node_id == node_id)

    # --- a cluster that outlives the command that started it (`hub kafka up`) ---------
    def save_state(self) -> None:
        """Write nodes, ports and pids next to the data, for `hub kafka status|down`."""
        state = {"nodes": [{**asdict(n), "directory": str(n.directory)} for n in self.specs]}
        (self.base_dir / "cluster.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, base_dir: Path) -> LocalKafka | None:
        """The cluster recorded in `base_dir`, or None."""
        path = base_dir / "cluster.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        specs = [NodeSpec(**{**n, "directory": Path(n["directory"])}) for n in state["nodes"]]
        return cls(base_dir=base_dir, nodes=len(specs), specs=specs)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


async def _count_brokers(bootstrap_servers: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=3000)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return len(cluster["brokers"])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; its state letter says it is gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM, wait up to `timeout_s` for the exit, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            finished = 0 if _running(pid) else pid
        if finished:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
