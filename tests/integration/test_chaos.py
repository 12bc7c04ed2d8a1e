"""The fault suite, bounded: whole cases on 3 nodes while a broker and services die.

`make chaos` runs the long version (10,000 cases) through the same code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.messages.courier import Leg
from lab.chaos import ChaosPlan, run_chaos

pytestmark = pytest.mark.integration

BOUNDED = ChaosPlan(
    cases=16, rate_per_s=4.0, kill_every_s=3.0, broker_down_s=8.0, broker_stops=1, timeout_s=300
)


# The run gives up after BOUNDED.timeout_s; starting and stopping a 3-node cluster comes on top.
@pytest.mark.timeout(BOUNDED.timeout_s + 240)
async def test_every_case_ends_once_through_broker_loss_sigkills_and_failing_partners(
    tmp_path: Path,
) -> None:
    report = await run_chaos(BOUNDED, tmp_path, say=lambda _line: None)
    print("\n" + "\n".join(report.lines()))  # noqa: T201 - the closing note quotes it

    assert report.broker_restarts == 1
    assert report.lag  # the lag was watched all along
    assert report.catch_up_seconds(10_000) != [None]
    assert sum(report.kills.values()) >= 5
    assert report.lost == 0
    assert report.ended == {"closed": BOUNDED.cases}
    inbound = {case for case, leg in report.accepted_pickups if leg == Leg.INBOUND}
    assert len(inbound) == BOUNDED.cases  # every case was picked up ...
    assert report.duplicate_pickups == 0  # ... once per leg
    assert len(report.couriers_of_leg) >= BOUNDED.cases
    assert report.legs_with_two_couriers == 0  # ... by one courier
    assert report.duplicate_refunds == 0
    assert report.notifications
    assert report.undelivered_notifications == 0  # every planned message was delivered ...
    assert report.duplicate_notifications == 0  # ... once


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _descendants(pid: int) -> set[int]:
    seen: set[int] = set()
    todo = [pid]
    while todo:
        for child in _children(todo.pop()) - seen:
            seen.add(child)
            todo.append(child)
    return seen


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() + " "
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, awaiting its reaper


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_runner_leaves_no_service_or_broker_behind(
    tmp_path: Path, how: signal.Signals
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "KAFKA_"))}
    environment["PYTHONPATH"] = str(Path(__file__).parents[2] / "services")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environment["TMPDIR"] = str(scratch)
    command = [sys.executable, "-m", "lab", "chaos", "--cases", "2", "--rate", "0.5"]
    command += ["--kill-every", "600", "--broker-down", "1", "--timeout", "300"]
    runner = subprocess.Popen(  # noqa: S603 - our own lab
        command, cwd=tmp_path, env=environment,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        children: set[int] = set()
        while time.monotonic() < deadline:
            children = _descendants(runner.pid)
            lines = [_command_line(pid) for pid in children]
            brokers = sum("kafka.Kafka" in line for line in lines)
            services = sum(" run " in line for line in lines)
            if brokers == 3 and services >= 8:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the runner never started its cluster and services: {len(children)}")
    finally:
        # SIGKILL: no handler, no cleanup of its own; the children die with it all the same.
        runner.send_signal(how)
        runner.wait(timeout=120)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.2)
    assert [pid for pid in children if _alive(pid)] == []
    if how is signal.SIGTERM:
        # Stopped as by Ctrl-C: its work directory (broker logs, state) is gone too.
        assert list(scratch.iterdir()) == []
