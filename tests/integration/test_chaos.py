"""The fault suite, bounded: whole cases on 3 nodes while a broker and services die.

`make chaos` runs the long version (10,000 cases) through the same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from hub.messages.courier import Leg
from lab.chaos import ChaosPlan, run_chaos

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

BOUNDED = ChaosPlan(cases=16, rate_per_s=4.0, kill_every_s=3.0, broker_down_s=8.0, timeout_s=300)


async def test_every_case_ends_once_through_broker_loss_sigkills_and_failing_partners(
    tmp_path: Path,
) -> None:
    report = await run_chaos(BOUNDED, tmp_path, say=lambda _line: None)
    print("\n" + "\n".join(report.lines()))  # noqa: T201 - the closing note quotes it

    assert report.broker_restarts == 1
    assert sum(report.kills.values()) >= 5
    assert report.lost == 0
    assert report.ended == {"closed": BOUNDED.cases}
    inbound = {case for case, leg in report.accepted_pickups if leg == Leg.INBOUND}
    assert len(inbound) == BOUNDED.cases  # every case was picked up ...
    assert report.duplicate_pickups == 0  # ... once per leg
    assert report.duplicate_refunds == 0
    assert report.notifications
    assert report.undelivered_notifications == 0  # every planned message was delivered ...
    assert report.duplicate_notifications == 0  # ... once
