"""Whole-flow test helpers: follow the cases topic by case id, and publish as a backend would."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer

from hub.core.envelope import Envelope
from hub.core.service import KafkaSink
from hub.core.topics import CASES

if TYPE_CHECKING:
    from hub.core.outbound import OutRecord
    from hub.core.settings import HubSettings


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


async def send(settings: HubSettings, records: list[OutRecord]) -> None:
    """Publish `records` with the hub's producer settings (acks=all)."""
    sink = KafkaSink(settings, client_id="test-backend")
    await sink.start()
    try:
        await sink.send(records)
    finally:
        await sink.stop()
