"""A real Apache Kafka broker or 3-node cluster (KRaft), started with `java` from Maven jars."""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
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
from typing import TYPE_CHECKING, Any, Self, TypeVar

import structlog
from aiokafka.conn import create_conn
from aiokafka.protocol.metadata import MetadataRequest

from hub.core.connection import SCRAM_MECHANISM, scram_options
from hub.core.settings import HarnessSettings
from lab.orphans import die_with_parent

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
    from types import TracebackType

    from lab.harness.certs import BrokerKeystore, CertificateAuthority

log = structlog.get_logger(__name__)

T = TypeVar("T")

KAFKA_VERSION = "4.3.1"
DEPLOY_DIR = Path(__file__).resolve().parents[3] / "deploy" / "kafka"
LOG4J_CONFIG = DEPLOY_DIR / "log4j2.properties"
HOST = "127.0.0.1"
# Kafka's own scripts run the broker on G1; a small pause goal keeps produce latency flat in tests.
BROKER_JVM = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",  # a dead node is visible, a thrashing one is not
    "-Djava.awt.headless=true",
)
# StorageTool runs for two seconds: the C1 compiler alone and a serial GC start it fastest.
TOOL_JVM = ("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")
# Class-data sharing: the first broker writes an archive of the classes it loaded when it stops;
# later JVMs map it instead of loading ~4000 classes from jars (a node starts in half the time).
CDS_QUIET = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")
INSTALL_HINTS = {"java": "openjdk-17-jre-headless", "mvn": "maven"}
STATE_FILE = "cluster.json"
LOG_FILE = "kafka.log"
LAST_NODE_GRACE = 1.0  # seconds the last node of a stopping cluster gets once it is alone
CONTROLLER_PORT_OFFSET = 100  # with a fixed port, node n's controller listens on port+100+n-1
TLS_PORT_OFFSET = 200  # and its TLS listener, if it has one, on port+200+n-1
TLS_DIR = "tls"
ADMIN_USER = "admin"
"""The secured cluster's super user: brokers and controllers talk to each other as this user."""


class HarnessError(RuntimeError):
    """The local broker cannot be had; the message says what is missing and how to get it."""


def cache_root() -> Path:
    """Where jars live, outside the repository: `$HUB_CACHE_DIR` or `~/.cache/aftersales-hub`."""
    configured = HarnessSettings().cache_dir
    return configured or Path.home() / ".cache" / "aftersales-hub"


def kafka_home() -> Path:
    """The cache directory of this Kafka version (its `libs/` and the download marker)."""
    return cache_root() / f"kafka-{KAFKA_VERSION}"


def require_tools(*tools: str) -> dict[str, str]:
    """Full paths of `tools` (`java`, `mvn`); a HarnessError says how to get the missing ones."""
    found = {tool: shutil.which(tool) for tool in tools}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        names = " and ".join(f"`{tool}`" for tool in missing)
        verb = "is" if len(missing) == 1 else "are"
        packages = " ".join(INSTALL_HINTS.get(tool, tool) for tool in missing)
        raise HarnessError(
            f"{names} {verb} not installed, and the local Kafka broker needs it "
            "(`java` 17+ runs the broker, `mvn` fetches its jars from Maven Central once). "
            f"Install it (Debian/Ubuntu: `apt-get install {packages}`), or point the hub at a "
            "running cluster with KAFKA_BOOTSTRAP_SERVERS=host:port, or run the tests with "
            "HUB_TEST_BROKER=container (Kafka in a container; `make kafka-image` builds it)."
        )
    return {tool: path for tool, path in found.items() if path is not None}


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed), so two processes take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _jars_complete(libs: Path, marker: Path) -> bool:
    # The marker lists the jars of a finished copy: a half-finished or pruned libs/ fails here.
    if not marker.is_file() or not libs.is_dir():
        return False
    expected = set(marker.read_text().split())
    core = {f"kafka_2.13-{KAFKA_VERSION}.jar", f"kafka-tools-{KAFKA_VERSION}.jar"}
    return core <= expected <= {path.name for path in libs.iterdir()}


