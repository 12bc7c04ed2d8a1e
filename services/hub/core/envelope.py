"""The CloudEvents 1.0 envelope in Kafka binary mode, and deterministic output ids."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hub.core.errors import UndecodableError

if TYPE_CHECKING:
    from collections.abc import Iterable

# Fixed forever: changing it would change every derived id and break deduplication.
HUB_ID_NAMESPACE = uuid.UUID("6f1d3b0e-8c2a-5b7e-9a41-0d5e2f7c9b13")

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
# Structured mode: the whole event, attributes and data, as one JSON object in the value.
STRUCTURED_PREFIX = "application/cloudevents"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time")
# W3C trace context, version 00: trace id, parent span id, flags.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})")


def uuid5_hex(namespace: uuid.UUID, name: str) -> str:
    """`uuid.uuid5(namespace, name).hex`, without building a UUID object (a hot path: 3 a hop)."""
    digest = bytearray(
        hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return digest.hex()


def derive_event_id(input_source: str, input_id: str, role: str) -> str:
    """The id of the output playing `role` for an input: the same on every reprocessing.

    The input's source is part of it: two sources may use one id for two different events.
    """
    # A source is a URI reference, which has no space: the name stays one to one.
    text = uuid5_hex(HUB_ID_NAMESPACE, f"{input_source} {input_id}/{role}")
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def new_traceparent() -> str:
    """A fresh W3C traceparent for an event that starts a trace."""
    # Trace ids need to be unique, not secret: OpenTelemetry's own generator draws them the
    # same way, without the system call per id that `secrets` makes. Zero is not a valid id.
    trace_id = random.getrandbits(128) or 1
    span_id = random.getrandbits(64) or 1
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def child_traceparent(parent: str | None, cause_id: str, span_key: str) -> str:
    """The traceparent of an output: the input's trace, the span id of the hop that emitted it.

    Ids are derived (the span's from `span_key`, which names the hop), so reprocessing an input
    emits byte-identical outputs; without a valid parent, the trace starts at the input
    (`cause_id`).
    """
    match = _TRACEPARENT.fullmatch(parent or "")
    if match is not None and match.group(1) != _ZERO_TRACE_ID:
        trace_id, flags = match.group(1, 2)
    else:
        trace_id, flags = uuid5_hex(HUB_ID_NAMESPACE, f"trace/{cause_id}"), "01"
    span_id = uuid5_hex(HUB_ID_NAMESPACE, f"span/{span_key}")[:16]
    return f"00-{trace_id}-{span_id}-{flags}"


def parent_span(traceparent: str | None) -> tuple[int, int, int] | None:
    """Trace id, span id and flags of a valid W3C traceparent (version 00), or None."""
    text = traceparent or ""
    match = _TRACEPARENT.fullmatch(text)
    if match is None or match.group(1) == _ZERO_TRACE_ID:
        return None
    span_id = int(text[36:52], 16)
    if not span_id:
        return None  # W3C: an all-zero parent id is invalid
    return int(match.group(1), 16), span_id, int(match.group(2), 16)


_ZERO_TRACE_ID = "0" * 32


def _is_envelope_header(name: str) -> bool:
    return name.startswith("ce_") or name in _OTHER_ENVELOPE_HEADERS


_OTHER_ENVELOPE_HEADERS = frozenset({"content-type", "traceparent", "correlationid", "causationid"})


@dataclass(frozen=True, slots=True)
class Envelope:
    """The CloudEvents attributes of one message, carried as `ce_*` Kafka headers."""

    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    dataschema: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    specversion: str = SPECVERSION
    content_type: str = CONTENT_TYPE

    def to_headers(self) -> list[tuple[str, bytes]]:
        """The envelope as Kafka headers, in a fixed order."""
        pairs: list[tuple[str, str | None]] = [
            ("ce_specversion", self.specversion),
            ("ce_id", self.id),
            ("ce_source", self.source),
            ("ce_type", self.type),
            ("ce_time", self.time.isoformat()),
            ("ce_subject", self.subject),
            ("ce_dataschema", self.dataschema),
            ("content-type", self.content_type),
            # The Kafka binding prefixes extension attributes too, so CloudEvents SDKs see them.
            ("ce_correlationid", self.correlation_id),
            ("ce_causationid", self.causation_id),
            ("traceparent", self.traceparent),
        ]
        return [(name, value.encode()) for name, value in pairs if value is not None]

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes]]) -> Envelope:
        """Read the envelope from Kafka headers; raise UndecodableError naming what is wrong."""
        return cls._from_values(_header_values(headers))

    @classmethod
    def from_record(
        cls, headers: Iterable[tuple[str, bytes]], value: bytes | None
    ) -> tuple[Envelope, bytes]:
        """The envelope and data of a record in binary or structured mode; UndecodableError."""
        values = _header_values(headers)
        # Binary mode pays one dictionary lookup for structured mode's existence.
        content_type = values.get("content-type")
        if content_type is not None and content_type.startswith(STRUCTURED_PREFIX):
            return _structured(content_type, value or b"")
        return cls._from_values(values), value or b""

    @classmethod
    def _from_values(cls, values: dict[str, str]) -> Envelope:
        missing = [name for name in REQUIRED_HEADERS if not values.get(name)]
        if missing:
            raise UndecodableError(f"missing CloudEvents headers: {', '.join(missing)}")
        if values["ce_specversion"] != SPECVERSION:
            raise UndecodableError(f"unsupported ce_specversion {values['ce_specversion']!r}")
        try:
            time = datetime.fromisoformat(values["ce_time"])
        except ValueError as error:
            raise UndecodableError(f"ce_time is not RFC 3339: {values['ce_time']!r}") from error
        if time.tzinfo is None:
            raise UndecodableError("ce_time has no timezone")
        return cls(
            id=values["ce_id"],
            source=values["ce_source"],
            type=values["ce_type"],
            time=time,
            subject=values.get("ce_subject"),
            dataschema=values.get("ce_dataschema"),
            # The bare names of the first release are still read, never written.
            correlation_id=values.get("ce_correlationid") or values.get("correlationid"),
            causation_id=values.get("ce_causationid") or values.get("causationid"),
            traceparent=values.get("traceparent"),
            content_type=values.get("content-type", CONTENT_TYPE),
        )

    def caused(
        self,
        *,
        event_id: str,
        source: str,
        type_: str,
        dataschema: str,
        subject: str | None,
        traceparent: str,
    ) -> Envelope:
        """The envelope of an output caused by this event: same trace and correlation, same time.

        The time is the input's so that reprocessing emits byte-identical outputs;
        `traceparent` is the hop's (`hop_traceparent`), the same for each of its outputs.
        """
        return Envelope(
            id=event_id,
            source=source,
            type=type_,
            time=self.time,
            subject=subject,
            dataschema=dataschema,
            correlation_id=self.correlation_id or self.id,
            causation_id=self.id,
            traceparent=traceparent,
            specversion=self.specversion,
            content_type=self.content_type,
        )

    def hop_traceparent(self, group: str) -> str:
        """The traceparent of what `group` emits for this event: one span id per hop.

        The span id is the hop's own (derived from the group and the event's identity: two
        groups reading one event are two spans); its parent is this event's traceparent.
        """
        return child_traceparent(self.traceparent, self.id, f"{group} {self.source} {self.id}")


def _header_values(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, raw in headers:
        if name in values or not _is_envelope_header(name):
            # The first occurrence wins, as in the CloudEvents Kafka binding; headers of
            # other systems (a binary trace context, a registry id) are theirs to read.
            continue
        try:
            values[name] = raw.decode()
        except UnicodeDecodeError as error:
            raise UndecodableError(f"header {name} is not UTF-8") from error
    return values


def _structured(content_type: str, value: bytes) -> tuple[Envelope, bytes]:
    """A structured-mode event as the envelope and data binary mode would carry."""
    if not content_type.startswith(STRUCTURED_CONTENT_TYPE):
        raise UndecodableError(f"structured event format {content_type!r} is not supported")
    try:
        event = json.loads(value)
    except (ValueError, RecursionError) as error:
        raise UndecodableError(f"structured CloudEvent is not JSON: {error}") from error
    if not isinstance(event, dict):
        raise UndecodableError(
            f"structured CloudEvent is JSON {type(event).__name__}, not an object"
        )
    attributes = _attributes(event)
    data_type = attributes.get("datacontenttype", CONTENT_TYPE)
    if not data_type.startswith(CONTENT_TYPE):
        raise UndecodableError(f"structured CloudEvent data is {data_type!r}, not JSON")
    # The binding's header names, so binary and structured mode share one validation.
    values = {f"ce_{name}": text for name, text in attributes.items() if name not in _NOT_HEADERS}
    values["content-type"] = data_type
    if "traceparent" in attributes:
        values["traceparent"] = attributes["traceparent"]
    try:
        envelope = Envelope._from_values(values)  # noqa: SLF001 - the one shared validation
    except UndecodableError as error:
        raise UndecodableError(f"structured CloudEvent: {error}") from error
    return envelope, _data(event)


# Attributes that are not headers in binary mode: the data, and the content type's own header.
_NOT_HEADERS = frozenset({"data", "data_base64", "datacontenttype", "traceparent"})


def _attributes(event: dict[str, Any]) -> dict[str, str]:
    """Every attribute as text; the JSON format lets extensions be numbers or booleans."""
    attributes: dict[str, str] = {}
    for name, value in event.items():
        if name in {"data", "data_base64"} or value is None:  # null: an absent attribute
            continue
        if isinstance(value, bool):
            attributes[name] = "true" if value else "false"
        elif isinstance(value, str | int):
            attributes[name] = str(value)
        else:
            raise UndecodableError(
                f"structured CloudEvent attribute {name} is JSON {type(value).__name__}"
            )
    return attributes


def _data(event: dict[str, Any]) -> bytes:
    if "data" in event and "data_base64" in event:
        raise UndecodableError("structured CloudEvent has both data and data_base64")
    if "data_base64" in event:
        try:
            return base64.b64decode(event["data_base64"], validate=True)
        except (binascii.Error, ValueError) as error:
            raise UndecodableError(
                f"structured CloudEvent data_base64 is invalid: {error}"
            ) from error
    if "data" not in event:
        raise UndecodableError("structured CloudEvent has no data")
    return json.dumps(event["data"], ensure_ascii=False).encode()
