import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import aiohttp
import httpx
import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from hub.core import tracing
from hub.core.envelope import Envelope
from hub.core.errors import FailureClass, classify
from hub.core.lifecycle import serve_http
from hub.core.metrics import MeteredTransport, PipelineMetrics
from hub.core.settings import HubSettings
from hub.messages.common import Channel
from hub.messages.repair import NotificationRequestedV1
from notify.providers import HttpGatewayProvider, HttpPool


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_partner_calls_are_timed_by_partner_and_result() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(503 if request.url.path == "/busy" else 200)

    before = {
        result: value("hub_partner_call_seconds_count", partner="test-p", result=result)
        for result in ("200", "503", "ConnectError")
    }
    transport = MeteredTransport("test-p", httpx.MockTransport(answer))
    async with httpx.AsyncClient(transport=transport, base_url="http://partner") as client:
        await client.get("/ok")
        await client.get("/ok")
        await client.get("/busy")
        with pytest.raises(httpx.ConnectError):
            await client.get("/down")
    counts = {
        result: value("hub_partner_call_seconds_count", partner="test-p", result=result) - seen
        for result, seen in before.items()
    }
    assert counts == {"200": 2, "503": 1, "ConnectError": 1}


async def test_notification_sends_are_counted_by_channel_and_result() -> None:
    async def answer(request: web.Request) -> web.Response:
        if "fail" in (await request.json())["text"]:
            return web.Response(status=500)
        return web.json_response({"message_id": "m1"})

    def notification(body: str) -> NotificationRequestedV1:
        return NotificationRequestedV1(
            dedupe_key="c:m:sms", case_id="c", milestone="m", channel=Channel.SMS,
            address="13800138000", locale="zh-CN", subject="s", body=body,
        )  # fmt: skip

    sent = value("hub_notifications_total", channel="sms", result="sent")
    failed = value("hub_notifications_total", channel="sms", result="500")
    app = web.Application()
    app.router.add_post("/send", answer)
    runner, port = await serve_http(app)
    try:
        async with HttpPool(timeout_s=2.0) as pool:
            provider = HttpGatewayProvider(f"http://127.0.0.1:{port}/send", pool)
            assert await provider.send(notification("ok")) == "m1"
            with pytest.raises(aiohttp.ClientResponseError) as error:
                await provider.send(notification("fail"))
    finally:
        await runner.cleanup()
    assert classify(error.value) is FailureClass.TRANSIENT  # a 500 is worth another try
    assert value("hub_notifications_total", channel="sms", result="sent") == sent + 1
    assert value("hub_notifications_total", channel="sms", result="500") == failed + 1


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


def envelope(traceparent: str | None) -> Envelope:
    return Envelope(
        id="in-1", source="urn:test", type="test.v1", time=datetime(2026, 1, 1, tzinfo=UTC),
        traceparent=traceparent,
    )  # fmt: skip


def test_tracing_is_off_unless_configured() -> None:
    assert tracing.configure_tracing(HubSettings()) is None
    assert not tracing.enabled()
    with tracing.record_span(group="g", topic="t", partition=0, offset=0, envelope=None) as span:
        assert span is None


def traced(incoming: Envelope, group: str = "g") -> tuple[str, object]:
    """Handle `incoming` in a record span: the hop's traceparent and the span (None: unsampled)."""
    hop = incoming.hop_traceparent(group)
    with tracing.record_span(
        group=group, topic="t", partition=1, offset=7, envelope=incoming, traceparent=hop
    ) as span:
        return hop, span


