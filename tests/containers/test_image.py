"""The product image: the wheel only, non-root, `hub` as its entrypoint, a health check."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest
from podman import podman, require_image

pytestmark = pytest.mark.containers


def run(image: str, *command: str, entrypoint: str | None = None) -> str:
    override = ["--entrypoint", entrypoint] if entrypoint else []
    return podman("run", "--rm", "--network", "none", *override, image, *command)


def test_hub_is_the_entrypoint_and_runs_as_a_non_root_user() -> None:
    image = require_image()
    assert run(image, "--version") == f"hub {version('aftersales-hub')}\n"
    config = json.loads(podman("image", "inspect", image))[0]["Config"]
    assert config["Entrypoint"] == ["hub"]
    assert config["User"] == "10001:10001"
    assert "HUB_HTTP_PORT=9464" in config["Env"]
    assert f"HUB_CODE_VERSION={version('aftersales-hub')}" in config["Env"]


def test_the_image_carries_the_product_and_its_data_but_not_the_lab_and_runs_unprivileged() -> None:
    image = require_image()
    probe = (
        "import os, importlib.util as u, dispatch.partners as p, hub; "
        "print(os.getuid(), os.getgid(), u.find_spec('lab'), u.find_spec('simulators'), "
        "len(p.load_partners().couriers), hub.__file__.startswith('/opt/hub/'))"
    )
    assert run(image, "-c", probe, entrypoint="python").split() == [
        "10001", "10001", "None", "None", "3", "True"
    ]  # fmt: skip
    assert "OK, " in run(image, "schemas", "check")
    # Every declaration builds from the data the image carries (the express-refund policy once
    # missed it, and every `hub run` failed at start).
    declared = (
        "from hub.bootstrap import declarations; from hub.core.settings import HubSettings; "
        "print(len(declarations(HubSettings(kafka_bootstrap_servers='kafka:9092'))))"
    )
    assert run(image, "-c", declared, entrypoint="python").strip() == "11"


def test_the_health_check_asks_healthz_on_the_http_port() -> None:
    image = require_image()
    (inspected,) = json.loads(podman("image", "inspect", image))
    test = inspected["Healthcheck"]["Test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "/healthz" in test[3]
    assert "HUB_HTTP_PORT" in test[3]
