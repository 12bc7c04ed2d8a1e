"""Spare parts as the tracker, `hub stats` and notify see them: waiting for parts, its clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tracker_cases import accepted, closed, diagnosed, opened, received, requested, tracking

from hub.messages.cases import CaseOpenedV1, TrackingStatus
from hub.messages.common import Channel
from hub.messages.parts import (
    GiveUpReason,
    PartLine,
    PartsGivenUpV1,
    PartsRequestedV1,
    PartsReservedV1,
    PartsShortageV1,
)
from hub.messages.repair import NotificationRequestedV1, ReplacementIssuedV1
from hub.messages.tracker import CaseStatusV1, SlaBreachedV1, SlaCheckDueV1, SlaClock
from intake.domain import decide
from lab.samples import sample_request
from notify.domain import plan
from tracker.domain import CaseRecord, Status, business_time, fold
from tracker.sla import OpsRecipient, SlaTable, Thresholds, load_sla
from tracker.stats import compute_stats

if TYPE_CHECKING:
    from hub.core.handler import Emit
    from hub.core.registry import Event

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
SLA = SlaTable(
    ops=OpsRecipient(address="ops@example.com"),
    default=Thresholds(
        pickup=(1 * H, 3 * H), repair=(100 * H, 200 * H), turnaround=(480 * H, 960 * H),
        parts=(24 * H, 48 * H),
    ),
)  # fmt: skip
SCREEN = (PartLine(part_no="LCD-X1-OLED"),)


def at(hours: float) -> datetime:
    return T0 + hours * H


def parts_requested(case_id: str, hours: float) -> PartsRequestedV1:
    return PartsRequestedV1(
        case_id=case_id, reservation_id=f"{case_id}-P", supplier="bjzx", parts=SCREEN,
        requested_at=at(hours),
    )  # fmt: skip


def shortage(case_id: str, hours: float) -> PartsShortageV1:
    return PartsShortageV1(
        case_id=case_id, reservation_id=f"{case_id}-P", missing=SCREEN,
        expected_on=date(2026, 12, 3), reported_at=at(hours),
    )  # fmt: skip


def reserved(case_id: str, hours: float, *, after_shortage: bool = True) -> PartsReservedV1:
    return PartsReservedV1(
        case_id=case_id, reservation_id=f"{case_id}-P", after_shortage=after_shortage,
        reserved_at=at(hours),
    )  # fmt: skip


def given_up(case_id: str, hours: float) -> PartsGivenUpV1:
    return PartsGivenUpV1(
        case_id=case_id, reservation_id=f"{case_id}-P", reason=GiveUpReason.WAIT_EXCEEDED,
        detail="parts did not arrive in time", given_up_at=at(hours),
    )  # fmt: skip


def until_diagnosed(case_id: str) -> list[Event]:
    return [
        opened(case_id, at(0)), requested(case_id, at(0.1)), accepted(case_id, at(0.2)),
        tracking(case_id, at(1), TrackingStatus.PICKED_UP),
        tracking(case_id, at(2), TrackingStatus.DELIVERED), received(case_id, at(3)),
        diagnosed(case_id, at(4), "screen_cracked"),
    ]  # fmt: skip


class Folded:
    def __init__(self) -> None:
        self.state: CaseRecord | None = None
        self.emits: list[Emit] = []

    def feed(self, *events: Event, now: datetime | None = None) -> Folded:
        for event in events:
            result = fold(event, self.state, now or business_time(event, T0), SLA)
            self.emits += result.decision.emits
            if result.decision.state is not None:
                self.state = result.decision.state
        return self

    @property
    def snapshot(self) -> CaseStatusV1:
        assert self.state is not None
        return self.state.snapshot

    def of(self, kind: type[Any]) -> list[Any]:
        return [emit.event for emit in self.emits if isinstance(emit.event, kind)]


def test_a_shortage_puts_the_case_in_waiting_for_parts_until_they_arrive() -> None:
    case = "AS-PARTS-1"
    run = Folded().feed(*until_diagnosed(case), parts_requested(case, 4.1), shortage(case, 4.2))
    assert run.snapshot.status == Status.WAITING_FOR_PARTS
    (clock,) = [c for c in run.snapshot.clocks if c.clock is SlaClock.PARTS]
    assert (clock.started_at, clock.stopped_at) == (at(4.2), None)
    checks = [e for e in run.of(SlaCheckDueV1) if e.clock is SlaClock.PARTS]
    assert [check.level for check in checks] == [1, 2]
    run.feed(reserved(case, 10))
    assert run.snapshot.status == Status.REPAIRING
    entries = [(e.kind, e.status, e.detail) for e in run.snapshot.timeline if "parts" in e.kind]
    assert entries == [
        ("parts.requested", "repairing", "LCD-X1-OLED x1 from bjzx"),
        ("parts.shortage", "waiting_for_parts", "short of LCD-X1-OLED, expected 2026-12-03"),
        ("parts.reserved", "repairing", "parts arrived"),
    ]
    (clock,) = [c for c in run.snapshot.clocks if c.clock is SlaClock.PARTS]
    assert clock.stopped_at == at(10)
    assert clock.breached_levels == ()
    assert {"parts_requested", "parts_short", "parts_reserved"} <= set(run.snapshot.milestones)


def test_a_long_wait_for_parts_escalates_on_its_own_clock() -> None:
    case = "AS-PARTS-2"
    run = Folded().feed(*until_diagnosed(case), parts_requested(case, 4.1), shortage(case, 5))
    check = SlaCheckDueV1(case_id=case, clock=SlaClock.PARTS, level=1, due_at=at(5 + 25))
    run.feed(check, now=at(30))
    (breach,) = run.of(SlaBreachedV1)
    assert (breach.clock, breach.level, breach.elapsed_s) == (SlaClock.PARTS, 1, 25 * 3600)
    run.feed(given_up(case, 60))
    levels = [(b.clock, b.level) for b in run.of(SlaBreachedV1)]
    assert levels == [(SlaClock.PARTS, 1), (SlaClock.PARTS, 2)]  # judged when it stopped
    replaced = ReplacementIssuedV1(case_id=case, sku="SKU-PHONE-001", issued_at=at(60))
    run.feed(replaced)
    assert run.snapshot.status == Status.REPLACING


def test_hub_stats_counts_reservations_shortages_waiting_cases_and_the_wait() -> None:
    quick, slow, waiting, in_stock = (Folded() for _ in range(4))
    quick.feed(*until_diagnosed("A"), parts_requested("A", 4), shortage("A", 5), reserved("A", 15))
    slow.feed(*until_diagnosed("B"), parts_requested("B", 4), shortage("B", 5),
              given_up("B", 35), closed("B", at(80), "replaced"))  # fmt: skip
    waiting.feed(*until_diagnosed("C"), parts_requested("C", 4), shortage("C", 6))
    in_stock.feed(*until_diagnosed("D"), parts_requested("D", 4),
                  reserved("D", 4.5, after_shortage=False))  # fmt: skip
    stats = compute_stats(run.snapshot for run in (quick, slow, waiting, in_stock))
    parts = stats.parts
    assert (parts.reservations, parts.shortages, parts.waiting, parts.replaced) == (4, 3, 1, 1)
    assert (parts.wait_p50_s, parts.wait_p90_s) == (10 * 3600, 30 * 3600)
    assert stats.by_status["waiting_for_parts"] == 1
    assert "parts" in stats.sla_breaches


def test_the_customer_hears_of_the_shortage_and_of_the_parts_arriving_not_of_stock() -> None:
    request = sample_request(2, now=T0)
    customer = request.customer.model_copy(update={"channels": (Channel.SMS,), "locale": "zh-CN"})
    (emit,) = decide(request.model_copy(update={"customer": customer}), None, T0).emits
    case_opened = emit.event
    assert isinstance(case_opened, CaseOpenedV1)
    case = case_opened.case_id
    audience = plan(case_opened, None, T0).state
    short = plan(shortage(case, 5), audience, T0)
    (message,) = [e.event for e in short.emits]
    assert isinstance(message, NotificationRequestedV1)
    assert message.milestone == "parts_shortage"
    assert (
        message.body
        == f"{customer.name}您好,维修所需备件暂时缺货,预计 2026-12-03 到货,到货后将立即为您维修。"
    )
    assert plan(reserved(case, 6, after_shortage=False), short.state, T0).emits == ()
    arrived = plan(reserved(case, 6), short.state, T0)
    (message,) = [e.event for e in arrived.emits]
    assert isinstance(message, NotificationRequestedV1)
    assert message.milestone == "parts_arrived"
    assert plan(shortage(case, 5), arrived.state, T0).emits == ()  # once per milestone


def test_the_deployed_sla_table_has_a_parts_clock_and_older_tables_get_its_default() -> None:
    table = load_sla()
    assert table.thresholds("phone", SlaClock.PARTS) == (72 * H, 168 * H)
    assert table.thresholds("large_appliance", SlaClock.PARTS) == (120 * H, 240 * H)
    older = Thresholds.model_validate({"pickup": ["1h"], "repair": ["2h"], "turnaround": ["3h"]})
    assert older.parts == (72 * H, 168 * H)


def test_hub_stats_shows_the_parts_table() -> None:
    from rich.console import Console  # noqa: PLC0415

    from hub.cli.stats import render_stats  # noqa: PLC0415

    run = Folded().feed(*until_diagnosed("E"), parts_requested("E", 4), shortage("E", 5))
    console = Console(record=True, width=120)
    render_stats(compute_stats([run.snapshot]), console, "cases")
    text = console.export_text()
    assert "spare parts" in text
    waiting_row = next(line for line in text.splitlines() if "waiting for parts now" in line)
    assert waiting_row.replace("│", " ").split()[-1] == "1"
