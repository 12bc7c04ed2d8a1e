"""A Kafka-native spare-parts supplier (备件中心仓): reservations in, reserved or shortage out."""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import TYPE_CHECKING

from hub.core.settings import HubSettings
from hub.core.topics import parts_events_topic, parts_orders_topic
from hub.messages.parts import (
    PartsRejection,
    PartsReservationCancelledV1,
    PartsReservationRequestedV1,
    SupplierPartsReservedV1,
    SupplierPartsShortV1,
    SupplierReservationRejectedV1,
)
from lab.simulators.kafka_partner import KafkaPartner
from lab.simulators.process import run

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hub.core.registry import Event


class Stock(IntEnum):
    """How the supplier serves one part number; a reservation gets its worst part's answer."""

    RESERVE = 0
    """In stock: reserved at once."""
    RESTOCK = 1
    """Out of stock, reserved once it comes in (`restock_after_s` later)."""
    SHORTAGE = 2
    """Out of stock, and it never comes in (the hub's wait must end it)."""
    FAIL = 3
    """Discontinued: the reservation is refused."""


@dataclass(frozen=True, slots=True)
class SupplierKnobs:
    """What the simulated supplier has in stock, and how fast it answers."""

    stock: Mapping[str, Stock] = field(default_factory=dict)
    """By part number; a part not named is `default`."""
    default: Stock = Stock.RESERVE
    restock_after_s: float = 2.0
    latency_s: float = 0.05
    restock_days: int = 3
    """How far ahead the expected date of a shortage lies."""


class PartsSupplierSimulator(KafkaPartner):
    """One parts supplier on Kafka; counts the requests and cancellations it received."""

    def __init__(
        self, code: str, bootstrap_servers: str, knobs: SupplierKnobs | None = None
    ) -> None:
        self.code = code
        self.knobs = knobs or SupplierKnobs()
        super().__init__(
            f"parts-{code}",
            bootstrap_servers,
            inbox=parts_orders_topic(code),
            outbox=parts_events_topic(code),
            seed=None,
        )
        self.requests: Counter[str] = Counter()
        """Requests per reservation id: a repeat is counted, and changes nothing."""
        self.reserved: set[str] = set()
        self.cancelled: set[str] = set()

    def stock_of(self, request: PartsReservationRequestedV1) -> Stock:
        """The answer the reservation gets: that of its worst-stocked part."""
        knobs = self.knobs
        return max(knobs.stock.get(line.part_no, knobs.default) for line in request.parts)

    async def on_event(self, event: Event, raw: bytes) -> None:
        """Serve a new reservation (a repeated request is the same one); note cancellations."""
        del raw
        if isinstance(event, PartsReservationRequestedV1):
            self.requests[event.reservation_id] += 1
            if self.requests[event.reservation_id] == 1:
                self.spawn(self._serve_reservation(event))
        elif isinstance(event, PartsReservationCancelledV1):
            self.cancelled.add(event.reservation_id)

    async def _serve_reservation(self, request: PartsReservationRequestedV1) -> None:
        await asyncio.sleep(self.knobs.latency_s)
        rid, case_id = request.reservation_id, request.case_id
        stock = self.stock_of(request)
        if stock is Stock.FAIL:
            refused = SupplierReservationRejectedV1(
                reservation_id=rid, case_id=case_id, reason=PartsRejection.DISCONTINUED,
                detail="该型号备件已停产",
            )  # fmt: skip
            await self.emit(refused, case_id, f"{self.name}-{rid}-rejected")
            return
        if stock is not Stock.RESERVE:
            missing = tuple(
                line for line in request.parts
                if self.knobs.stock.get(line.part_no, self.knobs.default) is not Stock.RESERVE
            )  # fmt: skip
            expected = datetime.now(UTC).date() + timedelta(days=self.knobs.restock_days)
            short = SupplierPartsShortV1(
                reservation_id=rid, case_id=case_id, missing=missing, expected_on=expected
            )
            await self.emit(short, case_id, f"{self.name}-{rid}-shortage")
            if stock is Stock.SHORTAGE:
                return
            await asyncio.sleep(self.knobs.restock_after_s)
            if rid in self.cancelled:
                return  # the hub stopped waiting: the stock goes to someone else
        reserved = SupplierPartsReservedV1(
            reservation_id=rid, case_id=case_id, reserved_at=datetime.now(UTC)
        )
        await self.emit(reserved, case_id, f"{self.name}-{rid}-reserved")
        self.reserved.add(rid)


def main(argv: list[str] | None = None) -> None:
    """`python -m lab.simulators.parts_supplier bjzx --stock LCD-X1-OLED=restock`: until stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("code", help="supplier code: its topics are parts.<code>.*")
    parser.add_argument("--bootstrap", default=None, help="default: HUB_KAFKA_BOOTSTRAP_SERVERS")
    parser.add_argument(
        "--stock", action="append", default=[], metavar="PART=reserve|restock|shortage|fail"
    )
    parser.add_argument("--default", default="reserve", choices=[s.name.lower() for s in Stock])
    parser.add_argument("--restock-after", type=float, default=10.0)
    args = parser.parse_args(argv)
    stock = {
        part: Stock[answer.upper()] for part, answer in (item.split("=", 1) for item in args.stock)
    }
    knobs = SupplierKnobs(
        stock=stock, default=Stock[args.default.upper()], restock_after_s=args.restock_after
    )
    bootstrap = args.bootstrap or HubSettings().kafka_bootstrap_servers
    supplier = PartsSupplierSimulator(args.code, bootstrap, knobs)
    run(supplier, lambda: {"supplier": supplier.code, "bootstrap": bootstrap,
                           "reservations": len(supplier.requests),
                           "reserved": len(supplier.reserved)})  # fmt: skip


if __name__ == "__main__":
    main()