def test_a_record_span_is_the_child_of_its_traceparent_and_its_outputs_name_it(
    spans: InMemorySpanExporter,
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    hop, _ = traced(envelope(parent))
    (consumer,) = spans.get_finished_spans()  # one span a record, none per output
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert consumer.parent is not None
    assert consumer.parent.span_id == 0xB7AD6B7169203331
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.consumer.group.name"] == "g"
    assert consumer.attributes["messaging.kafka.offset"] == 7
    # The outputs' traceparent (derived, byte-identical on reprocessing) names this span.
    assert hop == f"00-{consumer.context.trace_id:032x}-{consumer.context.span_id:016x}-01"


def test_the_next_hop_hangs_under_the_span_that_emitted_its_record(
    spans: InMemorySpanExporter,
) -> None:
    first_hop, _ = traced(envelope("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
    output = Envelope(
        id="out-1", source="urn:hub", type="test.v1", time=datetime(2026, 1, 1, tzinfo=UTC),
        traceparent=first_hop,
    )  # fmt: skip
    traced(output, group="next")
    first, second = spans.get_finished_spans()
    assert second.parent is not None
    assert (second.parent.trace_id, second.parent.span_id) == (
        first.context.trace_id,
        first.context.span_id,
    )


def test_a_record_without_traceparent_gets_the_trace_its_outputs_carry(
    spans: InMemorySpanExporter,
) -> None:
    hop, _ = traced(envelope(None))
    (consumer,) = spans.get_finished_spans()
    assert consumer.parent is None
    assert hop == f"00-{consumer.context.trace_id:032x}-{consumer.context.span_id:016x}-01"


def test_a_record_that_cannot_be_read_gets_a_span_of_its_own(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.record_span(group="g", topic="t", partition=0, offset=3, envelope=None) as span:
        assert span is not None
    (consumer,) = spans.get_finished_spans()
    assert consumer.parent is None


def test_a_long_scan_draws_a_bar_on_a_terminal_and_nothing_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hub.cli.dlq import _ScanProgress  # noqa: PLC0415

    quiet = _ScanProgress()
    quiet(10, 5000)  # pytest's stderr is no terminal
    assert quiet._progress is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    short, long = _ScanProgress(), _ScanProgress()
    short(10, 100)
    assert short._progress is None
    long(10, 5000)
    assert long._progress is not None
    long(5000, 5000)
    assert long._progress is None


def test_an_unsampled_case_gets_no_spans_in_any_service() -> None:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(exporter=exporter, sample_ratio=0.5)
    try:
        # Low 64 bits of the trace id decide, as TraceIdRatioBased does: the same in every hop.
        kept = envelope("00-0000000000000000" + "0000000000000001-b7ad6b7169203331-01")
        dropped = envelope("00-0000000000000000" + "fffffffffffffff0-b7ad6b7169203331-01")
        for incoming in (kept, dropped):
            hop, span = traced(incoming)
            assert (span is None) == (incoming is dropped)
            _, next_span = traced(replace(incoming, id="out", traceparent=hop), group="next")
            assert (next_span is None) == (incoming is dropped)
        assert len(exporter.get_finished_spans()) == 2  # the kept case's, one a hop
    finally:
        tracing.shutdown_tracing()


def test_pipeline_counts_reach_the_counters_once_per_poll() -> None:
    group = "g-flush"
    metrics = PipelineMetrics(group, ["in"])
    records = {"group": group, "topic": "in", "outcome": "processed"}
    metrics.handled("in", "processed", 0.002)
    metrics.handled("in", "processed", 0.004)
    metrics.emitted(["aftersales.sla.breached.v1", "aftersales.case.opened.v1"])
    assert value("hub_records_total", **records) == 0
    assert value("hub_record_handling_seconds_count", group=group) == 0
    metrics.flush()
    metrics.flush()  # nothing counted twice
    assert value("hub_records_total", **records) == 2
    assert value("hub_events_emitted_total", group=group, type="aftersales.case.opened.v1") == 1
    assert value("hub_sla_breaches_total", group=group) == 1
    assert value("hub_record_handling_seconds_count", group=group) == 2


def test_handling_times_added_per_poll_land_where_observe_puts_them() -> None:
    amounts = [0.0005, 0.001, 0.0011, 0.003, 2.5, 9.0, 11.0, 0.0, -1.0, 0.049, 0.05]
    one_by_one, batched = PipelineMetrics("g-observe", []), PipelineMetrics("g-batched", [])
    for amount in amounts:
        one_by_one._handling.observe(amount)
        batched.handled("in", "processed", amount)
    batched.flush()
    for bound in ("0.001", "0.0025", "0.05", "2.5", "10.0", "+Inf"):
        assert value("hub_record_handling_seconds_bucket", group="g-batched", le=bound) == value(
            "hub_record_handling_seconds_bucket", group="g-observe", le=bound
        )
    assert value("hub_record_handling_seconds_count", group="g-batched") == len(amounts)
    assert value("hub_record_handling_seconds_sum", group="g-batched") == pytest.approx(
        sum(amounts)
    )
