"""Signed webhooks over real HTTP: what the partners sign is taken; anything else is a 401."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from dispatch.partners import load_partners
from gateway.bootstrap import center_gateway_runtime
from gateway.center import CenterReportReceiver, declare_center_gateway
from gateway.service import declare_gateway
from gateway.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    center_headers,
    center_signature,
    sf_push_form,
)
from gateway.webhook import RoutePushReceiver
from hub.core.errors import UndeclaredOutputError
from hub.core.settings import HubSettings
from hub.core.topics import center_events_topic, courier_events_topic
from hub.messages import CATALOGUE
from hub.messages.repair import CenterItemReceivedV1
from lab.simulators.repair_center import HttpRepairCenterSimulator
from lab.simulators.sf_courier import SfCourierSimulator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hub.core.outbound import OutRecord

CHECKWORD = "cw-test"
SECRET = "center-secret-test"  # noqa: S105 - a test key
SF = declare_gateway(HubSettings(), "sf")
SH = declare_center_gateway(HubSettings(), "sh")
"""The declarations the webhooks route their events by."""


def sf_webhook(sink: CollectingSink) -> RoutePushReceiver:
    return RoutePushReceiver(sink, declared=SF, checkword=CHECKWORD)


SIX_MINUTES = 6 * 60


class CollectingSink:
    """Keeps what the webhook would put on Kafka."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def send(self, records: Sequence[OutRecord]) -> None:
        self.records.extend(records)


def route(order: str = "AS1-inbound-1") -> str:
    body = {
        "id": uuid.uuid4().hex, "mailno": "SF100", "orderid": order,
        "acceptTime": "2026-12-01 10:00:00", "acceptAddress": "杭州市", "remark": "已收取",
        "opCode": "50",
    }  # fmt: skip
    return json.dumps({"Body": {"WaybillRoute": [body]}}, ensure_ascii=False)


def report_body(case_id: str = "AS1") -> bytes:
    event = CenterItemReceivedV1(case_id=case_id, serial_number="SN1")
    body = {
        "report_id": f"{case_id}-received",
        "event_type": event.event_type,
        "version": event.version,
        "data": event.model_dump(mode="json"),
    }
    return json.dumps(body).encode()


def sdk_read(record: OutRecord) -> Any:
    message = KafkaMessage(dict(record.headers), record.key, record.value or b"")
    return from_binary(message, JSONFormat())


async def test_a_signed_sf_push_is_taken_and_its_record_reads_as_a_cloudevent() -> None:
    sink = CollectingSink()
    async with (
        sf_webhook(sink) as webhook,
        httpx.AsyncClient() as http,
    ):
        response = await http.post(webhook.url, data=sf_push_form(route(), CHECKWORD))
    assert response.status_code == 200
    assert response.json()["return_code"] == "0000"
    (record,) = sink.records
    assert record.topic == courier_events_topic("sf")
    assert sdk_read(record).get_type() == "courier.tracking.reported.v1"
    assert webhook.refused_signatures == 0


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        (lambda: sf_push_form(route(), "another-checkword"), "msgDigest does not match"),
        (lambda: sf_push_form(route(), CHECKWORD, time.time() - SIX_MINUTES), "more than"),
        (lambda: sf_push_form(route(), CHECKWORD, time.time() + SIX_MINUTES), "more than"),
        (
            lambda: {**sf_push_form(route(), CHECKWORD), "msgData": route("AS2-inbound-1")},
            "msgDigest does not match",
        ),
        (lambda: {"msgData": route()}, "missing msgData, timestamp or msgDigest"),
    ],
    ids=["wrong-checkword", "stale", "future", "tampered", "unsigned"],
)
async def test_an_sf_push_failing_the_digest_is_refused_counted_and_produces_nothing(
    form: Any, reason: str
) -> None:
    sink = CollectingSink()
    before = REGISTRY.get_sample_value("hub_webhook_refused_total", {"partner": "sf"}) or 0.0
    async with (
        sf_webhook(sink) as webhook,
        httpx.AsyncClient() as http,
    ):
        with capture_logs() as logs:
            response = await http.post(webhook.url, data=form())
    assert response.status_code == 401
    assert not sink.records
    assert webhook.refused_signatures == 1
    (warning,) = [entry for entry in logs if entry["event"] == "webhook_refused"]
    assert warning["log_level"] == "warning"
    assert warning["partner"] == "sf"
    assert reason in warning["reason"]
    assert warning["refused_signatures"] == 1
    assert REGISTRY.get_sample_value("hub_webhook_refused_total", {"partner": "sf"}) == before + 1


