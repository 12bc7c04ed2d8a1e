"""A Kafka-native courier (JD-like): reads its pickup-order topic, reports on its events topic."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hub.core.topics import courier_events_topic, courier_orders_topic
from hub.messages.courier import (
    CourierOrderAcceptedV1,
    CourierOrderRejectedV1,
    CourierRejection,
    CourierTrackingV1,
    PickupCancelRequestedV1,
    PickupOrderV1,
)
from simulators.kafka_partner import KafkaPartner

if TYPE_CHECKING:
    from hub.core.registry import Event

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


class KafkaCourierSimulator(KafkaPartner):
    """One courier partner on Kafka; counts what it received and what it did."""

    def __init__(
        self, code: str, bootstrap_servers: str, knobs: CourierKnobs | None = None
    ) -> None:
        self.code = code
        self.knobs = knobs or CourierKnobs()
        super().__init__(
            f"courier-{code}",
            bootstrap_servers,
            inbox=courier_orders_topic(code),
            outbox=courier_events_topic(code),
            seed=self.knobs.seed,
        )
        self.orders_received: Counter[str] = Counter()
        self.raw_orders: dict[str, bytes] = {}
        """Each order's body as it arrived, to check what customer data reaches a courier."""
        self.accepted: set[str] = set()
        self.cancelled: set[str] = set()
        self._waybills = 0

    async def on_event(self, event: Event, raw: bytes) -> None:
        """Take new orders (a re-sent order changes nothing); note cancellations."""
        if isinstance(event, PickupOrderV1):
            self.orders_received[event.order_id] += 1
            self.raw_orders[event.order_id] = raw
            if self.orders_received[event.order_id] == 1:
                self.spawn(self._fulfil(event))
        elif isinstance(event, PickupCancelRequestedV1):
            self.cancelled.add(event.order_id)

    async def _fulfil(self, order: PickupOrderV1) -> None:
        knobs = self.knobs
        await asyncio.sleep(knobs.accept_delay_s)
        if self.random.random() < knobs.silent_rate:
            return
        if self.random.random() < knobs.reject_rate:
            rejected = CourierOrderRejectedV1(
                order_id=order.order_id, case_id=order.case_id,
                reason=CourierRejection.CAPACITY, raw_code="CAPACITY", detail="运力不足",
            )  # fmt: skip
            await self.emit(rejected, order.case_id, f"{self.code}-reject-{order.order_id}")
            return
        self._waybills += 1
        waybill = f"{self.code.upper()}{self._waybills:010d}"
        accepted = CourierOrderAcceptedV1(
            order_id=order.order_id, case_id=order.case_id, waybill_no=waybill,
            accepted_at=datetime.now(UTC),
        )  # fmt: skip
        await self.emit(accepted, order.case_id, f"{self.code}-accept-{order.order_id}")
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
            await self.emit(tracking, order.case_id, f"{self.code}-{event_id}")
            if self.random.random() < knobs.duplicate_push_rate:
                # Courier pushes are not idempotent at the source: same courier event, new message.
                await self.emit(tracking, order.case_id, f"{self.code}-{event_id}-again")
