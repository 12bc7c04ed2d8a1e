"""The tracker on a real broker: snapshots, ordering and duplicates, SLA clocks, statistics."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kafka_io import create_topics, publish, read_records, settle_and_read
from tracker_cases import (
    accepted,
    closed,
    opened,
    rated,
    received,
    repair_life,
    requested,
    tracking,
)

from hub.core.envelope import Envelope
from hub.core.outbound import event_record
from hub.core.service import ServiceRuntime
from hub.core.topics import CASE_STATUS, CASES, NOTIFICATION_REQUESTS, Subscription
from hub.messages import CATALOGUE
from hub.messages.cases import TrackingStatus
from hub.messages.tracker import CaseStatusV1, ComplaintEscalatedV1
from tracker.domain import RANK, Status, business_time
from tracker.service import build_service
from tracker.sla import OpsRecipient, SlaTable, Thresholds

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiokafka import ConsumerRecord

    from hub.core.outbound import OutRecord
    from hub.core.registry import Event
    from hub.core.settings import HubSettings

pytestmark = pytest.mark.integration

S = timedelta(seconds=1)
H = timedelta(hours=1)
FAST = SlaTable(
    ops=OpsRecipient(address="ops@test.local"),
    default=Thresholds(pickup=(4 * S, 8 * S), repair=(H, 2 * H), turnaround=(H, 2 * H)),
)
"""Pickup escalates after 4 s and 8 s: short enough to watch, long enough to restart in between."""
HOURS = SlaTable(
    ops=OpsRecipient(address="ops@test.local"),
    default=Thresholds(pickup=(H, 3 * H), repair=(24 * H, 48 * H), turnaround=(72 * H, 144 * H)),
)
"""Thresholds in hours: seeded cases are judged by their own event times, never by a timer."""


class Tracker:
    """The tracker group running on the broker; restarted on the same state like a redeploy."""

    def __init__(self, settings: HubSettings, sla: SlaTable, group: str) -> None:
        self.settings = settings
        self.service = build_service(settings, sla, group=group)
        self.runtime: ServiceRuntime | None = None

    async def start(self) -> None:
        # Its outputs as its declaration routes them (the case-status topic is the tracker's).
        await create_topics(
            self.settings,
            [Subscription(self.service.group, self.service.all_inputs)],
            self.service.outputs,
        )
        self.runtime = ServiceRuntime(self.service, self.settings, registry=CATALOGUE)
        await self.runtime.start()

    async def stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
            self.runtime = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


def record_of(
    event: Event, *, time: datetime | None = None, event_id: str | None = None
) -> OutRecord:
    case_id = str(getattr(event, "case_id", ""))
    return event_record(
        CASES,
        event,
        key=case_id,
        source="urn:test:cases",
        time=time or business_time(event, datetime.now(UTC)),
        event_id=event_id,
    )


def keyed(*case_ids: str) -> Callable[[ConsumerRecord[bytes, bytes]], bool]:
    keys = {case_id.encode() for case_id in case_ids}
    return lambda record: record.key in keys


def typed(ce_type: str, *case_ids: str) -> Callable[[ConsumerRecord[bytes, bytes]], bool]:
    keys = {case_id.encode() for case_id in case_ids}
    return lambda record: (
        record.key in keys and Envelope.from_headers(record.headers).type == ce_type
    )


def snapshot(record: ConsumerRecord[bytes, bytes]) -> CaseStatusV1:
    return CaseStatusV1.model_validate_json(record.value or b"{}")


def at_seq(case_id: str, seq: int) -> Callable[[ConsumerRecord[bytes, bytes]], bool]:
    """The snapshot of `case_id` numbered `seq`: its `seq`-th change, whichever came out before.

    A unit of work produces only a case's latest snapshot (the topic is compacted), so how
    many of the earlier ones appear depends on how the polls fell.
    """
    return lambda record: keyed(case_id)(record) and snapshot(record).seq == seq


async def test_events_fold_in_order_without_duplicates_or_moving_back(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings()
    tracker = Tracker(settings, FAST, f"tracker-{unique}")
    case_id = f"AS-ORDER-{unique}"
    t0 = datetime.now(UTC)
    transit = tracking(case_id, t0 + 2 * S, TrackingStatus.IN_TRANSIT, event_id="E2")
    repeat = record_of(transit, event_id=f"redelivered-{unique}")
    late = tracking(case_id, t0 + 3 * S, TrackingStatus.OUT_FOR_DELIVERY, event_id="E3")
    records = [
        record_of(opened(case_id, t0)),
        record_of(requested(case_id, t0)),
        record_of(accepted(case_id, t0)),
        record_of(transit),
        record_of(tracking(case_id, t0 + S, TrackingStatus.PICKED_UP, event_id="E1")),
        repeat,  # the same record delivered twice (same ce_id)
        repeat,
        record_of(transit.model_copy(update={"location": "重复推送"})),  # a courier re-push
        record_of(received(case_id, t0 + 4 * S)),
        record_of(late),  # a scan from before the receipt, arriving after it
    ]
    await tracker.start()
    try:
        await publish(settings, records)
        found = await read_records(settings.kafka_bootstrap_servers, CASE_STATUS, count=1,
                                   match=at_seq(case_id, 7))  # fmt: skip
        assert len(found) == 1
        await asyncio.sleep(1.5)  # room for a wrong extra snapshot to appear
        every = await settle_and_read(settings.kafka_bootstrap_servers, CASE_STATUS, quiet_s=0.5)
        snapshots = [snapshot(r) for r in every if keyed(case_id)(r)]
    finally:
        await tracker.stop()
    seqs = [s.seq for s in snapshots]
    assert seqs == sorted(set(seqs))
    assert seqs[-1] == 7
    ranks = [RANK[Status(s.status)] for s in snapshots]
    assert ranks == sorted(ranks)  # never backwards
    final = snapshots[-1]
    assert final.status == Status.RECEIVED
    assert [(e.kind, e.status, e.applied) for e in final.timeline] == [
        ("case.opened", "approved", True),
        ("pickup.requested", "pickup_requested", True),
        ("pickup.accepted", "pickup_scheduled", True),
        ("tracking.updated", "in_transit", True),
        ("tracking.updated", "in_transit", False),  # picked_up after in_transit: recorded only
        ("repair.item-received", "received", True),
        ("tracking.updated", "received", False),
    ]
    assert final.milestones["picked_up"] == t0 + S  # the earliest scan, though it came late


async def test_an_sla_breach_escalates_once_per_level_across_restarts(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings()
    tracker = Tracker(settings, FAST, f"tracker-{unique}")
    late, on_time = f"AS-LATE-{unique}", f"AS-ONTIME-{unique}"
    t0 = datetime.now(UTC)
    await tracker.start()
    try:
        await publish(settings, [
            record_of(opened(late, t0)), record_of(requested(late, t0)),
            record_of(opened(on_time, t0)), record_of(requested(on_time, t0)),
            record_of(tracking(on_time, t0 + S, TrackingStatus.PICKED_UP)),
        ])  # fmt: skip
        armed = await read_records(settings.kafka_bootstrap_servers, CASE_STATUS, count=2,
                                   match=keyed(late))  # fmt: skip
        assert len(armed) == 2
        await tracker.restart()  # the checks were scheduled by the first instance
        breached = typed("aftersales.sla.breached.v1", late, on_time)
        first = await read_records(settings.kafka_bootstrap_servers, CASES, count=1,
                                   match=breached)  # fmt: skip
        assert len(first) == 1
        await tracker.restart()
        both = await read_records(settings.kafka_bootstrap_servers, CASES, count=2,
                                  match=breached)  # fmt: skip
        assert len(both) == 2
        await asyncio.sleep(2)  # room for a repeated escalation to appear
        everything = await settle_and_read(settings.kafka_bootstrap_servers, CASES, quiet_s=0.5)
        alerts = await settle_and_read(
            settings.kafka_bootstrap_servers, NOTIFICATION_REQUESTS, quiet_s=0.5
        )
    finally:
        await tracker.stop()
    breaches = [json.loads(r.value or b"{}") for r in everything if breached(r)]
    assert [(b["case_id"], b["clock"], b["level"]) for b in breaches] == [
        (late, "pickup", 1),
        (late, "pickup", 2),
    ]
    assert [b["threshold_s"] for b in breaches] == [4.0, 8.0]
    ops = [json.loads(r.value or b"{}") for r in alerts if keyed(late, on_time)(r)]
    assert [(o["dedupe_key"], o["address"]) for o in ops] == [
        (f"{late}:sla_pickup_l1:email", "ops@test.local"),
        (f"{late}:sla_pickup_l2:email", "ops@test.local"),
    ]


# courier, refused first by, fault type, window end, picked up, received, completed, delivered,
# score: hours after the case opened.
SEED: list[tuple[str, str | None, str, float, float, float, float, float, int | None]] = [
    ("jd", None, "screen_defect", 2, 1.5, 20, 44, 70, 5),
    ("jd", "yd", "battery", 2, 4.0, 22, 50, 80, 4),
    ("sf", None, "screen_defect", 3, 3.5, 18, 60, 90, 3),
    ("sf", "jd", "mainboard", 1, 5.5, 30, 100, 130, None),
    ("yd", None, "battery", 2, 2.5, 16, 40, 66, 5),
    ("jd", None, "screen_defect", 4, 3.0, 25, 70, 95, 2),
    ("sf", None, "water_damage", 2, 6.0, 26, 90, 120, 1),
]


def nearest_rank(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(len(ordered) * p / 100) - 1]


async def test_statistics_equal_figures_computed_from_the_seed(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings()
    tracker = Tracker(settings, HOURS, f"tracker-{unique}")
    # A time range of this run's own, on a broker that may hold other runs' cases.
    base = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=int(unique, 16) % 500_000)
    ids = [f"AS-STATS-{unique}-{n}" for n in range(len(SEED))]
    events: list[Event] = []
    for n, (courier, refuser, fault, window, picked, got, fixed, back, score) in enumerate(SEED):
        events += repair_life(ids[n], base + n * H, courier=courier, rejected_by=refuser,
                              fault_type=fault, window_end_h=window, picked_h=picked,
                              received_h=got, completed_h=fixed, delivered_h=back,
                              score=score)  # fmt: skip
    still_open, outside = f"AS-STATS-{unique}-open", f"AS-STATS-{unique}-before"
    events += [
        opened(still_open, base + 7 * H, fault="screen_flicker"),
        requested(still_open, base + 7 * H, "jd"),
        opened(outside, base - H, fault="no_power"),
    ]
    await tracker.start()
    try:
        # Published now, about times long past: only the events' own times decide the figures.
        now = datetime.now(UTC)
        await publish(settings, [record_of(event, time=now) for event in events])
        all_ids = [*ids, still_open, outside]
        changes = Counter(str(getattr(event, "case_id", "")) for event in events)
        for case_id, seq in changes.items():  # each event a change: all read once the last is
            done = await read_records(settings.kafka_bootstrap_servers, CASE_STATUS, count=1,
                                      match=at_seq(case_id, seq))  # fmt: skip
            assert len(done) == 1, case_id
        assert set(changes) == set(all_ids)
        command = [str(Path(sys.executable).parent / "hub"), "stats", "--json",
                   "--since", base.isoformat(), "--until", (base + 8 * H).isoformat()]  # fmt: skip
        env = {**os.environ, "HUB_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
               "HUB_LOG_LEVEL": "WARNING"}  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
    finally:
        await tracker.stop()
    stats: dict[str, Any] = json.loads(out)
    assert stats["cases"] == len(SEED) + 1
    assert stats["by_status"] == {"closed": len(SEED), "pickup_requested": 1}
    assert stats["fault_types"] == dict(Counter([row[2] for row in SEED] + ["screen_flicker"]))
    # Sums of money as exact text; none of these cases was refunded at pickup.
    assert stats["express_refunds"] == {
        "count": 0, "amount": "0.00", "clawbacks": 0, "clawback_amount": "0.00",
        "clawback_rate": None, "clawback_reasons": {},
    }  # fmt: skip

    stages = {
        "pickup": [row[4] for row in SEED],
        "inbound_transit": [row[5] - row[4] for row in SEED],
        "repair": [row[6] - row[5] for row in SEED],
        "return": [row[7] - row[6] for row in SEED],
        "total": [row[7] for row in SEED],
    }
    for stage, hours in stages.items():
        seconds = [h * 3600 for h in hours]
        assert stats["stages"][stage] == {
            "cases": len(SEED),
            "p50_s": pytest.approx(nearest_rank(seconds, 50)),
            "p90_s": pytest.approx(nearest_rank(seconds, 90)),
        }, stage

    for code in ("jd", "sf", "yd"):
        mine = [row for row in SEED if row[0] == code]
        refused = sum(1 for row in SEED if row[1] == code)
        orders = 2 * len(mine) + refused + (code == "jd")  # in and out; refusals; the open case
        delays = [max(0.0, row[4] - row[3]) * 3600 for row in mine]
        expected = {
            "orders": orders,
            "accepted": 2 * len(mine),
            "acceptance_rate": pytest.approx(2 * len(mine) / orders),
            "pickups": len(mine),
            "pickup_delay_p50_s": pytest.approx(nearest_rank(delays, 50)),
            "pickup_delay_p90_s": pytest.approx(nearest_rank(delays, 90)),
            "sla_breaches": sum(1 for row in mine if row[4] - row[3] >= 1),
        }
        assert stats["couriers"][code] == expected, code

    scores = [row[8] for row in SEED if row[8] is not None]
    assert stats["ratings"] == {
        "count": len(scores),
        "mean": round(sum(scores) / len(scores), 2),
        "by_score": {str(score): count for score, count in sorted(Counter(scores).items())},
    }
    assert stats["sla_breaches"] == {
        "pickup": sum(1 for row in SEED if row[4] - row[3] >= 1),
        "repair": sum(1 for row in SEED if row[6] - row[5] >= 24),
        "turnaround": sum(1 for row in SEED if row[7] >= 72),
        "parts": 0,  # no seeded case waits for parts
    }


async def test_ratings_count_only_for_closed_cases_and_complaints_go_to_arbitration(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings()
    tracker = Tracker(settings, FAST, f"tracker-{unique}")
    case_id = f"AS-RATED-{unique}"
    t0 = datetime.now(UTC)
    complaint = ComplaintEscalatedV1(case_id=case_id, complaint="客服不回复", escalated_at=t0 + S)
    await tracker.start()
    try:
        await publish(settings, [
            record_of(opened(case_id, t0)),
            record_of(rated(case_id, t0 + S, 1)),  # too early: the case is not closed
            record_of(complaint),
            record_of(closed(case_id, t0 + 2 * S)),
            record_of(rated(case_id, t0 + 3 * S, 4, "还行")),
            record_of(rated(case_id, t0 + 4 * S, 5)),  # a second rating is refused too
        ])  # fmt: skip
        found = await read_records(settings.kafka_bootstrap_servers, CASE_STATUS, count=6,
                                   match=keyed(case_id))  # fmt: skip
        refused = typed("aftersales.rating.rejected.v1", case_id)
        refusals = await read_records(settings.kafka_bootstrap_servers, CASES, count=2,
                                      match=refused)  # fmt: skip
    finally:
        await tracker.stop()
    final = snapshot(found[-1])
    assert (final.seq, final.status, final.in_arbitration) == (6, "closed", True)
    assert final.rating is not None
    assert (final.rating.score, final.rating.comment) == (4, "还行")
    assert [json.loads(r.value or b"{}")["status"] for r in refusals] == ["approved", "closed"]
    assert [(e.kind, e.applied) for e in final.timeline] == [
        ("case.opened", True),
        ("rating.rejected", False),
        ("complaint.escalated", True),
        ("case.closed", True),
        ("rating.recorded", True),
        ("rating.rejected", False),
    ]
