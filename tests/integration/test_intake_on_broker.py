"""On the real broker: the envelope survives the wire; v1 requests are read as v2."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from kafka_io import create_topics, read_records

from hub.core.envelope import Envelope
from hub.core.outbound import event_record
from hub.core.service import KafkaSink, ServiceRuntime
from hub.core.topics import CASES, STOREFRONT_REQUESTS, Subscription
from hub.messages import CATALOGUE
from intake.domain import case_id_for
from intake.service import build_service
from lab.samples import sample_request_v1, sample_request_v2

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.settings import HubSettings

pytestmark = pytest.mark.integration


async def test_every_ce_header_arrives_intact(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings()
    topic = f"test.envelope.{unique}"
    await create_topics(settings, [], extra=[topic])
    request = sample_request_v2(11)
    record = event_record(topic, request, key=request.request_id, source="urn:storefront:test")
    sink = KafkaSink(settings, client_id="test")
    await sink.start()
    try:
        await sink.send([record])
    finally:
        await sink.stop()

    (received,) = await read_records(settings.kafka_bootstrap_servers, topic, count=1)
    assert [(name, bytes(value)) for name, value in received.headers] == list(record.headers)
    envelope = Envelope.from_headers(received.headers)
    assert envelope.type == "storefront.aftersales.requested.v2"
    assert envelope.subject == request.request_id
    assert received.key == request.request_id.encode()
    assert received.value == request.to_bytes()


async def test_v1_request_is_consumed_as_v2_and_opens_a_case(
    make_settings: Callable[..., HubSettings], unique: str
) -> None:
    settings = make_settings()
    service = build_service(settings)
    await create_topics(settings, [Subscription(f"intake-{unique}", service.inputs)])
    service = replace(service, group=f"intake-{unique}")
    v1 = sample_request_v1(int(unique[:6], 16))
    sink = KafkaSink(settings, client_id="test-storefront")
    await sink.start()
    try:
        await sink.send(
            [event_record(STOREFRONT_REQUESTS, v1, key=v1.request_id, source="urn:storefront:test")]
        )
    finally:
        await sink.stop()

    case_id = case_id_for(v1.request_id)
    async with ServiceRuntime(service, settings, registry=CATALOGUE):
        (opened,) = await read_records(
            settings.kafka_bootstrap_servers,
            CASES,
            count=1,
            timeout_s=60,
            match=lambda record: record.key == case_id.encode(),
        )
    envelope = Envelope.from_headers(opened.headers)
    body = json.loads(opened.value or b"")
    assert envelope.type == "aftersales.case.opened.v1"
    assert envelope.subject == case_id
    assert body["request_id"] == v1.request_id
    # The fields only v2 has prove the upcaster ran: v1's free text became a coded fault.
    assert body["fault"] == {"code": "unspecified", "description": v1.fault_description}
