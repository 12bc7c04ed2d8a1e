"""OpenTelemetry: a span per handled record, parented by the input's `traceparent`.

Off by default: until `configure_tracing` installs a provider, the pipeline opens no spans.

The outputs' `traceparent` keeps the span id derived from the output's event id
(`envelope.child_traceparent`), so reprocessing an input still produces byte-identical records.
To join the hops into one trace anyway, each output gets a zero-length PRODUCER span, a child of
the record's span, whose span id *is* that derived id (pinned through `DerivedIdGenerator`). The
next service's record span names it as parent, so intake -> dispatch -> gateway form one tree.
The price: a record handled twice (a retry, a redelivery) reports its producer spans twice
with the same ids; backends show them as one span with two reports, not as a broken trace.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
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

from hub.core.envelope import child_traceparent

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

    from opentelemetry.context import Context
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


def _ids(traceparent: str) -> tuple[int, int] | None:
    parts = traceparent.split("-")
    if len(parts) != 4:  # noqa: PLR2004 - version, trace id, span id, flags
        return None
    try:
        return int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None


_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()
_TRACE_ID_LOW_BITS = (1 << 64) - 1


def record_span(
    *, group: str, topic: str, partition: int, offset: int, envelope: Envelope | None
) -> AbstractContextManager[Span | None]:
    """The span of one handled record, current while it is handled (None when tracing is off)."""
    tracer = _Installed.tracer
    if tracer is None:
        return _NO_SPAN
    remote = _remote_parent(envelope.traceparent) if envelope is not None else None
    derived: int | None = None
    if envelope is not None and remote is None:
        # No usable parent: the outputs' trace id is derived from this record's id (as
        # `child_traceparent` does); so is this span's, and the hops still join.
        ids = _ids(child_traceparent(None, envelope.id, envelope.id))
        derived = ids[0] if ids else None
    trace_id = remote.trace_id if remote is not None else derived
    if trace_id is not None and trace_id & _TRACE_ID_LOW_BITS >= _Installed.bound:
        # The sampler's own rule, applied before any span exists: an untraced case costs
        # nothing here (the SDK would still build, and drop, two spans a record).
        return _NO_SPAN
    return _record_span(
        tracer, group=group, topic=topic, partition=partition, offset=offset,
        envelope=envelope, remote=remote, derived_trace_id=derived,
    )  # fmt: skip


def _remote_parent(traceparent: str | None) -> SpanContext | None:
    """The span context a W3C traceparent names, or None when there is none or it is invalid."""
    parts = (traceparent or "").split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16:  # noqa: PLR2004 - W3C field widths
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


@contextlib.contextmanager
def _record_span(
    tracer: Tracer,
    *,
    group: str,
    topic: str,
    partition: int,
    offset: int,
    envelope: Envelope | None,
    remote: SpanContext | None,
    derived_trace_id: int | None,
) -> Iterator[Span]:
    # Start, attach and end by hand: start_as_current_span's wrappers cost per record, and
    # few attributes, each validated on the way in.
    attributes: dict[str, str | int] = {
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.offset": offset,
        "messaging.consumer.group.name": group,
    }
    parent: Context | None = None
    pinned = None
    if envelope is not None:
        attributes["messaging.message.id"] = envelope.id
    if remote is not None:
        parent = trace.set_span_in_context(NonRecordingSpan(remote))
    elif derived_trace_id is not None:
        pinned = _PINNED_TRACE_ID.set(derived_trace_id)
    try:
        span = tracer.start_span(
            f"process {topic}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
    finally:
        if pinned is not None:
            _PINNED_TRACE_ID.reset(pinned)
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


def output_span(topic: str, traceparent: str | None) -> None:
    """A zero-length PRODUCER span whose id is the output's derived span id (see module doc)."""
    tracer = _Installed.tracer
    if tracer is None or traceparent is None or not trace.get_current_span().is_recording():
        return  # off, or this record's case is not sampled
    ids = _ids(traceparent)
    if ids is None:
        return
    token = _PINNED_SPAN_ID.set(ids[1])
    try:
        span = tracer.start_span(
            f"publish {topic}",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.destination.name": topic},
        )
    finally:
        _PINNED_SPAN_ID.reset(token)
    span.end()
