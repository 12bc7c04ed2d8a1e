"""Whole-flow test helpers: sample requests, the case events as they arrive, a storefront."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer

from hub.core.envelope import Envelope
from hub.core.settings import HubSettings
from hub.core.topics import CASES
from hub.messages.common import Channel, Fault
from lab.samples import sample_request_v2

if TYPE_CHECKING:
    from pathlib import Path

    from dispatch.partners import PartnerTable
    from hub.messages.storefront import AfterSalesRequestedV2


def flow_settings(bootstrap: str, state_dir: Path, **changes: Any) -> HubSettings:
    """The hub's settings for a whole flow in a test: retries in seconds, not minutes."""
    return HubSettings(
        kafka_bootstrap_servers=bootstrap,
        state_dir=str(state_dir),
        retry_tiers=("1s", "2s"),
        inline_attempts=2,
        inline_backoff_s=0.05,
        max_attempts=12,
        code_version="test",
        **changes,
    )


def quick_couriers(table: PartnerTable) -> PartnerTable:
    """`table` with every courier given 20 s to accept an order (a slow test runner's margin)."""
    couriers = tuple(
        courier.model_copy(update={"accept_deadline": timedelta(seconds=20)})
        for courier in table.couriers
    )
    return table.model_copy(update={"couriers": couriers})


def request(number: int, fault: str, **item: Any) -> AfterSalesRequestedV2:
    """Sample request `number` with `fault`, answered by SMS and e-mail, the item updated."""
    base = sample_request_v2(number)
    customer = base.customer.model_copy(
        update={
            "email": f"customer{number}@example.com",
            "channels": (Channel.SMS, Channel.EMAIL),
        }
    )
    return base.model_copy(
        update={
            "customer": customer,
            "fault": Fault(code=fault, description="客户描述"),
            "item": base.item.model_copy(update=item),
        }
    )


class Timeline:
    """Case events as they arrive, by case id."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)

    def of(self, case_id: str, short: str) -> list[dict[str, Any]]:
        """The bodies of one family (`parts.shortage`) of the case, in order."""
        return [
            body for kind, body in self.events[case_id] if kind.startswith(f"aftersales.{short}.v")
        ]

    def kinds(self, case_id: str) -> list[str]:
        """Every ce_type of the case, in order."""
        return [kind for kind, _ in self.events[case_id]]

    async def follow(self, bootstrap: str) -> None:
        """Read the cases topic until cancelled."""
        consumer = AIOKafkaConsumer(
            CASES, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            while True:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    for record in batch:
                        body = json.loads(record.value or b"{}")
                        kind = Envelope.from_headers(record.headers).type
                        self.events[body.get("case_id", "")].append((kind, body))
        finally:
            await consumer.stop()

    async def wait(self, case_id: str, short: str, timeout_s: float = 60) -> dict[str, Any]:
        """The first event of `short` for the case, once it came."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.of(case_id, short):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{case_id} never reached {short}: {self.kinds(case_id)}")
            await asyncio.sleep(0.1)
        return self.of(case_id, short)[0]
