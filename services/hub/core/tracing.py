"""OpenTelemetry: a span per handled record, parented by the input's `traceparent`.

Off by default: until `configure_tracing` installs a provider, the pipeline opens no spans.

Every output of a hop carries the hop's `traceparent` (`Envelope.hop_traceparent`): the input's
trace, and a span id derived from the group and the input's identity, so reprocessing an input
still produces byte-identical records. The record's span is given that very id (pinned through
`DerivedIdGenerator`), so the next service's span names it as parent and intake -> dispatch ->
gateway form one tree, with one span per handled record and none per output. The price: a
record handled twice (a retry, a redelivery) reports its span twice with the same id; backends
show one span with two reports, not a broken trace.

Sampling is by trace id alone (TraceIdRatioBased), decided before any span exists: an unsampled
record costs one slice of its traceparent and an integer comparison.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from hub.core.envelope import parent_span

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from hub.core.envelope import Envelope
    from hub.core.settings import HubSettings

_PINNED_SPAN_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "hub_pinned_span_id", default=None
)
_PINNED_TRACE_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "hub_pinned_trace_id", default=None
)


class _Installed:
    """The process's tracer, set at start-up (None: tracing is off)."""

    tracer: Tracer | None = None
    provider: TracerProvider | None = None
    bound: int = 0
    """TraceIdRatioBased's bound: a trace whose low 64 bits are below it is sampled."""


class DerivedIdGenerator(RandomIdGenerator):
    """Random ids, unless the hub pinned the id the next span must have (see module doc)."""

    def generate_span_id(self) -> int:
        """The pinned span id, or a random one."""
        pinned = _PINNED_SPAN_ID.get()
        return pinned if pinned is not None else super().generate_span_id()

    def generate_trace_id(self) -> int:
        """The pinned trace id (a root record's derived trace), or a random one."""
        pinned = _PINNED_TRACE_ID.get()
        return pinned if pinned is not None else super().generate_trace_id()


def configure_tracing(
    settings: HubSettings | None = None,
    *,
    service_name: str = "aftersales-hub",
    exporter: SpanExporter | None = None,
    batch: bool = False,
    sample_ratio: float | None = None,
) -> TracerProvider | None:
    """Install the tracer when `exporter` is given or `HUB_TRACING=otlp`; None when off."""
    if exporter is None:
        if settings is None or settings.tracing != "otlp":
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,  # only loaded when tracing is on
        )

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
        processor: SimpleSpanProcessor | BatchSpanProcessor = BatchSpanProcessor(exporter)
    else:
        # Tests' in-memory exporters want spans as soon as they end; the bench batches, as OTLP.
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    if sample_ratio is None:
        sample_ratio = settings.tracing_sample_ratio if settings is not None else 1.0
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        id_generator=DerivedIdGenerator(),
        # By trace id alone, not the parent's flag (the storefront samples everything): the
        # same cases are traced in every service, and unsampled records cost little.
        sampler=TraceIdRatioBased(sample_ratio),
    )
    provider.add_span_processor(processor)
    _Installed.provider, _Installed.tracer = provider, provider.get_tracer("hub.core.pipeline")
    _Installed.bound = TraceIdRatioBased.get_bound_for_rate(sample_ratio)
    return provider


def shutdown_tracing() -> None:
    """Flush and drop the tracer (tracing is off again)."""
    if _Installed.provider is not None:
        _Installed.provider.shutdown()
    _Installed.tracer = _Installed.provider = None


def enabled() -> bool:
    """Whether spans are recorded."""
    return _Installed.tracer is not None


_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()
_TRACE_ID_LOW_BITS = slice(19, 35)
"""Where the low 64 bits of the trace id are in a traceparent `00-<32 hex>-<16 hex>-<2 hex>`."""


def record_span(
    *,
    group: str,
    topic: str,
    partition: int,
    offset: int,
    envelope: Envelope | None,
    traceparent: str | None = None,
) -> AbstractContextManager[Span | None]:
    """The span of one handled record, current while it is handled (None when not traced).

    `traceparent` is the hop's (`Envelope.hop_traceparent`), which its outputs carry: the span
    gets its trace and span id. Without one (a record that cannot be read) the ids are random.
    """
    tracer = _Installed.tracer
    if tracer is None:
        return _NO_SPAN
    if traceparent is not None and int(traceparent[_TRACE_ID_LOW_BITS], 16) >= _Installed.bound:
        # The sampler's own rule, applied before any span exists: an untraced case costs
        # nothing more here.
        return _NO_SPAN
    return _record_span(
        tracer, group=group, topic=topic, partition=partition, offset=offset,
        envelope=envelope, traceparent=traceparent,
    )  # fmt: skip


@contextlib.contextmanager
def _record_span(
    tracer: Tracer,
    *,
    group: str,
    topic: str,
    partition: int,
    offset: int,
    envelope: Envelope | None,
    traceparent: str | None,
) -> Iterator[Span]:
    # Start, attach and end by hand: start_as_current_span's wrappers cost per record; the
    # context is always given, so the SDK never looks up the current one.
    attributes: dict[str, str | int] = {
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.offset": offset,
        "messaging.consumer.group.name": group,
    }
    parent = Context()
    pinned: tuple[contextvars.Token[int | None], contextvars.Token[int | None]] | None = None
    if envelope is not None:
        attributes["messaging.message.id"] = envelope.id
        remote = parent_span(envelope.traceparent)
        if remote is not None:
            trace_id, span_id, flags = remote
            context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
            parent = trace.set_span_in_context(NonRecordingSpan(context), parent)
    if traceparent is not None:
        # The hop's ids, which its outputs name (see module doc).
        pinned = (
            _PINNED_TRACE_ID.set(int(traceparent[3:35], 16)),
            _PINNED_SPAN_ID.set(int(traceparent[36:52], 16)),
        )
    try:
        span = tracer.start_span(
            f"process {topic}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
    finally:
        if pinned is not None:
            _PINNED_TRACE_ID.reset(pinned[0])
            _PINNED_SPAN_ID.reset(pinned[1])
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    except BaseException as error:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        raise
    finally:
        otel_context.detach(token)
        span.end()


def set_outcome(span: Span | None, outcome: str, *, failed: bool) -> None:
    """Label the record's span with its outcome; a dead letter marks it as an error."""
    if span is None:
        return
    span.set_attribute("hub.outcome", outcome)
    if failed:
        span.set_status(Status(StatusCode.ERROR, outcome))