async def test_the_sf_simulator_signs_its_pushes_as_sf_does() -> None:
    sink = CollectingSink()
    async with sf_webhook(sink) as webhook:
        sf = SfCourierSimulator("P-TEST", CHECKWORD, webhook_url=webhook.url)
        try:
            await sf._push(json.loads(route())["Body"]["WaybillRoute"][0])
        finally:
            await sf.stop()
    assert sf.pushes == 1
    assert len(sink.records) == 1
    assert webhook.refused_signatures == 0


async def test_a_signed_center_report_is_taken() -> None:
    sink = CollectingSink()
    body = report_body()
    async with (
        CenterReportReceiver(sink, "sh", declared=SH, secret=SECRET) as webhook,
        httpx.AsyncClient() as http,
    ):
        response = await http.post(webhook.url, content=body, headers=center_headers(SECRET, body))
    assert response.status_code == 200
    (record,) = sink.records
    assert record.topic == center_events_topic("sh")
    assert sdk_read(record).get_type() == "repair.center.item-received.v1"


async def test_a_webhook_writes_only_where_its_declaration_routes_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = CollectingSink()
    body = report_body()
    undeclared = replace(SH, emits={})  # a declaration that routes no center report
    async with (
        CenterReportReceiver(sink, "sh", declared=undeclared, secret=SECRET) as webhook,
        httpx.AsyncClient() as http,
    ):
        response = await http.post(webhook.url, content=body, headers=center_headers(SECRET, body))
    assert response.status_code == 500  # the center pushes again; nothing went anywhere
    assert sink.records == []
    (error,) = [r.exc_info[1] for r in caplog.records if r.exc_info and r.exc_info[1]]
    assert isinstance(error, UndeclaredOutputError)
    assert str(error) == "gateway-center-sh declares no output for repair.center.item-received"


def _signed(secret: str, body: bytes, at: float) -> dict[str, str]:
    return center_headers(secret, body, now=at)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (lambda b: _signed("another-secret", b, time.time()), "signature does not match"),
        (lambda b: _signed(SECRET, b, time.time() - SIX_MINUTES), "more than"),
        (lambda b: _signed(SECRET, b, time.time() + SIX_MINUTES), "more than"),
        (lambda b: _signed(SECRET, b + b" ", time.time()), "signature does not match"),
        (lambda _b: {"content-type": "application/json"}, "missing"),
        (
            lambda b: {
                TIMESTAMP_HEADER: "yesterday",
                SIGNATURE_HEADER: center_signature(SECRET, "yesterday", b),
            },
            "not Unix seconds",
        ),
    ],
    ids=["wrong-secret", "stale", "future", "tampered", "unsigned", "bad-timestamp"],
)
async def test_a_center_report_failing_the_signature_is_refused_counted_and_produces_nothing(
    headers: Any, reason: str
) -> None:
    sink = CollectingSink()
    body = report_body()
    async with (
        CenterReportReceiver(sink, "sh", declared=SH, secret=SECRET) as webhook,
        httpx.AsyncClient() as http,
    ):
        with capture_logs() as logs:
            response = await http.post(webhook.url, content=body, headers=headers(body))
    assert response.status_code == 401
    assert not sink.records
    assert webhook.refused_signatures == 1
    (warning,) = [entry for entry in logs if entry["event"] == "webhook_refused"]
    assert warning["partner"] == "sh"
    assert reason in warning["reason"]


async def test_a_stale_signature_is_refused_even_when_the_secret_is_right() -> None:
    # 4 minutes is inside the window, 6 outside: the boundary is the documented 5 minutes.
    sink = CollectingSink()
    body = report_body()
    async with (
        CenterReportReceiver(sink, "sh", declared=SH, secret=SECRET) as webhook,
        httpx.AsyncClient() as http,
    ):
        fresh = await http.post(
            webhook.url, content=body, headers=_signed(SECRET, body, time.time() - 4 * 60)
        )
        stale = await http.post(
            webhook.url, content=body, headers=_signed(SECRET, body, time.time() - 6 * 60)
        )
    assert (fresh.status_code, stale.status_code) == (200, 401)
    assert len(sink.records) == 1


async def test_the_http_center_simulator_signs_its_reports() -> None:
    sink = CollectingSink()
    async with CenterReportReceiver(sink, "sh", declared=SH, secret=SECRET) as webhook:
        center = HttpRepairCenterSimulator(webhook_secret=SECRET)
        center.webhook_url = webhook.url
        async with center:
            await center._push(CenterItemReceivedV1(case_id="AS9", serial_number="SN9"), "received")
    assert [record.key for record in sink.records] == [b"AS9"]
    assert webhook.refused_signatures == 0


def test_a_center_gateway_refuses_to_start_without_its_webhook_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUB_CENTER_SH_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("HUB_CENTER_SH_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ValueError, match="needs HUB_CENTER_SH_WEBHOOK_SECRET in the environment"):
        center_gateway_runtime(HubSettings(), load_partners().center("sh"), CATALOGUE, 0)
