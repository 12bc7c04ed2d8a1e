"""A Kafka-native courier (JD-like): reads its pickup-order topic, reports on its events topic."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hub.core.envelope import Envelope
from hub.core.errors import HubError
from hub.core.outbound import event_record
from hub.core.topics import courier_events_topic, courier_orders_topic
from hub.messages import CATALOGUE
from hub.messages.courier import (
    CourierOrderAcceptedV1,
    CourierOrderRejectedV1,
    CourierRejection,
    CourierTrackingV1,
    PickupCancelRequestedV1,
    PickupOrderV1,
)

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from types import TracebackType

    from hub.core.registry import Event

log = structlog.get_logger(__name__)

PROGRESS = (
    ("PICKUP", "快递员已揽收"),
    ("TRANSIT", "运输中"),
    ("DELIVERING", "派送中"),
    ("SIGNED", "已签收"),
)


@dataclass(frozen=True, slots=True)
class CourierKnobs:
    """How the simulated courier misbehaves."""

    reject_rate: float = 0.0
    silent_rate: float = 0.0
    """Orders it never answers (the hub's acceptance deadline must notice)."""
    accept_delay_s: float = 0.05
    step_delay_s: float = 0.2
    duplicate_push_rate: float = 0.0
    seed: int | None = None


@dataclass
class KafkaCourierSimulator:
    """One courier partner on Kafka; counts what it received and what it did."""

    code: str
    bootstrap_servers: str
    knobs: CourierKnobs = field(default_factory=CourierKnobs)
    orders_received: Counter[str] = field(default_factory=Counter)
    raw_orders: dict[str, bytes] = field(default_factory=dict)
    """Each order's body as it arrived, to check what customer data reaches a courier."""
    accepted: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._random = random.Random(self.knobs.seed)  # noqa: S311 - a simulation, not crypto
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._waybills = 0

    async def start(self) -> None:
        """Connect and start serving orders."""
        self._consumer = AIOKafkaConsumer(
            courier_orders_topic(self.code),
            bootstrap_servers=self.bootstrap_servers,
            group_id=f"courier-sim-{self.code}",
            auto_offset_reset="earliest",
        )
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all")
        await self._consumer.start()
        await self._producer.start()
        self._spawn(self._serve())

    async def stop(self) -> None:
        """Stop serving and disconnect."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self) -> None:
        assert self._consumer is not None  # noqa: S101 - started above
        async for record in self._consumer:
            try:
                envelope = Envelope.from_headers(record.headers)
                event = CATALOGUE.decode(envelope.type, record.value or b"")
            except HubError as error:
                log.warning("courier_sim_unreadable_order", courier=self.code, error=str(error))
                continue
            if isinstance(event, PickupOrderV1):
                self.orders_received[event.order_id] += 1
                self.raw_orders[event.order_id] = record.value or b""
                if self.orders_received[event.order_id] == 1:  # a re-sent order changes nothing
                    self._spawn(self._fulfil(event))
            elif isinstance(event, PickupCancelRequestedV1):
                self.cancelled.add(event.order_id)

    async def _emit(self, event: Event, case_id: str, event_id: str) -> None:
        assert self._producer is not None  # noqa: S101 - started before serving
        record = event_record(
            courier_events_topic(self.code), event, key=case_id,
            source=f"urn:courier:{self.code}", event_id=event_id,
        )  # fmt: skip
        await self._producer.send_and_wait(
            record.topic, record.value, key=record.key, headers=list(record.headers)
        )

    async def _fulfil(self, order: PickupOrderV1) -> None:
        knobs = self.knobs
        await asyncio.sleep(knobs.accept_delay_s)
        if self._random.random() < knobs.silent_rate:
            return
        if self._random.random() < knobs.reject_rate:
            rejected = CourierOrderRejectedV1(
                order_id=order.order_id, case_id=order.case_id,
                reason=CourierRejection.CAPACITY, raw_code="CAPACITY", detail="运力不足",
            )  # fmt: skip
            await self._emit(rejected, order.case_id, f"{self.code}-reject-{order.order_id}")
            return
        self._waybills += 1
        waybill = f"{self.code.upper()}{self._waybills:010d}"
        accepted = CourierOrderAcceptedV1(
            order_id=order.order_id, case_id=order.case_id, waybill_no=waybill,
            accepted_at=datetime.now(UTC),
        )  # fmt: skip
        await self._emit(accepted, order.case_id, f"{self.code}-accept-{order.order_id}")
        self.accepted.add(order.order_id)
        for step, (code, description) in enumerate(PROGRESS, start=1):
            await asyncio.sleep(knobs.step_delay_s)
            if order.order_id in self.cancelled and code == "PICKUP":
                return  # withdrawn before the courier came
            event_id = f"{waybill}-{step}"
            tracking = CourierTrackingV1(
                courier_event_id=event_id, order_id=order.order_id, case_id=order.case_id,
                waybill_no=waybill, raw_code=code, description=description,
                location=order.sender.city if step == 1 else order.receiver.city,
                occurred_at=datetime.now(UTC),
            )  # fmt: skip
            await self._emit(tracking, order.case_id, f"{self.code}-{event_id}")
            if self._random.random() < knobs.duplicate_push_rate:
                # Courier pushes are not idempotent at the source: same courier event, new message.
                await self._emit(tracking, order.case_id, f"{self.code}-{event_id}-again")


async def run_forever(code: str, bootstrap_servers: str) -> None:
    """Serve as courier `code` until cancelled (for `make demo` and manual runs)."""
    async with KafkaCourierSimulator(code, bootstrap_servers):
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
