"""Repair centers, on Kafka or over HTTP: tickets in, diagnosis by fault code, reports out."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
from aiohttp import web

from gateway.signing import center_headers
from hub.core.lifecycle import AsyncResource, serve_http
from hub.core.topics import center_events_topic, center_tickets_topic
from hub.messages.parts import PartLine, PartsReadyV1, RepairWithdrawnV1
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
from lab.simulators.kafka_partner import KafkaPartner, say_if_failed

if TYPE_CHECKING:
    from hub.core.registry import Event

# How the simulated technicians decide, by the customer's fault code.
RESOLUTIONS = {"no_power": Resolution.REFUND, "leak": Resolution.REPLACE}
NEEDS_WORKSHOP = frozenset({"no_cooling", "compressor_noise"})
NOT_COVERED = frozenset({"water_damage", "dropped"})
"""Damage the warranty excludes, whatever the purchase date: the customer gets a quote.

The technicians report it as damage by the customer (人为损坏)."""
QUOTE = Decimal("299.00")
PARTS = {
    "screen_cracked": (PartLine(part_no="LCD-X1-OLED"),),
    "battery_swelling": (PartLine(part_no="BAT-X1-4500"), PartLine(part_no="ADH-X1-BACK")),
    "camera_blurry": (PartLine(part_no="CAM-X1-MAIN"),),
    "compressor_noise": (PartLine(part_no="CMP-R1-220V"),),
}
"""Faults whose repair needs spare parts from the supplier (备件), by the customer's fault code."""


@dataclass(frozen=True, slots=True)
class CenterKnobs:
    """How fast the center works, and how often a parcel holds the wrong or a damaged item."""

    step_delay_s: float = 0.1
    wrong_serial_rate: float = 0.0
    damage_rate: float = 0.0
    """How often a parcel arrives damaged in transit (the center reports it on arrival)."""
    damaged_cases: frozenset[str] = frozenset()
    """Cases whose parcel arrives damaged, whatever the rate (for tests and the demo)."""
    seed: int | None = None
    wrong_serials: frozenset[str] = frozenset()
    """Serial numbers whose parcel always holds another item (a scripted mismatch)."""


Report = Callable[["Event", str], Awaitable[None]]
"""How a center kind delivers one report: the event and a name unique within its case."""


