"""Debian's Prometheus for tests: promtool, and a private server scraping a test's service."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Self

import pytest

from hub.core.settings import HarnessSettings

ROOT = Path(__file__).resolve().parents[2]
ENSURE = ROOT / "deploy" / "prometheus" / "ensure-prometheus.sh"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
ENSURE_TIMEOUT_S = 600


def prometheus_bin() -> Path:
    """HUB_TEST_PROMETHEUS_DIR (set by `make test`), else what the ensure script installs."""
    configured = HarnessSettings().test_prometheus_dir
    if configured:
        return Path(configured)
    result = subprocess.run(  # noqa: S603 - our own script, no user input
        ["bash", str(ENSURE)],  # noqa: S607 - bash from PATH, as make runs it
        capture_output=True, text=True, check=False, timeout=ENSURE_TIMEOUT_S,
    )  # fmt: skip
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(
            f"no Prometheus ({ENSURE} exited {result.returncode}):\n{result.stderr[-4000:]}"
        )
    return Path(result.stdout.strip())


def get_json(url: str, timeout_s: float = 5.0) -> Any:
    """GET `url` and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - local test URL
        return json.loads(response.read())


class PrometheusServer:
    """A Prometheus server of its own: scrapes `target` every second, evaluates alerts.yml."""

    def __init__(self, workdir: Path, target: str, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._workdir = workdir
        self._port = port
        self._target = target
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self._workdir.mkdir(parents=True, exist_ok=True)
        config = self._workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            "scrape_configs:\n  - job_name: hub\n"
            f"    static_configs:\n      - targets: ['{self._target}']\n"
        )
        self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
            [
                str(prometheus_bin() / "prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self._workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self._port}",
            ],
            stdout=(self._workdir / "prometheus.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                get_json(f"{self.url}/api/v1/status/buildinfo", timeout_s=1)
            except OSError:
                time.sleep(0.3)
            else:
                return self
        raise AssertionError(f"Prometheus did not start: {self.log()[-2000:]}")

    def __exit__(self, *_exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)

    def log(self) -> str:
        """The server's own output."""
        return (self._workdir / "prometheus.log").read_text(errors="replace")

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts as the API reports them now."""
        body = get_json(f"{self.url}/api/v1/alerts")
        alerts: list[dict[str, Any]] = body["data"]["alerts"]
        return alerts

    def targets_up(self) -> bool:
        """Whether the one target was scraped successfully."""
        active = get_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"]
        return bool(active) and all(target["health"] == "up" for target in active)