def ensure_kafka_jars() -> Path:
    """The directory of Kafka's jars, fetched from Maven Central (about 12 s) on first use."""
    home = kafka_home()
    libs = home / "libs"
    marker = home / "libs.complete"
    if _jars_complete(libs, marker):
        return libs
    tools = require_tools("java", "mvn")
    with file_lock(home / ".lock"):
        if _jars_complete(libs, marker):  # another process fetched them while we waited
            return libs
        marker.unlink(missing_ok=True)
        partial = home / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        started = time.monotonic()
        command = [
            tools["mvn"], "-q", "-B", "-f", str(DEPLOY_DIR / "pom.xml"),
            "dependency:copy-dependencies", f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-3000:]
            raise HarnessError(
                "fetching Kafka jars with Maven failed (network or proxy? Maven reads "
                f"~/.m2/settings.xml), exit code {result.returncode}:\n{output}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        jars = sorted(path.name for path in libs.glob("*.jar"))
        marker.write_text("".join(f"{jar}\n" for jar in jars))
    log.info(
        "kafka_jars_fetched",
        libs=str(libs),
        jars=len(jars),
        seconds=round(time.monotonic() - started, 1),
    )
    return libs


def class_archive(java: str) -> Path | None:
    """Where the class-data archive for this JVM and these jars lives (None: switched off)."""
    if not HarnessSettings().kafka_cds:
        return None
    marker = kafka_home() / "libs.complete"
    binary = Path(java).resolve()
    try:
        identity = f"{binary}:{binary.stat().st_mtime_ns}:{marker.stat().st_mtime_ns}"
    except OSError:
        return None
    # A new JDK or a fresh download of the jars gets a new archive; the old one is just unused.
    key = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return kafka_home() / f"classes-{key}.jsa"


def adopt_class_archive(partial: Path, java: str, libs: Path) -> None:
    """Keep the archive a stopped broker wrote, if the JVM accepts it; delete it otherwise."""
    archive = partial.with_name(partial.name.split(".jsa.", 1)[0] + ".jsa")
    if not partial.exists():
        return
    # A broken archive crashes a JVM that maps it, so each one is tried once before it is kept.
    try:
        check = subprocess.run(  # noqa: S603 - our own java command line
            [java, "-Xshare:on", f"-XX:SharedArchiveFile={partial}", *CDS_QUIET,
             "-cp", f"{libs}/*", "-version"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        usable = check.returncode == 0
    except subprocess.TimeoutExpired:
        usable = False
    if usable:
        partial.replace(archive)
        log.info("kafka_class_archive_created", archive=str(archive), size=archive.stat().st_size)
    else:
        partial.unlink(missing_ok=True)
        log.warning("kafka_class_archive_rejected", archive=str(partial))


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that nobody listens on right now."""
    # All sockets stay bound until every port is chosen, so the kernel cannot hand one out twice.
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((HOST, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    return free_ports(1)[0]


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
    """One combined broker+controller node: its ports, its directory and its process."""

    node_id: int
    port: int
    controller_port: int
    directory: Path
    pid: int | None = None
    archive_dump: str | None = None
    tls_port: int | None = None
    """The port of its TLS listener (SSL, or SASL_SSL on a secured cluster), if it has one."""
    """The class-data archive this node's JVM writes when it exits, if it writes one."""

    @property
    def properties(self) -> Path:
        """The node's server.properties."""
        return self.directory / "server.properties"

    @property
    def log_file(self) -> Path:
        """Where the node's JVM writes stdout and stderr."""
        return self.directory / LOG_FILE

    @property
    def formatted(self) -> bool:
        """Whether StorageTool has formatted the node's log directory."""
        return (self.directory / "data" / "meta.properties").exists()


@dataclass(frozen=True)
class Credentials:
    """A SASL/SCRAM user name and password; the password never appears in repr or logs."""

    username: str
    password: str = field(repr=False)


def _jaas(module: str, username: str, password: str, **users: str) -> str:
    extra = "".join(f' user_{name}="{secret}"' for name, secret in users.items())
    return f'{module} required username="{username}" password="{password}"{extra};'


def security_properties(admin_password: str) -> dict[str, object]:
    """SASL/SCRAM-SHA-512 for clients and between brokers, ACLs by StandardAuthorizer.

    SCRAM users live in the cluster metadata, which controllers cannot read before the quorum
    stands: the controller listener authenticates the nodes with PLAIN and a static user instead.
    """
    scram = _jaas("org.apache.kafka.common.security.scram.ScramLoginModule", ADMIN_USER,
                  admin_password)  # fmt: skip
    plain = _jaas("org.apache.kafka.common.security.plain.PlainLoginModule", ADMIN_USER,
                  admin_password, **{ADMIN_USER: admin_password})  # fmt: skip
    return {
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,"
        "CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": plain,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN_USER}",
        "allow.everyone.if.no.acl.found": "false",
    }


def tls_properties(keystore: BrokerKeystore, *, client_auth: bool = False) -> dict[str, object]:
    """The TLS listener's certificate (PKCS12 made by keytool); `client_auth`: clients show one.

    A client's certificate, signed by the same CA, is then its identity (`User:CN=<name>`).
    """
    return {
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": keystore.keystore,
        "ssl.keystore.password": keystore.password,
        "ssl.key.password": keystore.password,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": keystore.truststore,
        "ssl.truststore.password": keystore.password,
        "ssl.client.auth": "required" if client_auth else "none",
    }


def render_properties(
    node: NodeSpec,
    cluster: Sequence[NodeSpec],
    *,
    admin_password: str | None = None,
    keystore: BrokerKeystore | None = None,
    tls_client_auth: bool = False,
) -> str:
    """server.properties of `node` in `cluster` (see `node_settings`)."""
    settings = node_settings(
        node,
        cluster,
        admin_password=admin_password,
        keystore=keystore,
        tls_client_auth=tls_client_auth,
    )
    return format_properties(settings)


def format_properties(settings: Mapping[str, object]) -> str:
    """`key=value` lines, as Kafka reads them."""
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def node_settings(
    node: NodeSpec,
    cluster: Sequence[NodeSpec],
    *,
    admin_password: str | None = None,
    keystore: BrokerKeystore | None = None,
    tls_client_auth: bool = False,
) -> dict[str, object]:
    """The settings of `node` in `cluster`; three nodes replicate 3 ways with min ISR 2.

    A single node is a dynamic quorum (`format --standalone`), several use static voters.
    With `admin_password` the cluster is secured (see `security_properties`). A node with a
    `tls_port` listens there too, over TLS with `keystore`'s certificate; brokers and
    controllers keep talking to each other without it.
    """
    if node.tls_port is not None and keystore is None:
        raise ValueError(f"node {node.node_id} has a TLS port but no keystore")
    count = len(cluster)
    replication = min(count, 3)
    min_isr = 2 if count >= 3 else 1  # noqa: PLR2004 - three replicas tolerate the loss of one
    if count == 1:
        quorum = {"controller.quorum.bootstrap.servers": f"{HOST}:{node.controller_port}"}
    else:
        voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in cluster)
        quorum = {"controller.quorum.voters": voters}
    client = "PLAINTEXT" if admin_password is None else "SASL_PLAINTEXT"
    listeners = [f"{client}://{HOST}:{node.port}"]
    if node.tls_port is not None:
        tls = "SSL" if admin_password is None else "SASL_SSL"
        listeners.append(f"{tls}://{HOST}:{node.tls_port}")
    settings: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        **quorum,
        "listeners": ",".join([*listeners, f"CONTROLLER://{HOST}:{node.controller_port}"]),
        "advertised.listeners": ",".join(listeners),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,CONTROLLER:PLAINTEXT",
        "log.dirs": node.directory / "data",
        "num.partitions": 3,
        "default.replication.factor": replication,
        "min.insync.replicas": min_isr,
        # Internal topics: few partitions, so the first group or transaction is not slow.
        "offsets.topic.replication.factor": replication,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        "share.coordinator.state.topic.num.partitions": 10,
        "group.initial.rebalance.delay.ms": 0,
        # A restarted or crashed node is let in or fenced after 4.5 s rather than 9 s (the old
        # registration must expire first): fault tests wait less, heartbeats still have slack.
        "broker.heartbeat.interval.ms": 1000,
        "broker.session.timeout.ms": 4500,
        "auto.create.topics.enable": "false",
        # Room for the hub's largest envelope (4 MiB) plus headers.
        "message.max.bytes": 4 * 1024 * 1024 + 128 * 1024,
        # The cleaner's default 128 MiB dedupe buffer would be most of a test node's heap.
        "log.cleaner.dedupe.buffer.size": 32 * 1024 * 1024,
    }
    if admin_password is not None:
        settings.update(security_properties(admin_password))
    if keystore is not None:
        settings.update(tls_properties(keystore, client_auth=tls_client_auth))
    return settings