class Workshop:
    """What a repair center decides and does, whatever way it talks to the hub."""

    def __init__(self, knobs: CenterKnobs) -> None:
        self.knobs = knobs
        self.random = random.Random(knobs.seed)  # noqa: S311 - a simulation
        self.tickets: Counter[str] = Counter()
        self.quotes: dict[str, asyncio.Future[bool]] = {}
        self.parts: dict[str, asyncio.Future[bool]] = {}
        """Repairs waiting for their parts: True when they are ready, False when withdrawn."""

    def accept(self, ticket: RepairTicketV1) -> bool:
        """Count the ticket; True for the first of its kind (a visit, then maybe a repair)."""
        key = f"{ticket.case_id}:{'visit' if ticket.onsite else 'workshop'}"
        self.tickets[key] += 1
        return self.tickets[key] == 1

    def parts_news(self, case_id: str, *, ready: bool) -> None:
        """The hub says the parts are ready (`ready`), or withdrew the repair."""
        waiting = self.parts.get(case_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(ready)

    def decide(self, decision: QuoteDecisionV1) -> None:
        """Hand the customer's answer to the ticket waiting for it."""
        waiting = self.quotes.get(decision.case_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(decision.approved)

    async def work(self, ticket: RepairTicketV1, report: Report) -> None:
        """Visit, or receive, diagnose and repair; each step reported after a delay."""

        async def step(event: Event, name: str) -> None:
            await asyncio.sleep(self.knobs.step_delay_s)
            await report(event, name)

        case_id, code = ticket.case_id, ticket.fault.code
        if ticket.onsite:
            outcome = VisitOutcome.NEEDS_WORKSHOP if code in NEEDS_WORKSHOP else VisitOutcome.FIXED
            await step(
                CenterVisitReportedV1(case_id=case_id, outcome=outcome, notes="上门检测完成"),
                "visit",
            )
            return
        serial = ticket.item.serial_number
        wrong = serial in self.knobs.wrong_serials
        if self.random.random() < self.knobs.wrong_serial_rate or wrong:
            serial = f"{serial}-X"
        rate = self.knobs.damage_rate
        if case_id in self.knobs.damaged_cases or (rate and self.random.random() < rate):
            # Photographed on unpacking; the hub claims against the courier, no repair follows.
            damaged = CenterItemReceivedV1(
                case_id=case_id,
                serial_number=serial,
                damaged=True,
                damage_description="外箱压损,屏幕碎裂 (box crushed, screen cracked)",
                evidence_ref=f"photo-{case_id}-unpacking",
            )
            await step(damaged, "in")
            return
        await step(CenterItemReceivedV1(case_id=case_id, serial_number=serial), "in")
        resolution = RESOLUTIONS.get(code, Resolution.REPAIR)
        covered = ticket.in_warranty and code not in NOT_COVERED
        quote = None if covered else QUOTE
        needed = PARTS.get(code, ()) if quote or resolution is Resolution.REPAIR else ()
        diagnosis = CenterDiagnosedV1(
            case_id=case_id,
            fault_type=code,
            in_warranty=covered,
            resolution=Resolution.REPAIR if quote else resolution,
            quote=quote,
            customer_damage=code in NOT_COVERED,
            parts=needed,
        )
        if needed:  # before the report: the hub may answer at once
            self.parts[case_id] = asyncio.get_running_loop().create_future()
        await step(diagnosis, "diagnosis")
        repaired = True
        if quote is not None:
            self.quotes[case_id] = asyncio.get_running_loop().create_future()
            repaired = await self.quotes[case_id]
        elif resolution is not Resolution.REPAIR:
            return  # refunds and replacements need no work on the returned item
        if needed and repaired and not await self.parts[case_id]:
            return  # withdrawn: the hub replaces the item, the workshop does nothing
        used = tuple(line.part_no for line in needed) or ("屏幕总成",)
        done = CenterWorkCompletedV1(
            case_id=case_id,
            resolution=Resolution.REPAIR,
            repaired=repaired,
            parts_used=used if repaired else (),
        )
        await step(done, "done")


class RepairCenterSimulator(KafkaPartner):
    """A repair center on Kafka (华东, Hangzhou): tickets in, reports out."""

    def __init__(
        self, bootstrap_servers: str, center: str = "hz", knobs: CenterKnobs | None = None
    ) -> None:
        super().__init__(
            f"center-{center}",
            bootstrap_servers,
            inbox=center_tickets_topic(center),
            outbox=center_events_topic(center),
            seed=None,
        )
        self.workshop = Workshop(knobs or CenterKnobs())

    async def on_event(self, event: Event, raw: bytes) -> None:
        """Work a new ticket; pass a quote decision to the ticket waiting for it."""
        del raw
        if isinstance(event, RepairTicketV1) and self.workshop.accept(event):
            case_id = event.case_id

            async def report(report_event: Event, name: str) -> None:
                await self.emit(report_event, case_id, f"{self.name}-{case_id}-{name}")

            self.spawn(self.workshop.work(event, report))
        elif isinstance(event, QuoteDecisionV1):
            self.workshop.decide(event)
        elif isinstance(event, PartsReadyV1 | RepairWithdrawnV1):
            self.workshop.parts_news(event.case_id, ready=isinstance(event, PartsReadyV1))


class HttpRepairCenterSimulator(AsyncResource):
    """A repair center with an HTTP API (大家电, Shanghai) that pushes reports to a webhook."""

    def __init__(self, knobs: CenterKnobs | None = None, *, webhook_secret: str) -> None:
        self.workshop = Workshop(knobs or CenterKnobs())
        self.webhook_secret = webhook_secret
        self.webhook_url: str | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_post("/tickets", self._ticket)
        app.router.add_post("/quotes", self._quote)
        app.router.add_post("/parts", self._parts)
        app.router.add_post("/withdrawals", self._withdrawn)
        self._runner, port = await serve_http(app)
        self._http = httpx.AsyncClient(timeout=5.0)
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Stop working and listening."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _ticket(self, request: web.Request) -> web.Response:
        ticket = RepairTicketV1.model_validate(await request.json())
        if self.workshop.accept(ticket):
            task = asyncio.create_task(self.workshop.work(ticket, self._push))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(say_if_failed("center-sh"))
            return web.json_response({"ticket": ticket.case_id}, status=201)
        return web.json_response({"ticket": ticket.case_id, "duplicate": True}, status=200)

    async def _quote(self, request: web.Request) -> web.Response:
        self.workshop.decide(QuoteDecisionV1.model_validate(await request.json()))
        return web.json_response({"ok": True})

    async def _parts(self, request: web.Request) -> web.Response:
        ready = PartsReadyV1.model_validate(await request.json())
        self.workshop.parts_news(ready.case_id, ready=True)
        return web.json_response({"ok": True})

    async def _withdrawn(self, request: web.Request) -> web.Response:
        withdrawn = RepairWithdrawnV1.model_validate(await request.json())
        self.workshop.parts_news(withdrawn.case_id, ready=False)
        return web.json_response({"ok": True})

    async def _push(self, event: Event, name: str) -> None:
        assert self._http is not None  # noqa: S101 - started before any ticket
        case_id = str(event.model_dump()["case_id"])
        body = {
            "report_id": f"{case_id}-{name}",
            "event_type": event.event_type,
            "version": event.version,
            "data": event.model_dump(mode="json"),
        }
        raw = json.dumps(body, ensure_ascii=False).encode()
        for attempt in range(5):  # the center re-pushes until the hub acknowledges
            try:
                # Signed afresh on every attempt: the timestamp is the push's own.
                headers = center_headers(self.webhook_secret, raw)
                response = await self._http.post(
                    str(self.webhook_url), content=raw, headers=headers
                )
                if response.status_code == 200:  # noqa: PLR2004
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2 * (attempt + 1))
