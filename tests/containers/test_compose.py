"""deploy/compose.yaml under podman-compose: it parses, and its services run from the image."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import yaml
from podman import exists, podman, require_image

from hub.bootstrap import declarations
from hub.core.settings import HubSettings
from lab.harness.kafka import free_ports

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
PODMAN_COMPOSE = Path(sys.executable).parent / "podman-compose"


def compose(project: str, *args: str, files: tuple[Path, ...] = (COMPOSE,), **env: str) -> str:
    """Run podman-compose on `files` as project `project`; its stdout."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (make podman)")
    command = [str(PODMAN_COMPOSE), "-p", project]
    for file in files:
        command += ["-f", str(file)]
    done = subprocess.run(  # noqa: S603 - our own tool on our own files
        [*command, *args], capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def project_containers(project: str) -> list[str]:
    label = f"label=io.podman.compose.project={project}"
    return podman("ps", "--all", "--quiet", "--no-trunc", "--filter", label).split()


def project_volumes(project: str) -> list[str]:
    return [v for v in podman("volume", "ls", "--quiet").split() if v.startswith(f"{project}_")]


@pytest.fixture
def project() -> Iterator[str]:
    """A project name of this test's own; whatever carries it is removed by id afterwards."""
    name = f"hubtest-{uuid.uuid4().hex[:8]}"
    yield name
    # A few rounds: a container its restart policy brings back while being removed survives one.
    for _ in range(3):
        for container in project_containers(name):
            podman("rm", "--force", "--time", "20", container, check=False, timeout_s=60)
    for volume in project_volumes(name):
        podman("volume", "rm", "--force", volume, check=False)
    assert project_containers(name) == []


def test_the_compose_file_is_valid_for_podman_compose(project: str) -> None:
    config = yaml.safe_load(compose(project, "config", HUB_KAFKA_BOOTSTRAP_SERVERS="k:9092"))
    groups = {d.group for d in declarations(HubSettings())}
    # `kafka` is in the `kafka` profile, which config leaves out unless asked for.
    assert set(config["services"]) == {*groups, "topics"}
    intake = config["services"]["intake"]
    assert intake["image"] == "aftersales-hub:0.1.0"
    assert intake["environment"]["HUB_KAFKA_BOOTSTRAP_SERVERS"] == "k:9092"
    assert intake["environment"]["HUB_DATABASE_URL"] is None


async def test_compose_up_applies_the_topics_then_runs_intake_healthy(
    broker: str, project: str, tmp_path: Path
) -> None:
    image = require_image()
    (port,) = free_ports(1)
    # The host's network: the harness broker advertises 127.0.0.1. Nothing else is changed.
    override = tmp_path / "host-network.yaml"
    override.write_text(yaml.safe_dump({"services": {
        "topics": {"network_mode": "host"},
        "intake": {"network_mode": "host", "environment": {"HUB_HTTP_PORT": str(port)}},
    }}), encoding="utf-8")  # fmt: skip
    files = (COMPOSE, override)
    environment = {"HUB_KAFKA_BOOTSTRAP_SERVERS": broker, "AFTERSALES_HUB_IMAGE": image}
    compose(project, "up", "-d", "intake", files=files, **environment)

    ready: dict[str, object] = {}
    async with httpx.AsyncClient(timeout=3.0) as client:
        for _ in range(90):
            try:
                ready = (await client.get(f"http://127.0.0.1:{port}/readyz")).json()
            except httpx.TransportError:
                ready = {}
            if ready.get("ready"):
                break
            await asyncio.sleep(1.0)
    assert ready == {"ready": True, "checks": {"consuming": True, "store": True, "broker": True}}

    containers = {
        podman("inspect", "--format", "{{.Name}}", c).strip(): c
        for c in project_containers(project)
    }
    assert sorted(containers) == [f"{project}_intake_1", f"{project}_topics_1"]
    topics = containers[f"{project}_topics_1"]
    assert podman("inspect", "--format", "{{.State.ExitCode}}", topics).strip() == "0"
    assert "created       storefront.aftersales.requests" in podman("logs", topics)
    # The image's own HEALTHCHECK (python asking /healthz), run on demand: exit 0 is healthy.
    podman("healthcheck", "run", containers[f"{project}_intake_1"])

    compose(project, "down", "--volumes", files=files, **environment)
    assert [c for c in containers.values() if exists("container", c)] == []
    assert project_volumes(project) == []
