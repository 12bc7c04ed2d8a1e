"""A Kafka node in a container of the locally built image, through a Docker-compatible API.

No Docker engine is needed: podman's API service (`podman system service`) answers on a private
socket. The image (`make kafka-image`) holds the same Kafka jars the local harness runs.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import structlog
from docker.errors import APIError, ImageNotFound, NotFound
from testcontainers.core.config import ConnectionMode, testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.docker_client import DockerClient

from hub.core.connection import SCRAM_MECHANISM
from hub.core.settings import HarnessSettings
from lab.harness.bootstrap import ENGINE_RUNS_CHECKED
from lab.harness.kafka import (
    ADMIN_USER,
    HOST,
    KAFKA_VERSION,
    Credentials,
    HarnessError,
    NodeSpec,
    broker_metadata,
    format_properties,
    new_cluster_id,
    node_settings,
    run_async,
)
from lab.orphans import die_with_parent

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from types import TracebackType

log = structlog.get_logger(__name__)

KAFKA_IMAGE = f"localhost/aftersales-hub-kafka:{KAFKA_VERSION}"
"""What `make kafka-image` builds (deploy/containers/Containerfile.kafka)."""
CLIENT_PORT = 9092
"""The client listener inside the container; the host maps a free port of its own to it."""
BROKER_PORT = 9094
CONTROLLER_PORT = 9093
CONFIG_DIR = "/var/lib/kafka/config"
DATA_DIR = "/var/lib/kafka"
LABEL = "aftersales-hub.test-broker"
"""Every container the tests start carries it, so none can hide from `podman ps -a --filter`."""
RUN_LABEL = "aftersales-hub.run"
"""Which engine context started a container: `container_engine` checks its own on the way out."""
OWNER_LABEL = "aftersales-hub.owner"
SOCKET_WAIT_S = 30.0
LOG_TAIL_LINES = 40


def configure_testcontainers() -> None:
    """No Ryuk (we remove what we start, and its image cannot be pulled here); ports on the host.

    What TESTCONTAINERS_RYUK_DISABLED=true and TESTCONTAINERS_CONNECTION_MODE=docker_host set,
    whichever way testcontainers was imported.
    """
    testcontainers_config.ryuk_disabled = True
    testcontainers_config.connection_mode_override = ConnectionMode.docker_host


def docker_client(docker_host: str) -> Any:  # noqa: ANN401 - testcontainers is untyped
    """A Docker client (testcontainers' wrapper) of the engine at `docker_host`."""
    return DockerClient(environment={"DOCKER_HOST": docker_host})


@contextlib.contextmanager
def podman_api(base_dir: Path) -> Iterator[str]:
    """Run podman's Docker-compatible API on a socket under `base_dir`; yield its DOCKER_HOST."""
    podman = require_podman()
    base_dir.mkdir(parents=True, exist_ok=True)
    path = base_dir / "podman.sock"
    url = f"unix://{path}"
    with (base_dir / "podman-service.log").open("ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own podman command line
            [podman, "system", "service", "--time=0", url],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - only prctl runs there
        )
    try:
        _wait_for_socket(path, process)
        log.info("podman_api_started", docker_host=url, pid=process.pid)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.info("podman_api_stopped", docker_host=url)


def require_podman() -> str:
    """The podman binary; a HarnessError says how to get it."""
    found = shutil.which("podman")
    if found is None:
        raise HarnessError(
            "`podman` is not installed, and HUB_TEST_BROKER=container needs a Docker-compatible "
            "engine: run `make kafka-image` (it installs podman and builds the image), or set "
            "DOCKER_HOST to a Docker engine."
        )
    return found


def _wait_for_socket(path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SOCKET_WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HarnessError(
                f"podman's API service exited with code {process.returncode}; see "
                f"{path.parent / 'podman-service.log'}"
            )
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(path))
            return
        time.sleep(0.05)
    raise HarnessError(f"podman's API service did not listen on {path} in {SOCKET_WAIT_S:.0f}s")


@dataclass(frozen=True)
class Engine:
    """A Docker-compatible engine, and the label value of the containers started through it."""

    docker_host: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def labels(self) -> dict[str, str]:
        """What every container started through this engine carries."""
        return {LABEL: "kafka", RUN_LABEL: self.run, OWNER_LABEL: _owner()}


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def container_engine(base_dir: Path) -> Iterator[Engine]:
    """An engine for the tests: DOCKER_HOST when set, else podman's API on a private socket.

    On the way out, containers started through it that are still there are removed, and a
    HarnessError names them: whatever starts a container must also remove it.
    """
    configure_testcontainers()
    configured = HarnessSettings().docker_host
    with contextlib.ExitStack() as stack:
        engine = Engine(configured or stack.enter_context(podman_api(base_dir)))
        remove_orphans(engine.docker_host)
        try:
            yield engine
        finally:
            left = remove_containers_of(engine)
        if left:
            raise HarnessError(f"containers left behind (now removed): {', '.join(left)}")
        ENGINE_RUNS_CHECKED.append(engine.run)


def containers_of(engine: Engine) -> list[str]:
    """Ids of the containers (running or not) started through `engine` and still there."""
    client = docker_client(engine.docker_host)
    try:
        found = client.client.containers.list(
            all=True, filters={"label": f"{RUN_LABEL}={engine.run}"}
        )
        return [str(container.id) for container in found]
    finally:
        client.client.close()


def remove_containers_of(engine: Engine) -> list[str]:
    """Remove the containers started through `engine` still there; their ids."""
    left = containers_of(engine)
    client = docker_client(engine.docker_host)
    try:
        for container_id in left:
            with contextlib.suppress(NotFound):
                client.client.containers.get(container_id).remove(force=True, v=True)
    finally:
        client.client.close()
    return left


def remove_orphans(docker_host: str) -> None:
    """Remove test brokers whose owning process on this machine is gone (it was killed)."""
    client = docker_client(docker_host)
    try:
        for container in client.client.containers.list(all=True, filters={"label": LABEL}):
            owner = str(container.labels.get(OWNER_LABEL, ""))
            hostname, _, pid = owner.rpartition(":")
            if hostname == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
                # Its owner was killed before it could remove it (a crash, a SIGKILL).
                log.warning("test_container_orphan_removed", container=container.short_id)
                with contextlib.suppress(NotFound):
                    container.remove(force=True, v=True)
    finally:
        client.client.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def container_properties(host: str, port: int, admin_password: str | None) -> dict[str, object]:
    """The harness's settings for one node, with listeners for life in a container.

    Clients reach the node at `host:port` (the port the engine mapped); the node reaches itself
    (transaction markers, for one) on a listener of its own inside the container.
    """
    node = NodeSpec(
        node_id=1, port=CLIENT_PORT, controller_port=CONTROLLER_PORT, directory=Path(DATA_DIR)
    )
    settings = node_settings(node, [node], admin_password=admin_password)
    client = "PLAINTEXT" if admin_password is None else "SASL_PLAINTEXT"
    settings.update(
        {
            "listeners": f"{client}://0.0.0.0:{CLIENT_PORT},BROKER://{HOST}:{BROKER_PORT},"
            f"CONTROLLER://{HOST}:{CONTROLLER_PORT}",
            "advertised.listeners": f"{client}://{host}:{port},BROKER://{HOST}:{BROKER_PORT}",
            "inter.broker.listener.name": "BROKER",
            "listener.security.protocol.map": f"{client}:{client},BROKER:{client},"
            f"CONTROLLER:{client}",
        }
    )
    if admin_password is not None:
        jaas = settings[f"listener.name.sasl_plaintext.{SCRAM_MECHANISM.lower()}.sasl.jaas.config"]
        settings[f"listener.name.broker.{SCRAM_MECHANISM.lower()}.sasl.jaas.config"] = jaas
    return settings


def format_arguments(cluster_id: str, scram_users: Mapping[str, str]) -> list[str]:
    """StorageTool's arguments past `format --config ...`: the cluster id, the SCRAM users."""
    arguments = ["--cluster-id", cluster_id, "--standalone"]
    for name, password in scram_users.items():
        arguments += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
    return arguments


def _tar(files: Mapping[str, str]) -> bytes:
    """A tar of `files` (name to text), in order: the entrypoint starts once `start` appears."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class ContainerKafka:
    """One KRaft node in a container of `image`, reached by clients at the host's mapped port.

    A context manager, like LocalKafka: `with ContainerKafka(engine) as kafka:` starts it
    and removes the container on exit, also when starting fails. `scram_users` (name to
    password, `admin` among them) secures it as the harness does.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        image: str = KAFKA_IMAGE,
        scram_users: Mapping[str, str] | None = None,
    ) -> None:
        if scram_users is not None and ADMIN_USER not in scram_users:
            raise ValueError(f"a secured cluster needs the user {ADMIN_USER!r}")
        self.engine = engine
        self.image = image
        self.scram_users = dict(scram_users or {})
        self.cluster_id = new_cluster_id()
        self.host = ""
        self.port = 0
        self.container_id: str | None = None
        self.image_id = ""
        self.start_seconds: float | None = None
        self._container: Any = None

    @property
    def admin(self) -> Credentials | None:
        """The super user of a secured node; None for a PLAINTEXT one."""
        password = self.scram_users.get(ADMIN_USER)
        return None if password is None else Credentials(ADMIN_USER, password)

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` as clients on this machine reach the node."""
        return f"{self.host}:{self.port}"

    def describe(self) -> str:
        """Which broker this is, for the test summary."""
        container = (self.container_id or "?")[:12]
        return (
            f"a real Apache Kafka {KAFKA_VERSION} broker (KRaft) in container {container} of "
            f"image {self.image} ({self.image_id[:12]}) at {self.bootstrap_servers}, "
            f"started in {self.start_seconds}s"
        )

    def start(self, timeout: float = 90.0) -> None:
        """Start the container, give it its configuration, wait until the node answers."""
        started = time.monotonic()
        self.image_id = self._check_image()
        container = DockerContainer(
            self.image, docker_client_kw={"environment": {"DOCKER_HOST": self.engine.docker_host}}
        ).with_kwargs(labels=self.engine.labels)
        # A free port of the host's loopback interface only: no one else needs to reach it.
        # (The Docker SDK takes an (interface, port) pair; testcontainers' annotation does not.)
        container.ports[str(CLIENT_PORT)] = (HOST, None)  # type: ignore[assignment]
        self._container = container
        atexit.register(self.stop)
        try:
            container.start()
            self.container_id = str(container.get_wrapped_container().id)
            host = str(container.get_container_host_ip())
            self.host = HOST if host == "localhost" else host  # no IPv6 detour for clients
            self.port = int(container.get_exposed_port(CLIENT_PORT))
            self._configure(container)
            self._wait_ready(container, started + timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = round(time.monotonic() - started, 2)
        log.info(
            "kafka_container_started",
            container=self.container_id[:12],
            image=self.image,
            bootstrap=self.bootstrap_servers,
            seconds=self.start_seconds,
        )

    def _check_image(self) -> str:
        client = docker_client(self.engine.docker_host)
        try:
            image = client.client.images.get(self.image)
        except ImageNotFound:
            raise HarnessError(
                f"no image {self.image} on the engine at {self.engine.docker_host}: "
                "build it with `make kafka-image`"
            ) from None
        finally:
            client.client.close()
        version = (image.labels or {}).get("org.opencontainers.image.version")
        if version != KAFKA_VERSION:
            raise HarnessError(
                f"image {self.image} holds Kafka {version}, the harness runs {KAFKA_VERSION}: "
                "build it again with `make kafka-image`"
            )
        return str(image.id).removeprefix("sha256:")

    def _configure(self, container: Any) -> None:  # noqa: ANN401 - testcontainers is untyped
        admin = self.admin
        properties = container_properties(
            self.host, self.port, None if admin is None else admin.password
        )
        files = {
            "format.args": "".join(
                f"{argument}\n" for argument in format_arguments(self.cluster_id, self.scram_users)
            ),
            "server.properties": format_properties(properties),
            "start": "",
        }
        container.get_wrapped_container().put_archive(CONFIG_DIR, _tar(files))

    def _wait_ready(self, container: Any, deadline: float) -> None:  # noqa: ANN401
        last_problem = "no answer yet"
        while True:
            wrapped = container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status != "running":
                raise HarnessError(
                    f"the Kafka container {self.container_id} exited "
                    f"({wrapped.attrs['State'].get('ExitCode')}); the end of its log:\n"
                    f"{self.log_tail()}"
                )
            answer = run_async(lambda: broker_metadata(self.host, self.port, self.admin))
            if isinstance(answer, str):
                last_problem = answer
            elif answer[0] != self.cluster_id:
                last_problem = f"cluster {answer[0]} answers, not {self.cluster_id}"
            elif 1 in answer[1]:
                return
            else:
                last_problem = "the node has not registered yet"
            if time.monotonic() >= deadline:
                raise HarnessError(
                    f"the Kafka container {self.container_id} did not become ready "
                    f"({last_problem}); the end of its log:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of the container's output (stdout and stderr)."""
        if self._container is None:
            return "(no container)"
        try:
            output = self._container.get_wrapped_container().logs(stdout=True, stderr=True)
        except APIError as error:
            return f"(no log: {error})"
        return "\n".join(output.decode(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Remove the container (by id, with its volumes); a no-op once done."""
        atexit.unregister(self.stop)
        container, self._container = self._container, None
        if container is None:
            return
        started = time.monotonic()
        with contextlib.suppress(NotFound):
            container.stop()  # removes it, forcibly: the data is thrown away anyway
        log.info(
            "kafka_container_removed",
            container=(self.container_id or "?")[:12],
            seconds=round(time.monotonic() - started, 2),
        )

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
