"""A Kafka-native courier (JD-like): reads its pickup-order topic, reports on its events topic."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hub.core.settings import HubSettings
from hub.core.topics import courier_events_topic, courier_orders_topic
from hub.messages.courier import (
    CourierOrderAcceptedV1,
    CourierOrderRejectedV1,
    CourierRejection,
    CourierTrackingV1,
    PickupCancelRequestedV1,
    PickupOrderV1,
)
from lab.simulators.kafka_partner import KafkaPartner
from lab.simulators.process import run

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
    """Orders refused for capacity (raw code CAPACITY)."""
    silent_rate: float = 0.0
    """Orders it never answers (the hub's acceptance deadline must notice)."""
    latency_s: float = 0.05
    """Before it answers an order."""
    step_delay_s: float = 0.2
    """Between acceptance and each tracking step."""
    duplicate_push_rate: float = 0.0
    """Tracking events sent twice (same courier_event_id, as real pushes are)."""
    seed: int | None = None


def waybill_for(code: str, order_id: str) -> str:
    """The courier's waybill number for an order: the same after a restart, unique per order."""
    digits = int.from_bytes(hashlib.sha256(order_id.encode()).digest()[:8], "big") % 10**12
    return f"{code.upper()}{digits:012d}"


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
        await asyncio.sleep(knobs.latency_s)
        if self.random.random() < knobs.silent_rate:
            return
        if self.random.random() < knobs.reject_rate:
            rejected = CourierOrderRejectedV1(
                order_id=order.order_id, case_id=order.case_id,
                reason=CourierRejection.CAPACITY, raw_code="CAPACITY", detail="运力不足",
            )  # fmt: skip
            await self.emit(rejected, order.case_id, f"{self.code}-reject-{order.order_id}")
            return
        waybill = waybill_for(self.code, order.order_id)
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


def main(argv: list[str] | None = None) -> None:
    """`python -m lab.simulators.kafka_courier jd --reject-rate 0.2`: one courier until stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("code", help="courier code: its topics are courier.<code>.*")
    parser.add_argument("--bootstrap", default=None, help="default: HUB_KAFKA_BOOTSTRAP_SERVERS")
    for knob, default in (("reject-rate", 0.0), ("silent-rate", 0.0), ("latency", 0.05),
                          ("step-delay", 2.0), ("duplicate-push-rate", 0.0)):  # fmt: skip
        parser.add_argument(f"--{knob}", type=float, default=default)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    knobs = CourierKnobs(
        reject_rate=args.reject_rate, silent_rate=args.silent_rate, latency_s=args.latency,
        step_delay_s=args.step_delay, duplicate_push_rate=args.duplicate_push_rate,
        seed=args.seed,
    )  # fmt: skip
    bootstrap = args.bootstrap or HubSettings().kafka_bootstrap_servers
    courier = KafkaCourierSimulator(args.code, bootstrap, knobs)
    run(courier, lambda: {"courier": courier.code, "bootstrap": bootstrap,
                          "orders": sum(courier.orders_received.values()),
                          "accepted": len(courier.accepted)})  # fmt: skip


if __name__ == "__main__":
    main()
