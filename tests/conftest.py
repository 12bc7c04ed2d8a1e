"""Shared fixtures: one real Kafka broker per test session, settings, unique names, a consumer."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hub.core.logging import configure_logging
from hub.core.settings import HubSettings
from lab.harness.bootstrap import BROKER_IN_USE, kafka_for_tests, session_notes

sys.path.insert(0, str(Path(__file__).parent / "support"))

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

configure_logging("INFO", "console")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real broker: the local harness, a container or a running cluster (HUB_TEST_BROKER)."""
    with kafka_for_tests(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture
def unique() -> str:
    """A short unique token for topic and group names, so tests never see each other's data."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def make_settings(kafka_bootstrap: str, tmp_path: Path) -> Callable[..., HubSettings]:
    """Settings for a test: the session broker, a private state dir, fast retry tiers."""

    def make(**overrides: object) -> HubSettings:
        values: dict[str, object] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "state_dir": str(tmp_path / "state"),
            "retry_tiers": ("1s", "2s"),
            "inline_attempts": 2,
            "inline_backoff_s": 0.05,
            "inline_deadline_s": 1.0,
            "max_attempts": 6,
            "shutdown_grace_s": 5.0,
            "code_version": "test",
            "log_format": "console",
        }
        values.update(overrides)
        return HubSettings.model_validate(values)

    return make


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which broker the integration tests ran against: never an in-memory fake."""
    for broker in BROKER_IN_USE:
        terminalreporter.write_line(f"integration tests ran against {broker}")
    for note in session_notes():
        terminalreporter.write_line(note)