class LocalKafka:
    """A local KRaft cluster of `nodes` combined broker+controller nodes.

    A context manager: `with LocalKafka(base_dir=...) as kafka:` starts it and stops it on exit.
    Its state (ports, pids, cluster id) is kept in `base_dir/cluster.json`, so another process
    can find it again with `LocalKafka.load(base_dir)`.
    """

    def __init__(
        self,
        nodes: int = 1,
        *,
        base_dir: Path,
        port: int | None = None,
        cluster_id: str | None = None,
        specs: Sequence[NodeSpec] | None = None,
        scram_users: Mapping[str, str] | None = None,
        tls: bool = False,
        tls_client_auth: bool = False,
        detached: bool = False,
    ) -> None:
        """`scram_users` (name to password, `admin` among them) secures the cluster.

        `tls` adds a TLS listener to each node (SASL_SSL when secured, else SSL), its
        certificates made by keytool under `base_dir/tls`: see `tls_bootstrap_servers`, `ca`.
        `tls_client_auth` makes that listener require a client certificate from the same CA.

        A `detached` cluster outlives this process; any other dies with it, even on SIGKILL.
        """
        self.detached = detached
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, not {nodes}")
        if scram_users is not None and ADMIN_USER not in scram_users:
            raise ValueError(f"a secured cluster needs the user {ADMIN_USER!r}")
        self.scram_users = dict(scram_users or {})
        self.base_dir = base_dir
        self.nodes = len(specs) if specs else nodes
        self.cluster_id = cluster_id or new_cluster_id()
        self.start_seconds: float | None = None
        """Wall time of the last `start()`: format, JVM start-up and readiness."""
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self._keystore: BrokerKeystore | None = None
        self.tls_client_auth = tls_client_auth
        if specs:
            self.specs = list(specs)
            self.tls = any(spec.tls_port is not None for spec in self.specs)
            return
        self.tls = tls
        if port is None:
            ports = free_ports(3 * nodes)
            triples = [(ports[i], ports[nodes + i], ports[2 * nodes + i]) for i in range(nodes)]
        else:
            triples = [
                (port + i, port + CONTROLLER_PORT_OFFSET + i, port + TLS_PORT_OFFSET + i)
                for i in range(nodes)
            ]
        self.specs = [
            NodeSpec(node_id=i + 1, port=client, controller_port=controller,
                     directory=base_dir / f"node-{i + 1}", tls_port=secure if tls else None)
            for i, (client, controller, secure) in enumerate(triples)
        ]  # fmt: skip

    @property
    def admin(self) -> Credentials | None:
        """The super user of a secured cluster; None for a PLAINTEXT one."""
        password = self.scram_users.get(ADMIN_USER)
        return None if password is None else Credentials(ADMIN_USER, password)

    @property
    def ca(self) -> CertificateAuthority | None:
        """The CA that signed the TLS listeners' certificate (its PEM: `ca.certificate`)."""
        if not self.tls:
            return None
        from lab.harness.certs import CertificateAuthority  # noqa: PLC0415 - certs imports us

        return CertificateAuthority.create(self.base_dir / TLS_DIR)

    def _properties(self, node: NodeSpec) -> str:
        admin = self.admin
        if self.tls and self._keystore is None:
            ca = self.ca
            assert ca is not None  # noqa: S101 - self.tls makes one
            self._keystore = ca.issue("broker")
        return render_properties(
            node,
            self.specs,
            admin_password=None if admin is None else admin.password,
            keystore=self._keystore,
            tls_client_auth=self.tls_client_auth,
        )

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` of every node, comma separated."""
        return ",".join(f"{HOST}:{node.port}" for node in self.specs)

    @property
    def tls_bootstrap_servers(self) -> str:
        """`host:port` of every node's TLS listener, comma separated."""
        if not self.tls:
            raise HarnessError("this cluster has no TLS listener: start it with tls=True")
        return ",".join(f"{HOST}:{node.tls_port}" for node in self.specs)

    def node(self, node_id: int) -> NodeSpec:
        """The node with id `node_id` (1-based)."""
        for node in self.specs:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id} in a {self.nodes}-node cluster")

    # --- starting ----------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> None:
        """Format (first time only) and start every stopped node, then wait until all answer.

        Nodes already running are left alone, so calling it again is harmless. On failure the
        nodes this call started are stopped again and the error carries the tail of the log.
        """
        started = time.monotonic()
        deadline = started + timeout
        libs = ensure_kafka_jars()
        archive = self._class_archive()
        launched: list[int] = []
        try:
            self.save_state()  # the cluster id is on disk before any node is formatted with it
            to_start = [node for node in self.specs if not self._alive(node)]
            self._check_ports_free(to_start)
            self._format([node for node in to_start if not node.formatted], libs, archive, deadline)
            format_seconds = round(time.monotonic() - started, 2)
            for node in to_start:
                self._launch(node, libs, archive)
                launched.append(node.node_id)
            self.save_state()
            self.wait_ready(max(1.0, deadline - time.monotonic()))
        except BaseException:
            for node_id in launched:
                self.stop_node(node_id, timeout=5.0)
            raise
        self.start_seconds = round(time.monotonic() - started, 2)
        log.info(
            "kafka_started" if launched else "kafka_already_running",
            nodes=self.nodes,
            started_nodes=launched,
            bootstrap=self.bootstrap_servers,
            seconds=self.start_seconds,
            format_seconds=format_seconds,
        )

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Start one stopped node again (for fault tests) and wait until it is registered."""
        node = self.node(node_id)
        if self._alive(node):
            return
        started = time.monotonic()
        self._check_ports_free([node])
        self._launch(node, ensure_kafka_jars(), self._class_archive())
        self.save_state_if_present()
        self.wait_ready(timeout)
        log.info(
            "kafka_node_started", node_id=node_id, seconds=round(time.monotonic() - started, 2)
        )

    def _check_ports_free(self, nodes: Sequence[NodeSpec]) -> None:
        for node in nodes:
            for port in (node.port, node.controller_port, node.tls_port):
                if port is not None and _accepts(port):
                    raise HarnessError(
                        f"port {port} (node {node.node_id}) is already in use: another broker "
                        "(`python -m lab kafka status`) or another program; choose other ports "
                        "(`python -m lab kafka up --port N`, or leave the port to the harness)"
                    )

    @staticmethod
    def _class_archive() -> Path | None:
        return class_archive(require_tools("java")["java"])

    def _format(
        self, nodes: Sequence[NodeSpec], libs: Path, archive: Path | None, deadline: float
    ) -> None:
        # One JVM per node, all at once: each takes one or two seconds, mostly start-up.
        shared = (
            (*CDS_QUIET, f"-XX:SharedArchiveFile={archive}") if archive and archive.exists() else ()
        )
        formats: list[tuple[NodeSpec, subprocess.Popen[bytes]]] = []
        for node in nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            node.properties.write_text(self._properties(node))
            standalone = ["--standalone"] if self.nodes == 1 else []
            # SCRAM users are written into the first metadata, before any client can connect.
            users = [
                argument
                for name, password in self.scram_users.items()
                for argument in (
                    "--add-scram",
                    f"{SCRAM_MECHANISM}=[name={name},password={password}]",
                )
            ]
            command = self._java(libs, (*TOOL_JVM, *shared), "kafka.tools.StorageTool", "format",
                                 "--cluster-id", self.cluster_id, "--config", str(node.properties),
                                 *standalone, *users)  # fmt: skip
            process = subprocess.Popen(  # noqa: S603 - our own java command line
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            formats.append((node, process))
        failures = []
        for node, process in formats:
            try:
                output, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            if process.returncode != 0:
                failures.append(f"node {node.node_id}:\n{output.decode(errors='replace')[-2000:]}")
        if failures:
            raise HarnessError("formatting Kafka storage failed:\n" + "\n".join(failures))

    def _launch(self, node: NodeSpec, libs: Path, archive: Path | None) -> None:
        # Written on every start: a cluster started by an older harness gets today's settings.
        node.directory.mkdir(parents=True, exist_ok=True)
        node.properties.write_text(self._properties(node))
        cds: tuple[str, ...] = ()
        if archive is not None and archive.exists():
            cds = (*CDS_QUIET, f"-XX:SharedArchiveFile={archive}")
        elif archive is not None and not any(other.archive_dump for other in self.specs):
            # This node writes the archive when it stops; a private name, as clusters may race.
            partial = archive.with_name(f"{archive.name}.{uuid.uuid4().hex[:8]}.partial")
            node.archive_dump = str(partial)
            cds = (*CDS_QUIET, f"-XX:ArchiveClassesAtExit={partial}")
        with node.log_file.open("ab") as log_file:
            process = subprocess.Popen(  # noqa: S603 - our own java command line
                self._java(libs, (*BROKER_JVM, *cds), "kafka.Kafka", str(node.properties)),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `lab kafka up`, ignores the terminal's Ctrl-C
                preexec_fn=None if self.detached else die_with_parent(),  # noqa: PLW1509 - only prctl runs there
            )
        self._processes[node.node_id] = process
        node.pid = process.pid

    @staticmethod
    def _java(libs: Path, jvm: Sequence[str], *arguments: str) -> list[str]:
        java = require_tools("java")["java"]
        return [
            java, *jvm, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp", f"{libs}/*", *arguments,
        ]  # fmt: skip

    # --- readiness ---------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until every running node answers a metadata request listing every running node.

        Raises HarnessError with the tail of its log when a node's process exits meanwhile.
        """
        deadline = time.monotonic() + timeout
        expected = {node.node_id for node in self.specs if node.pid is not None}
        last_problem = "no node answered yet"
        while True:
            for node in self.specs:
                if node.node_id in expected and not self._alive(node):
                    raise HarnessError(
                        f"Kafka node {node.node_id} exited early; the end of {node.log_file}:\n"
                        f"{_tail(node.log_file)}"
                    )
            live = [node for node in self.specs if node.node_id in expected]
            closed = [
                node.node_id
                for node in live
                if not all(_accepts(port) for port in (node.port, node.tls_port) if port)
            ]
            if closed:
                # Not listening yet: a metadata request would only log connection errors.
                last_problem = f"node(s) {closed} not listening yet"
            else:
                answers = run_async(functools.partial(_metadata_of_each, live, self.admin))
                problem = self._readiness_problem(answers, expected)
                if problem is None:
                    return
                last_problem = problem
            if time.monotonic() >= deadline:
                raise HarnessError(f"Kafka did not become ready in {timeout:.0f}s ({last_problem})")
            time.sleep(0.2)

    def _readiness_problem(
        self, answers: dict[int, MetadataAnswer], expected: set[int]
    ) -> str | None:
        for node_id, answer in answers.items():
            if isinstance(answer, str):
                return f"node {node_id}: {answer}"
            cluster_id, brokers = answer
            if cluster_id != self.cluster_id:
                # A fixed port may belong to some other cluster: never report that one as ours.
                return f"node {node_id} belongs to cluster {cluster_id}, not {self.cluster_id}"
            if not expected <= brokers:
                return f"node {node_id} sees brokers {sorted(brokers)}, expects {sorted(expected)}"
        return None

    # --- stopping ----------------------------------------------------------------------------
    def stop_node(self, node_id: int, timeout: float = 30.0) -> None:
        """Stop one node: SIGTERM (a controlled shutdown), SIGKILL after `timeout` seconds."""
        self._terminate([self.node(node_id)], timeout)
        self.save_state_if_present()
        log.info("kafka_node_stopped", node_id=node_id)

    def kill_node(self, node_id: int) -> None:
        """Kill one node with SIGKILL: a crash, no controlled shutdown."""
        self._terminate([self.node(node_id)], 0.0)
        self.save_state_if_present()
        log.info("kafka_node_killed", node_id=node_id)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every node: SIGTERM to all, SIGKILL to those still running after `timeout`."""
        started = time.monotonic()
        # All at once: stopped one by one, the last node waits for a quorum that is gone.
        self._terminate(self.specs, timeout, last_node_grace=LAST_NODE_GRACE)
        self.save_state_if_present()
        log.info(
            "kafka_stopped",
            bootstrap=self.bootstrap_servers,
            seconds=round(time.monotonic() - started, 2),
        )

    def _terminate(
        self, nodes: Sequence[NodeSpec], timeout: float, last_node_grace: float | None = None
    ) -> None:
        """SIGTERM, wait up to `timeout`, SIGKILL what is left; then reap and forget the pids."""
        running = [node for node in nodes if self._alive(node)]
        if timeout > 0:
            for node in running:
                self._signal(node, signal.SIGTERM)
            running = self._await_exit(running, timeout, last_node_grace)
        for node in running:
            self._signal(node, signal.SIGKILL)
        for node in nodes:
            process = self._processes.pop(node.node_id, None)
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)  # reap it: a zombie would hold on to the pid
            elif node.pid is not None:
                _wait_gone(node, deadline=time.monotonic() + 10)
            node.pid = None
            if node.archive_dump is not None:
                libs = kafka_home() / "libs"
                adopt_class_archive(Path(node.archive_dump), require_tools("java")["java"], libs)
                node.archive_dump = None

    def _await_exit(
        self, running: list[NodeSpec], timeout: float, last_node_grace: float | None
    ) -> list[NodeSpec]:
        """The nodes still running after `timeout` (or, of several, the last after its grace)."""
        deadline = time.monotonic() + timeout
        several = len(running) > 1
        alone_since: float | None = None
        while running and time.monotonic() < deadline:
            time.sleep(0.05)
            running = [node for node in running if self._alive(node)]
            if last_node_grace is None or not several or len(running) != 1:
                continue
            # The last node is the Raft leader, waiting 5 s (fixed in Kafka) to hand leadership
            # to voters that are gone. Unless it is writing the class archive, nothing is lost.
            alone_since = alone_since or time.monotonic()
            if time.monotonic() - alone_since > last_node_grace and not running[0].archive_dump:
                log.debug("kafka_last_node_killed", node_id=running[0].node_id)
                return running
        if running:
            log.warning(
                "kafka_nodes_killed_after_timeout",
                node_ids=[node.node_id for node in running],
                timeout=timeout,
            )
        return running

    def _signal(self, node: NodeSpec, signum: signal.Signals) -> None:
        process = self._processes.get(node.node_id)
        if process is not None:
            process.send_signal(signum)  # a no-op once the child has been reaped
        elif node.pid is not None and _is_node_process(node):
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signum)

    # --- liveness ----------------------------------------------------------------------------
    def alive(self) -> dict[int, bool]:
        """Whether each node's process is running."""
        return {node.node_id: self._alive(node) for node in self.specs}

    def _alive(self, node: NodeSpec) -> bool:
        process = self._processes.get(node.node_id)
        if process is not None:
            return process.poll() is None
        return node.pid is not None and _is_node_process(node)

    # --- a cluster that outlives the command that started it (`lab kafka up`) ----------------
    def state(self) -> dict[str, Any]:
        """What `save_state` writes: version, cluster id and every node."""
        return {
            "kafka_version": KAFKA_VERSION,
            "cluster_id": self.cluster_id,
            "nodes": [{**asdict(node), "directory": str(node.directory)} for node in self.specs],
        }

    def save_state(self) -> None:
        """Write nodes, ports and pids to `base_dir/cluster.json`, for `lab kafka status|down`."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        path = self.base_dir / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.state(), indent=2) + "\n")
        temporary.replace(path)  # a reader never sees half a file

    def save_state_if_present(self) -> None:
        """Update the state file unless its directory was removed meanwhile."""
        if self.base_dir.is_dir():
            self.save_state()

    @classmethod
    def load(cls, base_dir: Path) -> LocalKafka | None:
        """The cluster recorded in `base_dir`, or None when there is none (or it is unreadable)."""
        try:
            state = json.loads((base_dir / STATE_FILE).read_text())
            specs = [
                NodeSpec(**{**node, "directory": Path(node["directory"])})
                for node in state["nodes"]
            ]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        # A state file from before the cluster id was kept: the formatted data knows it.
        cluster_id = state.get("cluster_id") or _formatted_cluster_id(specs)
        return cls(base_dir=base_dir, cluster_id=cluster_id, specs=specs, detached=True)

    def __enter__(self) -> Self:
        # Owned by this process: should it end without __exit__, the nodes go with it.
        atexit.register(self.stop)
        try:
            self.start()
        except BaseException:
            atexit.unregister(self.stop)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        atexit.unregister(self.stop)
        self.stop()


# --- helpers ---------------------------------------------------------------------------------
MetadataAnswer = tuple[str | None, set[int]] | str
"""(cluster id, ids of registered brokers) as one node sees them, or what went wrong."""


async def _metadata_of_each(
    nodes: Sequence[NodeSpec], admin: Credentials | None
) -> dict[int, MetadataAnswer]:
    answers = await asyncio.gather(*(broker_metadata(HOST, node.port, admin) for node in nodes))
    return {node.node_id: answer for node, answer in zip(nodes, answers, strict=True)}


async def broker_metadata(host: str, port: int, admin: Credentials | None) -> MetadataAnswer:
    """What the node at `host:port` itself answers to a metadata request (or what went wrong)."""
    # A connection to this one node: through a client, another node could answer instead.
    sasl = {} if admin is None else scram_options(admin.username, admin.password)
    try:
        connection = await create_conn(host, port, request_timeout_ms=3000, **sasl)
    except Exception as error:  # noqa: BLE001 - any failure here means "not yet"
        return f"{type(error).__name__}: {error}"
    try:
        response = (await connection.send(MetadataRequest([]))).to_object()
    except Exception as error:  # noqa: BLE001 - any failure here means "not yet"
        return f"{type(error).__name__}: {error}"
    finally:
        connection.close()
    return response.get("cluster_id"), {int(broker["node_id"]) for broker in response["brokers"]}


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    # Called from async code (which a blocking start() stalls anyway): a fresh loop elsewhere.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _is_node_process(node: NodeSpec) -> bool:
    """Whether `node.pid` is still this node's JVM (not an exited one, nor a recycled pid)."""
    if node.pid is None:
        return False
    if not Path("/proc/self").exists():  # no procfs (macOS): the pid is all there is to go by
        try:
            os.kill(node.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    proc = Path(f"/proc/{node.pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        arguments = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # A zombie has exited; its parent has just not collected it yet.
    return state != "Z" and str(node.properties).encode() in arguments


def _formatted_cluster_id(specs: Sequence[NodeSpec]) -> str | None:
    for node in specs:
        with contextlib.suppress(OSError):
            for line in (node.directory / "data" / "meta.properties").read_text().splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "cluster.id":
                    return value.strip()
    return None


def _wait_gone(node: NodeSpec, deadline: float) -> None:
    while _is_node_process(node) and time.monotonic() < deadline:
        time.sleep(0.05)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
