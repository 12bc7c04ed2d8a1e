"""Podman for the container tests: the product image, and containers stopped by their ids."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib.metadata import version
from typing import Any

import pytest

IMAGE = f"localhost/aftersales-hub:{version('aftersales-hub')}"
"""What `make image` tags."""


def podman(*args: str, timeout_s: float = 120.0, check: bool = True) -> str:
    """Run podman; its stdout. A failure says the command and podman's last words."""
    done = subprocess.run(  # noqa: S603 - podman with our own arguments
        ["podman", *args],  # noqa: S607 - podman from PATH, like the Makefile
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed: {done.stderr[-2000:]}")
    return done.stdout


def require_image() -> str:
    """The image, or a skip saying how to get it (`make test` builds it first)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (make podman)")
    if subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode != 0:  # noqa: S603, S607
        pytest.skip(f"{IMAGE} is not built (make image)")
    return IMAGE


def logs(container: str) -> str:
    """Everything a container wrote, stdout and stderr."""
    done = subprocess.run(  # noqa: S603
        ["podman", "logs", container],  # noqa: S607
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    return done.stdout + done.stderr


def exists(kind: str, identifier: str) -> bool:
    """Whether the `kind` (`container` or `pod`) with this id is still there."""
    done = subprocess.run(  # noqa: S603
        ["podman", kind, "exists", identifier],  # noqa: S607
        capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    return done.returncode == 0


def container_ids(**labels: str) -> list[str]:
    """Ids of every container, running or not, that carries all of `labels`."""
    filters = [f"--filter=label={key}={value}" for key, value in labels.items()]
    return podman("ps", "--all", "--quiet", "--no-trunc", *filters).split()


def inspect(container: str) -> dict[str, Any]:
    """`podman inspect` of one container."""
    (found,) = json.loads(podman("inspect", container))
    return dict(found)
