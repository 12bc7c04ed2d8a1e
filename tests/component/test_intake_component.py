"""The intake subscriber under FastStream's TestKafkaBroker: fast, no broker, same code path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faststream.kafka import KafkaBroker, TestKafkaBroker

from hub.core.pipeline import Outcome
from hub.core.service import ServiceRuntime
from hub.core.settings import HubSettings
from hub.core.store.sqlite import SqliteStateStore
from hub.core.topics import CASES, STOREFRONT_REQUESTS
from hub.messages import CATALOGUE
from intake.domain import case_id_for
from intake.service import build_service
from lab.samples import sample_request_v1, sample_request_v2

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from hub.core.outbound import OutRecord


class BrokerSink:
    """Publishes through a FastStream broker, so TestKafkaBroker routes the outputs in memory.

    FastStream headers are text, so non-UTF-8 header bytes are replaced: a test tool only.
    """

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(self, records: Sequence[OutRecord]) -> None:
        """Publish every record through the broker."""
        for record in records:
            await self._broker.publish(
                record.value,
                record.topic,
                key=record.key,
                headers={name: value.decode(errors="replace") for name, value in record.headers},
            )


async def test_intake_turns_requests_of_both_versions_into_cases(tmp_path: Path) -> None:
    settings = HubSettings(kafka_bootstrap_servers="unused:9092", state_dir=str(tmp_path))
    broker = KafkaBroker()
    store = SqliteStateStore(tmp_path / "intake.db")
    runtime = ServiceRuntime(
        build_service(settings),
        settings,
        registry=CATALOGUE,
        broker=broker,
        store=store,
        sink=BrokerSink(broker),
    )
    opened: list[dict[str, object]] = []

    @broker.subscriber(CASES)
    async def on_case(body: dict[str, object]) -> None:
        opened.append(body)

    await store.open()
    try:
        async with TestKafkaBroker(broker) as test_broker:
            for request in (sample_request_v1(1), sample_request_v2(2)):
                envelope_headers = {
                    "ce_specversion": "1.0",
                    "ce_id": f"evt-{request.request_id}",
                    "ce_source": "urn:storefront",
                    "ce_type": request.ce_type(),
                    "ce_time": request.requested_at.isoformat(),
                }
                await test_broker.publish(
                    request.to_bytes(),
                    STOREFRONT_REQUESTS,
                    key=request.request_id.encode(),
                    headers=envelope_headers,
                )
            # The same event again is a duplicate: no second case event.
            await test_broker.publish(
                sample_request_v2(2).to_bytes(),
                STOREFRONT_REQUESTS,
                key=b"RQ-00000002",
                headers={
                    "ce_specversion": "1.0",
                    "ce_id": "evt-RQ-00000002",
                    "ce_source": "urn:storefront",
                    "ce_type": "storefront.aftersales.requested.v2",
                    "ce_time": "2026-11-24T08:00:00+00:00",
                },
            )
    finally:
        await store.close()

    assert [case["case_id"] for case in opened] == [
        case_id_for("RQ-00000001"),
        case_id_for("RQ-00000002"),
    ]
    assert opened[0]["fault"] == {
        "code": "unspecified",
        "description": sample_request_v1(1).fault_description,
    }
    assert runtime.pipeline.counts[Outcome.PROCESSED] == 2
    assert runtime.pipeline.counts[Outcome.DUPLICATE] == 1
