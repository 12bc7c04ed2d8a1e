"""A whole demo run, logging at DEBUG, writes no customer's name, phone or street."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hub.core.logging import PHONE
from lab.demo import demo_requests

if TYPE_CHECKING:
    from hub.messages.storefront import AfterSalesRequestedV2

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).parents[2] / "services"


def private_values() -> set[str]:
    """Every name, phone and street the demo's customers gave."""
    values: set[str] = set()
    for request in demo_requests():
        customer: AfterSalesRequestedV2 = request  # type: ignore[assignment]
        values |= {customer.customer.name, customer.customer.phone, customer.address.street}
    return values


def test_a_full_demo_run_logs_no_unmasked_personal_data(tmp_path: Path) -> None:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("HUB_", "KAFKA_"))
    }
    environment |= {
        "HUB_LOG_LEVEL": "DEBUG",
        "HUB_LOG_FORMAT": "json",
        "HUB_STATE_DIR": str(tmp_path / "state"),
        "PYTHONPATH": str(SERVICES),  # the lab runs from the source tree, as `make demo` does
    }
    run = subprocess.run(
        [sys.executable, "-m", "lab", "demo"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    # The data did flow: the customers' names are in the messages the demo shows them.
    private = private_values()
    assert any(value in run.stdout for value in private)

    lines = run.stderr.splitlines()
    events = [json.loads(line) for line in lines]  # every log line is structured
    assert sum(event["event"] == "message_handled" for event in events) >= 100
    leaks = [line for line in lines if any(value in line for value in private)]
    assert leaks == []
    assert [line for line in lines if PHONE.search(line)] == []
