"""One case, one trace: intake, dispatch and the SF courier leg, from the in-memory exporter."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from dispatch.partners import load_partners
from hub.core import tracing
from hub.core.envelope import Envelope
from hub.core.outbound import event_record
from hub.core.service import KafkaSink
from hub.core.settings import HubSettings
from hub.core.topics import STOREFRONT_REQUESTS, courier_events_topic, courier_orders_topic
from lab.local_stack import LocalStack
from lab.samples import sample_request_v2

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from opentelemetry.sdk.trace import ReadableSpan

pytestmark = pytest.mark.integration


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    tracing.configure_tracing(exporter=spans)
    try:
        yield spans
    finally:
        tracing.shutdown_tracing()


def group_of(span: ReadableSpan) -> str | None:
    value = (span.attributes or {}).get("messaging.consumer.group.name")
    return str(value) if value is not None else None


def handled(spans: list[ReadableSpan]) -> set[tuple[str | None, str]]:
    """(group, topic) of each record span."""
    return {(group_of(s), s.name.removeprefix("process ")) for s in spans}


async def test_one_case_is_one_trace_across_intake_dispatch_and_the_courier(
    kafka_bootstrap: str, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    settings = HubSettings(
        kafka_bootstrap_servers=kafka_bootstrap, state_dir=str(tmp_path / "state"),
        retry_tiers=("1s", "2s"), inline_attempts=2, inline_backoff_s=0.05, code_version="test",
    )  # fmt: skip
    partners = load_partners()
    # SF only: its leg runs through the hub's own gateway service, so it is traced too.
    table = partners.model_copy(
        update={"couriers": tuple(c for c in partners.couriers if c.code == "sf")}
    )
    request = sample_request_v2(880_000 + secrets.randbelow(100_000))
    record = event_record(STOREFRONT_REQUESTS, request, key=request.request_id,
                          source="urn:storefront:test")  # fmt: skip
    entry = Envelope.from_headers(record.headers)
    assert entry.traceparent is not None
    trace_id = int(entry.traceparent.split("-")[1], 16)

    def of_the_case() -> list[ReadableSpan]:
        return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]

    async with LocalStack(settings, table):
        sink = KafkaSink(settings, client_id="test-storefront")
        await sink.start()
        try:
            await sink.send([record])
        finally:
            await sink.stop()
        wanted = {("intake", STOREFRONT_REQUESTS), ("gateway-sf", courier_orders_topic("sf")),
                  ("dispatch", courier_events_topic("sf"))}  # fmt: skip
        async with asyncio.timeout(90):
            while not wanted <= handled(of_the_case()):  # noqa: ASYNC110 - spans are polled
                await asyncio.sleep(0.2)

    spans = of_the_case()
    by_id = {span.context.span_id: span for span in spans}
    consumers = [span for span in spans if span.kind is SpanKind.CONSUMER]
    assert {group_of(span) for span in consumers} >= {"intake", "dispatch", "gateway-sf"}
    # The first hop's parent is the storefront's span (in the record's traceparent) ...
    (first,) = [s for s in consumers if group_of(s) == "intake"]
    assert first.parent is not None
    assert first.parent.span_id == int(entry.traceparent.split("-")[2], 16)
    # ... and every later hop hangs under the span of the hop that emitted its record: one tree,
    # one span a handled record (none per output).
    assert all(span.kind is SpanKind.CONSUMER for span in spans)
    for span in consumers:
        if span is first:
            continue
        assert span.parent is not None
        parent = by_id.get(span.parent.span_id)
        assert parent is not None, f"{span.name} ({group_of(span)}) has no parent in the trace"
        assert parent.start_time is not None
        assert span.start_time is not None
        assert parent.start_time <= span.start_time
    # The courier's leg: the gateway reads what dispatch emitted.
    gateway = [s for s in consumers if group_of(s) == "gateway-sf"]
    assert gateway
    for span in gateway:
        assert span.parent is not None
        assert group_of(by_id[span.parent.span_id]) == "dispatch"
