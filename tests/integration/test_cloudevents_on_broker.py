"""On the real broker: events another team's CloudEvents SDK writes are what intake reads."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from kafka_io import create_topics, read_records

from hub.core.service import ServiceRuntime
from hub.core.topics import CASES, STOREFRONT_REQUESTS, Subscription
from hub.messages import CATALOGUE
from intake.domain import case_id_for
from intake.service import build_service
from lab.samples import sample_request_v2

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.settings import HubSettings

pytestmark = pytest.mark.integration
FORMAT = JSONFormat()


def sdk_request(number: int) -> CloudEvent:
    request = sample_request_v2(number)
    return CloudEvent(
        attributes={
            "id": f"sdk-{request.request_id}",
            "source": "urn:storefront:sdk",
            "type": request.ce_type(),
            "time": request.requested_at,
            "subject": request.request_id,
            "datacontenttype": "application/json",
            "correlationid": f"session-{number}",
            "partitionkey": request.request_id,
        },
        data=request.model_dump(mode="json"),
    )


async def test_sdk_binary_and_structured_requests_open_cases(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings()
    group = f"intake-{unique}"
    service = replace(build_service(settings), group=group)
    await create_topics(settings, [Subscription(group, service.inputs)])
    base = int(unique[:6], 16)
    binary, structured = sdk_request(base), sdk_request(base + 1)
    messages = [to_binary(binary, FORMAT), to_structured(structured, FORMAT)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for message in messages:
            key = message.key.encode() if isinstance(message.key, str) else message.key
            await producer.send_and_wait(
                STOREFRONT_REQUESTS,
                message.value,
                key=key,
                headers=list(message.headers.items()),
            )
    finally:
        await producer.stop()

    cases = {
        case_id_for(event.get_subject() or "").encode(): event for event in (binary, structured)
    }
    async with ServiceRuntime(service, settings, registry=CATALOGUE):
        opened = await read_records(
            settings.kafka_bootstrap_servers,
            CASES,
            count=2,
            timeout_s=60,
            match=lambda record: record.key in cases,
        )
    assert {record.key for record in opened} == set(cases)
    for record in opened:
        event = from_binary(
            KafkaMessage(
                {name: bytes(value) for name, value in record.headers},
                record.key,
                record.value or b"",
            ),
            FORMAT,
        )
        cause = cases[record.key or b""]
        assert event.get_type() == "aftersales.case.opened.v1"
        assert event.get_extension("correlationid") == cause.get_extension("correlationid")
        assert event.get_extension("causationid") == cause.get_id()
