"""OpenTelemetry: a span per handled record, parented by the input's `traceparent`.

Off by default: until `configure_tracing` installs a provider, the pipeline opens no spans.

Every output of a hop carries the hop's `traceparent` (`Envelope.hop_traceparent`): the input's
trace, and a span id derived from the group and the input's identity, so reprocessing an input
still produces byte-identical records. The record's span has that very id, so the next
service's span names it as parent and intake -> dispatch -> gateway form one tree, with one span
per handled record and none per output. The price: a record handled twice (a retry, a
redelivery) reports its span twice with the same id; backends show one span with two reports,
not a broken trace.

Sampling is by trace id alone, TraceIdRatioBased's rule, decided before anything is built: an
unsampled record costs one slice of its traceparent and an integer comparison. A sampled
record's span is written once, when the record is done, as the SDK's `ReadableSpan`, and given
to the provider's span processor (batching, export) as the SDK's own spans are: a record span's
ids, parent, attributes and outcome are all known, and building it through `Tracer.start_span`
cost a lock, a sampler call and attribute checks per attribute.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
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

    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer
    from opentelemetry.util.types import AttributeValue

    from hub.core.envelope import Envelope
    from hub.core.settings import HubSettings


class _Installed:
    """The process's tracer, set at start-up (None: tracing is off)."""

    tracer: Tracer | None = None
    provider: TracerProvider | None = None
    processor: SpanProcessor | None = None
    """Where record spans go: the provider's own processor (batching, export)."""
    resource: Resource | None = None
    bound: int = 0
    """TraceIdRatioBased's bound: a trace whose low 64 bits are below it is sampled."""


_RANDOM_IDS = RandomIdGenerator()


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
        # By trace id alone, not the parent's flag (the storefront samples everything): the
        # same cases are traced in every service, and unsampled records cost little.
        sampler=TraceIdRatioBased(sample_ratio),
    )
    provider.add_span_processor(processor)
    _Installed.provider, _Installed.tracer = provider, provider.get_tracer("hub.core.pipeline")
    _Installed.processor, _Installed.resource = processor, provider.resource
    _Installed.bound = TraceIdRatioBased.get_bound_for_rate(sample_ratio)
    return provider


def shutdown_tracing() -> None:
    """Flush and drop the tracer (tracing is off again)."""
    if _Installed.provider is not None:
        _Installed.provider.shutdown()
    _Installed.tracer = _Installed.provider = None
    _Installed.processor = _Installed.resource = None


def enabled() -> bool:
    """Whether spans are recorded."""
    return _Installed.processor is not None


_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()
_TRACE_ID_LOW_BITS = slice(19, 35)
"""Where the low 64 bits of the trace id are in a traceparent `00-<32 hex>-<16 hex>-<2 hex>`."""
_LOW_64 = (1 << 64) - 1
_SCOPE = InstrumentationScope("hub.core.pipeline")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class RecordSpan:
    """A record's span while it is handled: its outcome is set on it, it is written at the end."""

    __slots__ = ("attributes", "context", "events", "name", "parent", "start_time", "status")

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, AttributeValue],
    ) -> None:
        self.name, self.context, self.parent = name, context, parent
        self.attributes = attributes
        self.events: list[Event] = []
        self.status = Status(StatusCode.UNSET)
        self.start_time = time.time_ns()

    def set_attribute(self, key: str, value: str | int) -> None:
        """Set one attribute."""
        self.attributes[key] = value

    def set_status(self, status: Status) -> None:
        """Set the span's status."""
        self.status = status

    def record_exception(self, error: BaseException) -> None:
        """An `exception` event, with the attributes the SDK's `Span.record_exception` gives it."""
        module, name = type(error).__module__, type(error).__qualname__
        self.events.append(
            Event(
                "exception",
                {
                    "exception.type": f"{module}.{name}" if module != "builtins" else name,
                    "exception.message": str(error),
                    "exception.stacktrace": "".join(traceback.format_exception(error)),
                    "exception.escaped": "False",
                },
            )
        )

    def readable(self, resource: Resource) -> ReadableSpan:
        """The finished span, as span processors and exporters take it."""
        return ReadableSpan(
            self.name,
            context=self.context,
            parent=self.parent,
            resource=resource,
            attributes=self.attributes,
            events=tuple(self.events),
            kind=SpanKind.CONSUMER,
            status=self.status,
            start_time=self.start_time,
            end_time=time.time_ns(),
            instrumentation_scope=_SCOPE,
        )


def record_span(
    *,
    group: str,
    topic: str,
    partition: int,
    offset: int,
    envelope: Envelope | None,
    traceparent: str | None = None,
) -> AbstractContextManager[RecordSpan | None]:
    """The span of one handled record, current while it is handled (None when not traced).

    `traceparent` is the hop's (`Envelope.hop_traceparent`), which its outputs carry: the span
    gets its trace and span id. Without one (a record that cannot be read) the ids are random.
    """
    if _Installed.processor is None:
        return _NO_SPAN
    if traceparent is not None:
        if int(traceparent[_TRACE_ID_LOW_BITS], 16) >= _Installed.bound:
            return _NO_SPAN  # the sampler's own rule, before anything is built
        trace_id, span_id = int(traceparent[3:35], 16), int(traceparent[36:52], 16)
    else:
        trace_id, span_id = _RANDOM_IDS.generate_trace_id(), _RANDOM_IDS.generate_span_id()
        if trace_id & _LOW_64 >= _Installed.bound:
            return _NO_SPAN
    attributes: dict[str, AttributeValue] = {
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.offset": offset,
        "messaging.consumer.group.name": group,
    }
    parent: SpanContext | None = None
    if envelope is not None:
        attributes["messaging.message.id"] = envelope.id
        remote = parent_span(envelope.traceparent)
        if remote is not None:
            parent_trace, parent_id, flags = remote
            parent = SpanContext(
                parent_trace, parent_id, is_remote=True, trace_flags=TraceFlags(flags)
            )
    context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
    return _handled(RecordSpan(f"process {topic}", context, parent, attributes))


@contextlib.contextmanager
def _handled(span: RecordSpan) -> Iterator[RecordSpan]:
    # Current while the record is handled, for any instrumented call a handler makes.
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span.context)))
    try:
        yield span
    except BaseException as error:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        raise
    finally:
        otel_context.detach(token)
        processor, resource = _Installed.processor, _Installed.resource
        if processor is not None and resource is not None:
            processor.on_end(span.readable(resource))


def set_outcome(span: RecordSpan | None, outcome: str, *, failed: bool) -> None:
    """Label the record's span with its outcome; a dead letter marks it as an error."""
    if span is None:
        return
    span.set_attribute("hub.outcome", outcome)
    if failed:
        span.set_status(Status(StatusCode.ERROR, outcome))
