"""`make demo`: a sample request travels from the storefront topic through intake to a case."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer

from hub.bootstrap import SERVICES, all_topics
from hub.core.envelope import Envelope
from hub.core.outbound import event_record
from hub.core.service import KafkaSink, ServiceRuntime
from hub.core.topics import CASES, STOREFRONT_REQUESTS, apply_topics
from hub.messages import CATALOGUE
from hub.samples import sample_request_v1, sample_request_v2

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.settings import HubSettings
    from hub.messages.storefront import AfterSalesRequestedV1, AfterSalesRequestedV2


@dataclass(frozen=True, slots=True)
class CaseLine:
    """One case event as the demo shows it."""

    ce_type: str
    case_id: str
    request_id: str
    detail: str


async def run_demo(
    settings: HubSettings, *, say: Callable[[str], None], timeout_s: float = 60.0
) -> list[CaseLine]:
    """Publish a v1 and a v2 request, run intake, and return the case events it emitted."""
    report = await apply_topics(settings.kafka_bootstrap_servers, all_topics(settings))
    say(f"topics: {len(report.created)} created, {len(report.unchanged)} already in place")
    requests: list[AfterSalesRequestedV1 | AfterSalesRequestedV2] = [
        sample_request_v1(1),
        sample_request_v2(2),
    ]
    runtime = ServiceRuntime(SERVICES["intake"](settings), settings, registry=CATALOGUE)
    sink = KafkaSink(settings, client_id="hub-demo-storefront")
    consumer = AIOKafkaConsumer(
        CASES,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="latest",
        group_id=None,
    )
    await consumer.start()
    await consumer.seek_to_end()
    # seek_to_end is lazy: resolve the positions now, so nothing emitted below is skipped.
    for partition in consumer.assignment():
        await consumer.position(partition)
    await sink.start()
    lines: list[CaseLine] = []
    try:
        async with runtime:
            for request in requests:
                await sink.send(
                    [
                        event_record(
                            STOREFRONT_REQUESTS,
                            request,
                            key=request.request_id,
                            source="urn:storefront:demo",
                        )
                    ]
                )
                say(
                    f"published {request.ce_type()} {request.request_id} "
                    f"({request.customer.name}, {request.item.title})"
                )
            async with asyncio.timeout(timeout_s):
                while len(lines) < len(requests):
                    record = await consumer.getone()
                    envelope = Envelope.from_headers(record.headers)
                    data = json.loads(record.value or b"{}")
                    detail = (
                        f"mode={data['service_mode']} in_warranty={data['in_warranty']}"
                        if "service_mode" in data
                        else f"reason={data.get('reason_code')}"
                    )
                    lines.append(
                        CaseLine(envelope.type, data["case_id"], data["request_id"], detail)
                    )
    finally:
        await sink.stop()
        await consumer.stop()
    return lines
