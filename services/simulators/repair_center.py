"""A repair center on Kafka: receives tickets, diagnoses by fault code, repairs, quotes, visits."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from hub.messages.repair import (
    CenterDiagnosedV1,
    CenterItemReceivedV1,
    CenterVisitReportedV1,
    CenterWorkCompletedV1,
    QuoteDecisionV1,
    RepairTicketV1,
    Resolution,
    VisitOutcome,
)
from repair.service import center_events_topic, center_tickets_topic
from simulators.kafka_partner import KafkaPartner

if TYPE_CHECKING:
    from hub.core.registry import Event

# How the simulated technicians decide, by the customer's fault code.
RESOLUTIONS = {"no_power": Resolution.REFUND, "leak": Resolution.REPLACE}
NEEDS_WORKSHOP = frozenset({"no_cooling", "compressor_noise"})
NOT_COVERED = frozenset({"water_damage", "dropped"})
"""Damage the warranty excludes, whatever the purchase date: the customer gets a quote."""
QUOTE = Decimal("299.00")


@dataclass(frozen=True, slots=True)
class CenterKnobs:
    """How fast the center works, and how often a parcel holds the wrong item."""

    step_delay_s: float = 0.1
    wrong_serial_rate: float = 0.0
    seed: int | None = None


class RepairCenterSimulator(KafkaPartner):
    """The 华东 repair center: one ticket per case, decisions from the fault code."""

    def __init__(
        self, bootstrap_servers: str, center: str = "hz", knobs: CenterKnobs | None = None
    ) -> None:
        self.knobs = knobs or CenterKnobs()
        super().__init__(
            f"center-{center}",
            bootstrap_servers,
            inbox=center_tickets_topic(center),
            outbox=center_events_topic(center),
            seed=self.knobs.seed,
        )
        self.tickets: Counter[str] = Counter()
        self.quotes: dict[str, asyncio.Future[bool]] = {}

    async def on_event(self, event: Event, raw: bytes) -> None:
        """Work a new ticket; pass a quote decision to the ticket waiting for it."""
        del raw
        if isinstance(event, RepairTicketV1):
            # A case may have a visit ticket and then a workshop ticket: one of each, once.
            ticket = f"{event.case_id}:{'visit' if event.onsite else 'workshop'}"
            self.tickets[ticket] += 1
            if self.tickets[ticket] == 1:
                self.spawn(self._work(event))
        elif isinstance(event, QuoteDecisionV1):
            waiting = self.quotes.get(event.case_id)
            if waiting is not None and not waiting.done():
                waiting.set_result(event.approved)

    async def _step(self, event: Event, case_id: str, name: str) -> None:
        await asyncio.sleep(self.knobs.step_delay_s)
        await self.emit(event, case_id, f"{self.name}-{case_id}-{name}")

    async def _work(self, ticket: RepairTicketV1) -> None:
        case_id, code = ticket.case_id, ticket.fault.code
        if ticket.onsite:
            outcome = VisitOutcome.NEEDS_WORKSHOP if code in NEEDS_WORKSHOP else VisitOutcome.FIXED
            report = CenterVisitReportedV1(case_id=case_id, outcome=outcome, notes="上门检测完成")
            await self._step(report, case_id, "visit")
            return
        serial = ticket.item.serial_number
        if self.random.random() < self.knobs.wrong_serial_rate:
            serial = f"{serial}-X"
        await self._step(CenterItemReceivedV1(case_id=case_id, serial_number=serial), case_id, "in")
        resolution = RESOLUTIONS.get(code, Resolution.REPAIR)
        covered = ticket.in_warranty and code not in NOT_COVERED
        quote = None if covered else QUOTE
        diagnosis = CenterDiagnosedV1(
            case_id=case_id,
            fault_type=code,
            in_warranty=covered,
            resolution=Resolution.REPAIR if quote else resolution,
            quote=quote,
        )
        await self._step(diagnosis, case_id, "diagnosis")
        repaired = True
        if quote is not None:
            self.quotes[case_id] = asyncio.get_running_loop().create_future()
            repaired = await self.quotes[case_id]
        elif resolution is not Resolution.REPAIR:
            return  # refunds and replacements need no work on the returned item
        done = CenterWorkCompletedV1(
            case_id=case_id,
            resolution=Resolution.REPAIR,
            repaired=repaired,
            parts_used=("屏幕总成",) if repaired else (),
        )
        await self._step(done, case_id, "done")
